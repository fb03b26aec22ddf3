"""A randomly initialised model of Qwen3-VL-8B's published size, for real-size throughput on a GPU.

Used by ``bench/classify.py --shape 8b``. Dimensions are those of ``Qwen/Qwen3-VL-8B-Instruct``'s
``config.json`` (transformers' ``Qwen3VLConfig`` defaults differ: 32 layers, 32 KV heads,
intermediate 22016, vision output 3584). Token ids of the image and vision markers come from the
tokenizer the model is paired with (the tiny test tokenizer: its ids all lie inside the 151936
rows), since a random model only has to see the same token layout, not read words.

- `config_8b`: the configuration.
- `parameter_count`: parameters of a configuration, counted on the meta device (no memory).
- `build_8b`: the model straight on a CUDA device in bfloat16 (random weights, no download), or
  with the language model's linear layers in bitsandbytes NF4 (double quantization, bfloat16
  compute, as ``geovlm --quantize 4bit`` loads it); the vision tower and ``lm_head`` stay bf16.
- `backend`: geovlm's ``HFBackend`` around such a model and a Qwen3-VL processor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

#: Qwen/Qwen3-VL-8B-Instruct, config.json.
TEXT_8B: dict[str, Any] = {
    "hidden_size": 4096,
    "intermediate_size": 12288,
    "num_hidden_layers": 36,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 151936,
    "max_position_embeddings": 262144,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "attention_bias": False,
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 5_000_000.0,
        "mrope_section": [24, 20, 20],
        "mrope_interleaved": True,
    },
}
VISION_8B: dict[str, Any] = {
    "depth": 27,
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_heads": 16,
    "in_channels": 3,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "out_hidden_size": 4096,
    "num_position_embeddings": 2304,
    "deepstack_visual_indexes": [8, 16, 24],
    "hidden_act": "gelu_pytorch_tanh",
}


def config_8b(token_ids: Mapping[str, int]) -> Any:
    """Qwen3-VL-8B's configuration with the special token ids of the paired tokenizer.

    ``token_ids`` maps ``image``, ``video``, ``vision_start``, ``vision_end`` and ``pad``.
    """
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(
        text_config={**TEXT_8B, "pad_token_id": token_ids["pad"]},
        vision_config=dict(VISION_8B),
        image_token_id=token_ids["image"],
        video_token_id=token_ids["video"],
        vision_start_token_id=token_ids["vision_start"],
        vision_end_token_id=token_ids["vision_end"],
        tie_word_embeddings=False,
    )


def token_ids(processor: Any) -> dict[str, int]:
    """The ids `config_8b` needs, from a Qwen3-VL processor."""
    tokenizer = processor.tokenizer
    return {
        "image": processor.image_token_id,
        "video": processor.video_token_id,
        "vision_start": processor.vision_start_token_id,
        "vision_end": processor.vision_end_token_id,
        "pad": tokenizer.pad_token_id,
    }


def parameter_count(config: Any) -> int:
    """Parameters of the model `config` describes, built on the meta device (nothing allocated)."""
    from transformers import Qwen3VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration(config)
    return sum(p.numel() for p in model.parameters())


def build_8b(config: Any, device: str, quantize: str) -> torch.nn.Module:
    """The model with random weights, built directly on `device` in bfloat16, in eval mode.

    ``quantize``: ``"none"`` (bf16) or ``"4bit"`` (the language model's linear layers replaced
    by bitsandbytes NF4 ``Linear4bit``, quantized from the bf16 weights one layer at a time).
    """
    from transformers import Qwen3VLForConditionalGeneration

    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = Qwen3VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    if quantize == "4bit":
        quantize_linear_4bit(model.model.language_model, device)
    return model.eval()


def quantize_linear_4bit(module: torch.nn.Module, device: str) -> None:
    """Replace every ``nn.Linear`` under `module` by an NF4 ``Linear4bit`` holding its weights."""
    import bitsandbytes as bnb

    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear:
                continue
            layer = bnb.nn.Linear4bit(
                child.in_features, child.out_features, bias=child.bias is not None,
                compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4",
                device="meta",
            )
            layer.weight = bnb.nn.Params4bit(  # quantized by .to(device), where the data is
                child.weight.data, requires_grad=False, compress_statistics=True,
                quant_type="nf4",
            ).to(device)
            if child.bias is not None:
                layer.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, name, layer)
            del child


def backend(processor: Any, config: Any, device: str, quantize: str, batch_size: int) -> Any:
    """An ``HFBackend`` (``qwen3_vl_nothink`` prompts) around `build_8b`'s model."""
    from geovlm.backends.chat import PromptTemplate
    from geovlm.backends.hf import HFBackend
    from geovlm.backends.loading import LoadedModel
    from geovlm.models.quantization import Quantization

    loaded = LoadedModel(
        model=build_8b(config, device, quantize), processor=processor, supports_images=True,
        quantization=Quantization(quantize), device=torch.device(device), dtype=torch.bfloat16,
    )
    return HFBackend(loaded, template=PromptTemplate("qwen3_vl_nothink"), batch_size=batch_size)
