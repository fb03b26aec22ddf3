"""Log-likelihood of candidate answers sharing one prompt: one prefill, then one batched forward.

For a batch of ``B`` prompts (each with its image) and ``A`` candidate answers, the prompt is run
once, its KV cache repeated ``A`` times, and all candidates' tokens go through the model in one
more forward: two forwards in all, instead of ``A`` forwards of the whole prompt and image.

Positions are explicit. A text model's continuation token ``j`` sits at ``n + j`` where ``n`` is
the number of real (unpadded) prompt tokens. Qwen-VL models use multimodal rope: the prompt's
(temporal, height, width) positions come from the model's ``get_rope_index`` and every later
text token sits at ``n + delta + j`` on all three axes, ``delta`` being the model's rope delta
(largest prompt position + 1 - ``n``), exactly as the model continues during generation.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["continuation_positions", "prefill_positions", "rope_index_fn", "score_candidates"]

RopeIndex = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def rope_index_fn(model: Any) -> RopeIndex | None:
    """The model's multimodal-rope ``get_rope_index`` (Qwen-VL families), or None for 1-D rope.

    Parameters
    ----------
    model
        A transformers model, possibly wrapped by peft.

    Returns
    -------
    callable or None
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(getattr(base, "model", None), "get_rope_index", None)


def prefill_positions(
    inputs: Mapping[str, torch.Tensor], rope_index: RopeIndex | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Position ids of left-padded prompts and the position of each row's next token.

    Parameters
    ----------
    inputs
        The processor's output: ``input_ids``, ``attention_mask`` and, for multimodal rope,
        ``mm_token_type_ids`` and ``image_grid_thw``.
    rope_index
        `rope_index_fn` of the model.

    Returns
    -------
    position_ids : torch.Tensor
        ``(B, L)`` for 1-D rope, ``(3, B, L)`` for multimodal rope; 0 on padding.
    next_position : torch.Tensor
        ``(B,)``, the position of the first token after each prompt.
    """
    mask = inputs["attention_mask"]
    real = mask.sum(-1)
    if rope_index is None or "mm_token_type_ids" not in inputs:
        positions = (mask.long().cumsum(-1) - 1).clamp_min(0)
        return positions, real
    accepted = inspect.signature(rope_index).parameters
    extra = {k: v for k, v in inputs.items() if k in accepted and k != "input_ids"}
    positions, deltas = rope_index(inputs["input_ids"], **extra)
    return positions, real + deltas.reshape(-1).to(real.device)


def continuation_positions(next_position: torch.Tensor, length: int, mrope: bool) -> torch.Tensor:
    """Positions of ``length`` text tokens appended to prompts whose next position is given.

    Parameters
    ----------
    next_position
        ``(N,)`` from `prefill_positions` (repeated per candidate as needed).
    length
        Number of appended tokens.
    mrope
        Whether to return the 3-axis layout of multimodal rope.

    Returns
    -------
    torch.Tensor
        ``(N, length)``, or ``(3, N, length)`` if ``mrope``.
    """
    steps = torch.arange(length, device=next_position.device)
    positions = next_position[:, None] + steps[None, :]
    return positions[None].expand(3, -1, -1) if mrope else positions


def _pad(rows: Sequence[Sequence[int]], width: int, value: int) -> torch.Tensor:
    return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows], dtype=torch.long)


@torch.inference_mode()
def score_candidates(
    model: torch.nn.Module,
    inputs: Mapping[str, Any],
    candidates: Sequence[Sequence[int]],
    *,
    pad_id: int,
) -> torch.Tensor:
    """Total log-probability of each candidate token sequence after each prompt.

    Parameters
    ----------
    model
        A causal (vision-)language model.
    inputs
        ``B`` left-padded prompts as the processor returns them (pixels included), on the
        model's device.
    candidates
        ``A`` non-empty token id sequences, e.g. an answer followed by the end-of-turn token.
    pad_id
        Any valid token id, used to pad shorter candidates (those positions are ignored).

    Returns
    -------
    torch.Tensor
        ``(B, A)`` float32: ``sum_j log p(c_j | prompt, c_<j)`` for every prompt and candidate.
    """
    rope_index = rope_index_fn(model)
    positions, next_position = prefill_positions(inputs, rope_index)
    out = model(**inputs, position_ids=positions, use_cache=True, logits_to_keep=1)
    device = out.logits.device
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
    heads = torch.tensor([c[0] for c in candidates], device=device)
    total = first[:, heads]
    width = max(len(c) for c in candidates) - 1
    if width == 0:
        return total
    n_prompts, n_cand = total.shape
    feed = _pad([c[:-1] for c in candidates], width, pad_id).to(device)
    target = _pad([c[1:] for c in candidates], width, pad_id).to(device)
    valid = _pad([[1] * (len(c) - 1) for c in candidates], width, 0).to(device)
    cache = out.past_key_values
    cache.batch_repeat_interleave(n_cand)
    mask = inputs["attention_mask"].repeat_interleave(n_cand, dim=0)
    mask = torch.cat([mask, mask.new_ones(mask.shape[0], width)], dim=1)
    logits = model(
        input_ids=feed.repeat(n_prompts, 1),
        attention_mask=mask,
        position_ids=continuation_positions(
            next_position.repeat_interleave(n_cand), width, positions.dim() == 3
        ),
        past_key_values=cache,
        use_cache=True,
    ).logits.float()
    picked = logits.gather(-1, target.repeat(n_prompts, 1)[..., None]).squeeze(-1)
    logp = (picked - logits.logsumexp(-1)) * valid.repeat(n_prompts, 1)
    return total + logp.sum(-1).view(n_prompts, n_cand)
