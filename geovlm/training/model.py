"""The model to train: planned and loaded by the inference loader, then made trainable.

`plan_training` checks the device, quantization library and model folder without reading
weights (`geovlm.backends.preflight.plan_model`); `load_for_training` loads fresh weights with
the same loader inference uses, then wraps the language model's linear layers in LoRA (QLoRA on
CUDA with 4-bit NF4 weights) or unfreezes the language model for full fine-tuning. The vision
tower and its merger always stay frozen, as LLaMA-Factory keeps them.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from geovlm.backends.devices import resolve_device
from geovlm.backends.loading import load_weights
from geovlm.backends.preflight import ModelPlan, plan_model
from geovlm.errors import ModelCapabilityError, ParameterError
from geovlm.models.quantization import Quantization
from geovlm.training.config import FinetuningType, LoraTarget, TrainConfig

__all__ = [
    "base_model_name",
    "language_model_targets",
    "load_for_training",
    "plan_training",
    "set_cache",
]

logger = logging.getLogger(__name__)

_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_QUANTIZATIONS = {4: Quantization.NF4, 8: Quantization.INT8}
#: Non-reentrant activation checkpointing: frozen inputs (embeddings, pixels) need no gradients.
_CHECKPOINTING = {"use_reentrant": False}


def base_model_name(model: str) -> str:
    """How an output names its base: a folder as an absolute path, a hub id as it is.

    Parameters
    ----------
    model
        The base model as the user gave it.

    Returns
    -------
    str
    """
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def plan_training(config: TrainConfig, model: str, device: str | None) -> ModelPlan:
    """Check what training ``model`` on ``device`` needs, without reading weights.

    The CPU trains without quantization (bitsandbytes' CPU 4-bit gives wrong gradients once a
    model has run an inference forward, and is slow); CUDA uses ``quantization_bit``.

    Parameters
    ----------
    config
        The recipe.
    model
        The base model: a hub id or a local folder.
    device
        A torch device string, or None for CUDA when present, else the CPU.

    Returns
    -------
    geovlm.backends.preflight.ModelPlan

    Raises
    ------
    ParameterError
        If full fine-tuning is asked of quantized weights.
    ModelCapabilityError
        If the model reads text only.
    GeovlmError
        What `plan_model` raises: an absent device, bitsandbytes missing, a broken folder.
    """
    where = resolve_device(device)
    quantization = Quantization.NONE
    if config.quantization_bit is not None and where.type == "cuda":
        quantization = _QUANTIZATIONS[config.quantization_bit]
    elif config.quantization_bit is not None:
        logger.warning(
            "training on %s without quantization (quantization_bit %d applies on CUDA only)",
            where, config.quantization_bit,
        )
    if quantization is not Quantization.NONE and config.finetuning_type is FinetuningType.FULL:
        raise ParameterError(
            "full fine-tuning cannot update quantized weights: set quantization_bit=null or"
            " finetuning_type=lora."
        )
    plan = plan_model(model, quantize=quantization, device=str(where))
    if not plan.supports_images:
        raise ModelCapabilityError(
            f"{model} reads text only: train a vision-language model on image datasets."
        )
    return plan


def language_model_targets(model: torch.nn.Module, target: LoraTarget) -> str:
    """A peft ``target_modules`` regex for the language model's linear layers only.

    peft's ``"all-linear"`` would also wrap the vision tower and its merger; this matches the
    linear layers inside the model's decoder (`get_decoder`), not the output layer.

    Parameters
    ----------
    model
        The transformers model.
    target
        All linear layers, or the attention projections only.

    Returns
    -------
    str
        E.g. ``model.language_model.*(down_proj|gate_proj|...)`` (dots escaped).
    """
    decoder = model.get_decoder()  # type: ignore[operator]
    prefix = next(name for name, module in model.named_modules() if module is decoder)
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in decoder.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    if target is LoraTarget.ATTENTION:
        names &= set(_ATTENTION)
    return rf"{re.escape(prefix)}\..*\.({'|'.join(sorted(names))})"


def load_for_training(plan: ModelPlan, config: TrainConfig) -> tuple[torch.nn.Module, Any]:
    """Load fresh weights and make the language model trainable as the recipe says.

    Parameters
    ----------
    plan
        `plan_training`'s result.
    config
        The recipe.

    Returns
    -------
    tuple
        The trainable model (a peft model for LoRA) and the processor.
    """
    net: Any
    net, processor = load_weights(plan)
    set_cache(net, False)
    quantized = plan.quantization is not Quantization.NONE
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    if quantized:
        from peft import prepare_model_for_kbit_training

        net = prepare_model_for_kbit_training(
            net,
            use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs=_CHECKPOINTING,
        )
    elif config.gradient_checkpointing:
        net.gradient_checkpointing_enable(gradient_checkpointing_kwargs=_CHECKPOINTING)
    if config.finetuning_type is FinetuningType.LORA:
        net = _with_lora(net, plan, config)
    else:
        trainable = [net.get_decoder(), net.get_output_embeddings()]
        for module in trainable:
            module.requires_grad_(True)
    counts = [(p.numel(), p.requires_grad) for p in net.parameters()]
    logger.info(
        "%s: training %d of %d parameters (%s)",
        config.finetuning_type.value, sum(n for n, grad in counts if grad),
        sum(n for n, _ in counts), plan.quantization.value,
    )
    net.train()
    return net, processor


def set_cache(net: Any, enabled: bool) -> None:
    """Turn the key-value cache off for training (it clashes with gradient checkpointing).

    Parameters
    ----------
    net
        The transformers (or peft) model.
    enabled
        Whether generation may cache keys and values; turn it back on before saving.
    """
    for config in {id(c): c for c in (net.config, net.config.get_text_config())}.values():
        config.use_cache = enabled


def _with_lora(net: torch.nn.Module, plan: ModelPlan, config: TrainConfig) -> torch.nn.Module:
    """``net`` with fresh LoRA adapters on its language model, named after the user's base."""
    from peft import LoraConfig, TaskType, get_peft_model

    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=language_model_targets(net, config.lora_target),
        task_type=TaskType.CAUSAL_LM,
    )
    wrapped = get_peft_model(net, lora)
    wrapped.peft_config["default"].base_model_name_or_path = base_model_name(plan.model)
    return wrapped
