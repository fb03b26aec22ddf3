"""Load a transformers model (and optional LoRA adapter) by id or folder, quantized or not.

`geovlm.backends.preflight.plan_model` first checks all that can be checked without weights
(device, bitsandbytes, folder contents, ``model_type``, the adapter's base) and picks the class
from the config's ``model_type``; what only loading can reveal (corrupt shards, weights of another
model, an adapter that fits no module, GPU memory) becomes one `GeovlmError` sentence here.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from geovlm.backends.preflight import ModelPlan, adapter_mismatch, not_found, plan_model
from geovlm.errors import DependencyError, DeviceError, ModelFileError, first_line
from geovlm.models.quantization import Quantization

__all__ = ["ONE_IMAGE_MODEL_TYPES", "LoadedModel", "bnb_config", "load_model", "load_weights"]

logger = logging.getLogger(__name__)

#: ``model_type``s that read one image per prompt (LLaVA-style vqwen3: one ``<image>`` token,
#: trained so): a prompt with several images is refused. Qwen-VL and the rest take several.
ONE_IMAGE_MODEL_TYPES = frozenset({"llava"})


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

    @property
    def several_images(self) -> bool:
        """Whether one prompt may carry several images (Qwen-VL: yes; LLaVA, text models: no)."""
        model_type = getattr(getattr(self.model, "config", None), "model_type", None)
        return self.supports_images and model_type not in ONE_IMAGE_MODEL_TYPES


def _out_of_memory(what: str, device: torch.device) -> DeviceError:
    """The one-sentence error for weights that do not fit on the device."""
    return DeviceError(
        f"{what} does not fit in the memory of {device}: pass --quantize 4bit, a smaller model,"
        " or another --device."
    )


def load_weights(plan: ModelPlan) -> tuple[torch.nn.Module, Any]:
    """The model and its processor as the plan says, library errors turned into `GeovlmError`s.

    Parameters
    ----------
    plan
        `geovlm.backends.preflight.plan_model`'s checked plan (its adapter is not applied).

    Returns
    -------
    tuple
        The transformers model (in eval mode, as ``from_pretrained`` leaves it) and its
        processor or tokenizer.

    Raises
    ------
    ModelNotFoundError, ModelFileError, DeviceError, DependencyError
        If files are missing or corrupt, the weights do not fit the device, or a library lacks.
    """
    import transformers
    from safetensors import SafetensorError

    model = plan.model
    try:
        net, info = plan.model_class.from_pretrained(
            plan.source,
            config=plan.config,
            dtype=plan.dtype,
            quantization_config=bnb_config(plan.quantization),
            device_map={"": str(plan.device)},
            output_loading_info=True,
        )
        auto = transformers.AutoProcessor if plan.supports_images else transformers.AutoTokenizer
        processor = auto.from_pretrained(plan.source)
    except OSError as exc:  # weights or processor files missing (partial cache, offline)
        logger.debug("%s not loadable: %s", model, exc)
        raise not_found("model", model, "--model") from None
    except SafetensorError as exc:  # a shard corrupt past its header
        raise ModelFileError(
            f"{model} has truncated or corrupt weights ({first_line(exc)}): copy or download"
            " the model again."
        ) from None
    except torch.OutOfMemoryError:
        raise _out_of_memory(model, plan.device) from None
    except ImportError as exc:  # a library the model or its quantization needs
        logger.debug("%s needs a missing library: %s", model, exc)
        raise DependencyError(
            f"loading {model} needs a library that does not import here ({first_line(exc)}):"
            " install it, or pass --quantize none if it is bitsandbytes."
        ) from None
    missing = [*info["missing_keys"], *(key for key, *_ in info["mismatched_keys"])]
    if missing:
        raise ModelFileError(
            f"{model}'s weights do not fit its config.json ({len(missing)} tensors missing or"
            f" of another shape, e.g. {sorted(missing)[0]}): they belong to another model, so"
            " copy or download it again."
        )
    return net, processor


def _attach_adapter(net: torch.nn.Module, plan: ModelPlan) -> torch.nn.Module:
    """``net`` with the plan's adapter (merged into unquantized weights); a misfit is refused."""
    from peft import NoMatchingPeftModuleError, PeftModel
    from safetensors import SafetensorError

    adapter, source = plan.adapter, plan.adapter_source
    assert adapter is not None and source is not None, "a plan without an adapter"
    mismatch = adapter_mismatch(adapter, plan.adapter_base or "", plan.model)
    try:
        with warnings.catch_warnings():
            # peft only warns when adapter weights find no module of that name: junk results.
            warnings.filterwarnings(
                "error", message="Found missing adapter keys", category=UserWarning,
                module=r"peft\.",
            )
            net = PeftModel.from_pretrained(net, source)
    except (NoMatchingPeftModuleError, UserWarning):
        raise mismatch from None
    except SafetensorError as exc:  # corrupt past its header
        raise ModelFileError(
            f"the adapter {adapter} has truncated or corrupt weights ({first_line(exc)}): copy"
            " or download it again."
        ) from None
    except torch.OutOfMemoryError:
        raise _out_of_memory(f"the adapter {adapter}", plan.device) from None
    except RuntimeError as exc:  # torch's load_state_dict: "size mismatch for ..."
        if "size mismatch" not in str(exc):
            raise
        raise mismatch from None
    return net.merge_and_unload() if plan.quantization is Quantization.NONE else net


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
    ModelFileError
        If a folder is incomplete or corrupt, or the adapter was made for another base.
    ParameterError, DeviceError
        If the device string is malformed or the device absent or too small.
    DependencyError
        If 4-bit or 8-bit weights are asked for and bitsandbytes does not work.
    ValueError
        If ``quantize`` is not one of the options.
    """
    plan = plan_model(model, adapter=adapter, quantize=quantize, device=device)
    logger.info(
        "loading %s as %s (%s, %s)",
        model, plan.model_class.__name__, plan.quantization.value, plan.device,
    )
    net, processor = load_weights(plan)
    if plan.adapter is not None:
        net = _attach_adapter(net, plan)
    net.eval()
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(
        net, processor, plan.supports_images, plan.quantization, plan.device, plan.dtype
    )
