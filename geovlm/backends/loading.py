"""Load a transformers model (and optional LoRA adapter) by id or folder, quantized or not.

The class is chosen from the config's ``model_type``; failures to find a model or adapter offline
become one-sentence `ModelNotFoundError` messages instead of transformers tracebacks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from geovlm.errors import ModelNotFoundError
from geovlm.quantization import Quantization

__all__ = ["LoadedModel", "bnb_config", "load_model", "resolve_device"]

logger = logging.getLogger(__name__)

#: ``model_type`` -> name of the transformers class that runs it (others: by capability).
_CLASSES = {
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "llava": "LlavaForConditionalGeneration",
}


def bnb_config(quantization: Quantization) -> Any:
    """The ``BitsAndBytesConfig`` for a resolved quantization, or None for `Quantization.NONE`.

    Parameters
    ----------
    quantization
        The choice, already resolved (not ``AUTO``).

    Returns
    -------
    transformers.BitsAndBytesConfig or None
    """
    from transformers import BitsAndBytesConfig

    if quantization is Quantization.NF4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    if quantization is Quantization.INT8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference and what was loaded.

    Attributes
    ----------
    model
        The transformers (or peft) module in eval mode.
    processor
        The ``AutoProcessor`` for image models, the tokenizer for text-only models.
    supports_images
        False for text-only models.
    quantization
        The resolved `Quantization` (never `AUTO`).
    device
        Where the model runs.
    dtype
        The floating-point type of its activations (and of the pixels it is given).
    """

    model: torch.nn.Module
    processor: Any
    supports_images: bool
    quantization: Quantization
    device: torch.device
    dtype: torch.dtype


def resolve_device(device: str | None) -> torch.device:
    """The device to run on: ``device`` if given, else CUDA when available, else the CPU.

    Parameters
    ----------
    device
        A torch device string, or None to choose.

    Returns
    -------
    torch.device
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def _not_found(kind: str, ident: str, flag: str) -> ModelNotFoundError:
    if Path(ident).expanduser().is_absolute() or ident.startswith((".", "~")):
        return ModelNotFoundError(
            f"no {kind} folder at {ident}: pass {flag} PATH to an existing one."
        )
    return ModelNotFoundError(
        f"{kind} {ident!r} is not available offline: pass {flag} PATH to a local copy, "
        f"or download it first with `huggingface-cli download {ident}`."
    )


def _locate(kind: str, ident: str, flag: str) -> str:
    """The local folder of ``ident`` (given, or a cached hub snapshot), else ``ident`` itself.

    Cached snapshots load without touching the network; other ids are left to the hub.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    folder = Path(ident).expanduser()
    if folder.is_dir():
        return str(folder)
    try:
        return snapshot_download(ident, local_files_only=True)
    except HFValidationError:  # neither a folder nor a well-formed hub id
        raise _not_found(kind, ident, flag) from None
    except LocalEntryNotFoundError:
        return ident


def _config(source: str, model: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source)
    except OSError as exc:  # transformers reports missing files, ids and networks as OSError
        logger.debug("config of %s not loadable: %s", model, exc)
        raise _not_found("model", model, "--model") from None


def _model_class(config: Any) -> tuple[Any, bool]:
    """The class to load ``config`` with and whether the model takes images."""
    import transformers

    if config.model_type in _CLASSES:
        return getattr(transformers, _CLASSES[config.model_type]), True
    if getattr(config, "vision_config", None) is None:
        return transformers.AutoModelForCausalLM, False
    return transformers.AutoModelForImageTextToText, True


def _attach_adapter(model: torch.nn.Module, adapter: str, merge: bool) -> torch.nn.Module:
    from peft import PeftConfig, PeftModel

    source = _locate("adapter", adapter, "--adapter")
    try:
        PeftConfig.from_pretrained(source)
    except ValueError as exc:  # peft: "Can't find 'adapter_config.json' at ..."
        logger.debug("adapter %s not loadable: %s", adapter, exc)
        raise _not_found("adapter", adapter, "--adapter") from None
    model = PeftModel.from_pretrained(model, source)
    return model.merge_and_unload() if merge else model


def load_model(
    model: str,
    *,
    adapter: str | None = None,
    quantize: Quantization | str = Quantization.AUTO,
    device: str | None = None,
) -> LoadedModel:
    """Load a model (and LoRA adapter) for inference, choosing its class from its config.

    ``qwen3_vl`` loads as ``Qwen3VLForConditionalGeneration``, ``llava`` as
    ``LlavaForConditionalGeneration``, configs without a vision tower (Gemma 2/3 text, ...) as
    ``AutoModelForCausalLM``, and every other VLM as ``AutoModelForImageTextToText``.
    An adapter on an unquantized model is merged into the weights (faster, same outputs).

    Parameters
    ----------
    model
        A Hugging Face hub id (found in the local cache or downloaded) or a local folder.
    adapter
        A peft LoRA adapter id or folder to apply on top, or None.
    quantize
        A `Quantization` or its value (``"4bit"``, ``"8bit"``, ``"none"``, ``"auto"``).
    device
        A torch device string; None picks CUDA when available, else the CPU.

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelNotFoundError
        If the model or adapter is neither a local folder nor available from the hub or cache.
    ValueError
        If ``quantize`` is not one of the options.
    """
    import transformers

    where = resolve_device(device)
    quantization = Quantization(quantize).resolve(where.type)
    source = _locate("model", model, "--model")
    config = _config(source, model)
    cls, supports_images = _model_class(config)
    dtype = torch.bfloat16 if where.type == "cuda" else torch.float32
    logger.info("loading %s as %s (%s, %s)", model, cls.__name__, quantization.value, where)
    try:
        net = cls.from_pretrained(
            source,
            config=config,
            dtype=dtype,
            quantization_config=bnb_config(quantization),
            device_map={"": str(where)},
        )
        auto = transformers.AutoProcessor if supports_images else transformers.AutoTokenizer
        processor = auto.from_pretrained(source)
    except OSError as exc:  # weights or processor files missing (partial cache, offline)
        logger.debug("%s not loadable: %s", model, exc)
        raise _not_found("model", model, "--model") from None
    if adapter is not None:
        net = _attach_adapter(net, adapter, merge=quantization is Quantization.NONE)
    net.eval()
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(net, processor, supports_images, quantization, where, dtype)
