"""Turn a rendered prompt, its image and an answer into token ids: shared by inference and training.

`geovlm.backends.hf.HFBackend` encodes prompts and scores answers with these functions and
`geovlm.training.data` builds training sequences with the same ones, so the tokens a model is
trained on are exactly those it is later asked and scored with.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from PIL import Image

from geovlm.errors import ParameterError

__all__ = ["answer_ids", "image_size_kwargs", "processor_inputs"]

logger = logging.getLogger(__name__)


def image_size_kwargs(processor: Any, max_pixels: int | None) -> dict[str, Any]:
    """Image processor arguments that cap the pixels of each image (its single resize).

    Parameters
    ----------
    processor
        The model's processor.
    max_pixels
        Upper bound on ``width * height`` after the resize, or None for the processor's default.

    Returns
    -------
    dict
        Keyword arguments for the processor call; empty when there is no cap (or none possible).

    Raises
    ------
    ParameterError
        If ``max_pixels`` is not positive.
    """
    if max_pixels is None:
        return {}
    if max_pixels < 1:
        raise ParameterError(f"image_max_pixels must be positive, not {max_pixels}")
    image_processor = getattr(processor, "image_processor", None)
    size = getattr(image_processor, "size", None)
    if size is None or "longest_edge" not in size or "shortest_edge" not in size:
        logger.warning("image_max_pixels ignored: this image processor has a fixed size")
        return {}
    # Qwen-VL processors resize once, to multiples of patch*merge within these bounds.
    return {
        "size": {
            "shortest_edge": min(size["shortest_edge"], max_pixels),
            "longest_edge": max_pixels,
        }
    }


def processor_inputs(
    processor: Any,
    texts: Sequence[str],
    images: Sequence[Image.Image],
    size_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """The processor's encoding of rendered prompts with their RGB images, padded.

    Parameters
    ----------
    processor
        The model's processor (its tokenizer's padding side decides where padding goes).
    texts
        Prompts rendered by `geovlm.backends.chat.ChatFormat.render`.
    images
        The RGB images of all prompts, in order: as many per prompt as its placeholders.
    size_kwargs
        `image_size_kwargs`'s result.

    Returns
    -------
    dict of str to torch.Tensor
        ``input_ids`` (image placeholders expanded), ``attention_mask``, the pixels and what
        else the processor returns (``image_grid_thw``, ``mm_token_type_ids``, ...).
    """
    return dict(
        processor(
            text=list(texts),
            images=list(images),
            padding=True,
            return_tensors="pt",
            add_special_tokens=False,
            **size_kwargs,
        )
    )


def answer_ids(tokenizer: Any, answer: str, end_of_turn: int) -> list[int]:
    """The tokens of one assistant reply: its text, then the token that ends the turn.

    Parameters
    ----------
    tokenizer
        The model's tokenizer.
    answer
        The reply, without chat markup.
    end_of_turn
        `geovlm.backends.chat.ChatFormat.end_of_turn_id`.

    Returns
    -------
    list of int
        What a scorer scores and a trainer puts its loss on.
    """
    return [*tokenizer(answer, add_special_tokens=False)["input_ids"], end_of_turn]
