"""Check a model, its adapter, the device and the quantization before any weights load.

Everything here reads small files (``config.json``, ``adapter_config.json``, safetensors
headers) or asks torch about the machine, so a mistake costs seconds, not the minutes an 8B
model takes to load. Each library error is translated where the library is called, into one
`GeovlmError` sentence that says how to fix it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from geovlm.backends.devices import resolve_device
from geovlm.errors import DependencyError, ModelFileError, ModelNotFoundError, first_line
from geovlm.models.local_weights import (
    Lack,
    adapter_weights,
    find_folder,
    lack,
    model_weights,
    read_json,
)
from geovlm.models.quantization import Quantization

__all__ = ["ModelPlan", "adapter_mismatch", "not_found", "plan_model"]

logger = logging.getLogger(__name__)

#: ``model_type`` -> name of the transformers class that runs it (others: by capability).
_CLASSES = {
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "llava": "LlavaForConditionalGeneration",
}


@dataclass(frozen=True)
class ModelPlan:
    """What `geovlm.backends.loading.load_model` will load, every part checked without weights.

    Attributes
    ----------
    model
        The model as the user named it (hub id or folder).
    source
        Where it loads from: a local folder (given, or a cached hub snapshot), else the hub id.
    config
        Its transformers configuration.
    model_class
        The transformers class that loads it.
    supports_images
        False for text-only models.
    quantization
        The resolved `Quantization` (never `AUTO`).
    device
        Where the model runs.
    dtype
        The floating-point type of its activations.
    adapter
        The peft adapter as the user named it, or None.
    adapter_source
        Where the adapter loads from, or None.
    adapter_base
        The base the adapter was trained on (its ``base_model_name_or_path``), or None.
    """

    model: str
    source: str
    config: Any
    model_class: Any
    supports_images: bool
    quantization: Quantization
    device: torch.device
    dtype: torch.dtype
    adapter: str | None = None
    adapter_source: str | None = None
    adapter_base: str | None = None


def _check_bitsandbytes(requested: Quantization, quantization: Quantization) -> None:
    """Refuse 4-bit and 8-bit weights when bitsandbytes cannot be imported."""
    if quantization is Quantization.NONE:
        return
    try:
        import bitsandbytes  # noqa: F401
    except (ImportError, RuntimeError) as exc:  # absent, or its native library failed to load
        logger.debug("bitsandbytes not importable: %s", exc)
        chosen = (
            f"--quantize auto picks {quantization.value} on CUDA, which"
            if requested is Quantization.AUTO
            else f"--quantize {quantization.value}"
        )
        raise DependencyError(
            f"{chosen} needs a working bitsandbytes, which cannot be imported here: install it"
            " (`pip install bitsandbytes`) or pass --quantize none."
        ) from None


def not_found(
    kind: str, ident: str, flag: str, lacking: Lack | None = None
) -> ModelNotFoundError:
    """The one-sentence error for a model or adapter that is neither a folder nor cached.

    Parameters
    ----------
    kind
        ``"model"`` or ``"adapter"``.
    ident
        What the user passed.
    flag
        The option that takes it (``--model``, ``--adapter``).
    lacking
        What its snapshot in the Hugging Face cache lacks, if an interrupted download left one.

    Returns
    -------
    ModelNotFoundError
    """
    path = Path(ident).expanduser()
    if path.is_file():
        return ModelNotFoundError(
            f"{ident} is a file, but {flag} takes a folder: pass the folder that holds it."
        )
    if path.is_absolute() or ident.startswith((".", "~")):
        return ModelNotFoundError(
            f"no {kind} folder at {ident}: pass {flag} PATH to an existing one."
        )
    if lacking is not None:
        return ModelNotFoundError(
            f"{kind} {ident!r} is incomplete in the Hugging Face cache (no {lacking.value}: an"
            " interrupted download) and cannot be downloaded offline: unset HF_HUB_OFFLINE to"
            f" resume, pass {flag} PATH to a local copy, or run `hf download {ident}`."
        )
    return ModelNotFoundError(
        f"{kind} {ident!r} is not available offline: pass {flag} PATH to a local copy, "
        f"or download it first with `hf download {ident}`."
    )


def adapter_mismatch(adapter: str, base: str, model: str) -> ModelFileError:
    """The one-sentence error for an adapter trained on another base model.

    Parameters
    ----------
    adapter
        The adapter as the user named it.
    base
        Its ``base_model_name_or_path``.
    model
        The model it was put on.

    Returns
    -------
    ModelFileError
    """
    return ModelFileError(
        f"the adapter {adapter} was trained for base {base or 'unknown'} (adapter_config.json"
        f" base_model_name_or_path), not {model}: pass that base as --model, or an adapter"
        f" trained for {model}."
    )


def _locate(kind: str, ident: str, flag: str) -> str:
    """The folder to load ``ident`` from (given, or complete in the cache), else the hub id.

    A snapshot that an interrupted download left incomplete goes to the hub, which resumes
    the download; offline, it is refused in one sentence.
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    folder = Path(ident).expanduser()
    if folder.is_dir():
        return str(folder)
    try:
        validate_repo_id(ident)
    except HFValidationError:  # neither a folder nor a well-formed hub id
        raise not_found(kind, ident, flag) from None
    if (snapshot := find_folder(ident)) is None:
        return ident
    if (missing := lack(snapshot)) is None:
        return str(snapshot)
    if constants.HF_HUB_OFFLINE:
        raise not_found(kind, ident, flag, lacking=missing)
    return ident


def _check_json_files(folder: Path) -> None:
    """Refuse a folder with a cut or hand-broken JSON file (config, tokenizer, processor)."""
    for path in sorted(folder.glob("*.json")):
        read_json(path)


def _check_safetensors(files: list[Path]) -> None:
    """Refuse truncated or corrupt safetensors files, reading only their headers."""
    from safetensors import SafetensorError, safe_open

    for file in files:
        if file.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except SafetensorError as exc:
            raise ModelFileError(
                f"{file} is truncated or corrupt ({exc}): copy or download it again."
            ) from None


def _check_folder(folder: Path, model: str) -> None:
    """Refuse a model folder that lacks what ``from_pretrained`` needs, before reading weights."""
    if not (folder / "config.json").is_file():
        if (folder / "adapter_config.json").is_file():
            raise ModelFileError(
                f"{model} is a peft adapter, not a model: pass it as --adapter and its base"
                " model as --model."
            )
        raise ModelFileError(
            f"{model} holds no config.json, so it is no transformers model folder: pass --model"
            " a folder saved with save_pretrained (config.json, weights, tokenizer), a hub id"
            " or a preset name."
        )
    _check_json_files(folder)
    _check_model_type(read_json(folder / "config.json"), model)
    missing = lack(folder)
    if missing is Lack.WEIGHTS:
        raise ModelFileError(
            f"{model} holds no weights (model.safetensors, or every shard its index"
            " names): copy or download the whole model folder again."
        )
    _check_safetensors(model_weights(folder))
    if missing is Lack.TOKENIZER:
        raise ModelFileError(
            f"{model} holds no tokenizer (tokenizer.json or tokenizer_config.json): copy the"
            " tokenizer files of the original model into it."
        )


def _check_model_type(raw: Any, model: str) -> None:
    import transformers
    from transformers import CONFIG_MAPPING

    model_type = raw.get("model_type") if isinstance(raw, dict) else None
    if not model_type:
        raise ModelFileError(
            f"{model}'s config.json names no model_type, so transformers cannot tell its"
            " architecture: restore config.json from the original model."
        )
    if model_type not in CONFIG_MAPPING:
        raise ModelFileError(
            f"{model}'s config.json names model_type {model_type!r}, which transformers"
            f" {transformers.__version__} does not know: upgrade transformers"
            " (`pip install -U transformers`) or check the folder."
        )


def _config(source: str, model: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source)
    except OSError as exc:  # transformers reports missing files, ids and networks as OSError
        logger.debug("config of %s not loadable: %s", model, exc)
        raise not_found("model", model, "--model") from None
    except ValueError as exc:  # an unknown model_type, or values its config class rejects
        raise ModelFileError(
            f"{model}'s config.json is not one transformers can use ({first_line(exc)}): restore"
            " it from the original model, or upgrade transformers."
        ) from None


def _model_class(config: Any) -> tuple[Any, bool]:
    """The class to load ``config`` with and whether the model takes images."""
    import transformers

    if config.model_type in _CLASSES:
        return getattr(transformers, _CLASSES[config.model_type]), True
    if getattr(config, "vision_config", None) is None:
        return transformers.AutoModelForCausalLM, False
    return transformers.AutoModelForImageTextToText, True


def _architecture(config: Any) -> tuple[Any, ...]:
    """What an adapter's weights depend on: the model type and the language model's shape."""
    text = config.get_text_config()
    return config.model_type, text.hidden_size, text.num_hidden_layers


def _check_adapter(adapter: str, model: str, config: Any) -> tuple[str, str]:
    """The adapter's source and base, refused if no peft adapter or made for another base."""
    from peft import PeftConfig
    from transformers import AutoConfig

    source = _locate("adapter", adapter, "--adapter")
    folder = Path(source)
    if folder.is_dir() and not (folder / "adapter_config.json").is_file():
        raise ModelFileError(
            f"{adapter} exists but holds no adapter_config.json, so it is no peft adapter: pass"
            " --adapter a folder saved by peft's save_pretrained, or --no-adapter."
        )
    if folder.is_dir():
        _check_json_files(folder)
        weights = adapter_weights(folder)
        if not weights:
            raise ModelFileError(
                f"{adapter} holds no adapter weights (adapter_model.safetensors): copy or"
                " download the whole adapter folder again."
            )
        _check_safetensors(weights)
    try:
        base = PeftConfig.from_pretrained(source).base_model_name_or_path or ""
    except ValueError as exc:  # peft: "Can't find 'adapter_config.json' at ..."
        logger.debug("adapter %s not loadable: %s", adapter, exc)
        raise not_found("adapter", adapter, "--adapter") from None
    base_folder = find_folder(base)
    if base_folder is None or base == model:
        return source, base
    try:
        base_config = AutoConfig.from_pretrained(base_folder)
    except (OSError, ValueError) as exc:  # the base's files are not all here: cannot compare
        logger.debug("config of the adapter's base %s not readable: %s", base, exc)
        return source, base
    if _architecture(base_config) != _architecture(config):
        raise adapter_mismatch(adapter, base, model)
    return source, base


def plan_model(
    model: str,
    *,
    adapter: str | None = None,
    quantize: Quantization | str = Quantization.AUTO,
    device: str | None = None,
) -> ModelPlan:
    """Check everything about a model load that can be checked without reading weights.

    In order: the device, the quantization library, the model folder (``config.json`` with a
    ``model_type`` transformers knows, weights whose safetensors headers read, a tokenizer),
    and the adapter (``adapter_config.json``, and a base of the model's architecture where the
    base's config is on disk).

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
    ModelPlan

    Raises
    ------
    ParameterError, DeviceError
        If the device string is malformed or the device absent.
    DependencyError
        If 4-bit or 8-bit weights are asked for and bitsandbytes does not import.
    ModelNotFoundError
        If the model or adapter is neither a local folder nor available from the hub or cache.
    ModelFileError
        If a folder is incomplete or corrupt, or the adapter was made for another base.
    """
    where = resolve_device(device)
    requested = Quantization(quantize)
    quantization = requested.resolve(where.type)
    _check_bitsandbytes(requested, quantization)
    source = _locate("model", model, "--model")
    if Path(source).is_dir():
        _check_folder(Path(source), model)
    config = _config(source, model)
    cls, supports_images = _model_class(config)
    adapter_source, adapter_base = (
        (None, None) if adapter is None else _check_adapter(adapter, model, config)
    )
    return ModelPlan(
        model=model,
        source=source,
        config=config,
        model_class=cls,
        supports_images=supports_images,
        quantization=quantization,
        device=where,
        dtype=torch.bfloat16 if where.type == "cuda" else torch.float32,
        adapter=adapter,
        adapter_source=adapter_source,
        adapter_base=adapter_base,
    )
