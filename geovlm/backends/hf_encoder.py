"""Encode prompts and their images into a transformers model's inputs, on the CPU, thread-safe.

`BatchEncoder` is the CPU side of `geovlm.backends.hf.HFBackend`: it renders prompts in the chat
format, runs the processor (or the Qwen-VL fast path, checked against the processor on the
first batch of each number of images per prompt) and moves the batch to the model's device.
A prompt may carry several images (`geovlm.backends.base.PromptImages`), one placeholder each,
in order; models that read one image per prompt (LLaVA) refuse them. The pipeline encodes batch
k+1 on a thread while the model runs batch k, so the processor's call has a tokenizer of its own.
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from geovlm.backends.base import PromptImages, images_of
from geovlm.backends.chat import ChatFormat
from geovlm.backends.encoding import processor_inputs
from geovlm.backends.loading import LoadedModel
from geovlm.backends.qwen_fastpath import QwenPatches
from geovlm.errors import ModelCapabilityError, ParameterError

__all__ = ["BatchEncoder"]

logger = logging.getLogger(__name__)


def _with_own_tokenizer(processor: Any) -> Any:
    """A shallow copy of a multimodal processor holding a deep copy of its tokenizer.

    Same vocabulary and settings, so the same ids; a text-only model's tokenizer is returned
    as is (it never encodes images).
    """
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None or tokenizer is processor:
        return processor
    clone = copy.copy(processor)
    clone.tokenizer = copy.deepcopy(tokenizer)
    return clone


class BatchEncoder:
    """Turns prompts (each about its image, if any) into left-padded model inputs.

    Parameters
    ----------
    loaded
        The model and processor.
    chat
        How prompts are rendered (the model's template or a named one).
    tokenizer_lock
        Held around every use of the shared tokenizer (`HFBackend` decodes with it too).
    image_kwargs
        The processor's image-size arguments (`geovlm.backends.encoding.image_size_kwargs`).
    """

    def __init__(self, loaded: LoadedModel, chat: ChatFormat, tokenizer_lock: threading.Lock,
                 image_kwargs: dict[str, Any]) -> None:
        self.loaded = loaded
        self.chat = chat
        self.tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
        self._tokenizer_lock = tokenizer_lock
        # The processor's call (image processing, then tokenisation) gets its own copy of the
        # tokenizer and its own lock, so encoding the next batch's images never waits for the
        # scoring or decoding of this one (which hold the tokenizer lock), nor they for it.
        self._image_encoder = _with_own_tokenizer(loaded.processor)
        self._image_encoder_lock = threading.Lock()
        self._image_kwargs = image_kwargs
        self._patches = QwenPatches.for_processor(loaded.processor, image_kwargs.get("size"))
        #: Numbers of images per prompt whose fast encoding was checked against the processor.
        self._patches_checked: set[int] = set()
        self._token_cache: dict[str, dict[str, torch.Tensor]] = {}

    def encode(
        self, images: Sequence[PromptImages] | None, prompts: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Model inputs for prompts (each about the image(s) at the same index), left-padded.

        Parameters
        ----------
        images
            Each prompt's image, or its images in order, or None for text-only prompts.
        prompts
            The user's questions, without chat markup.

        Returns
        -------
        dict of str to torch.Tensor
            What the processor returns (``input_ids``, ``attention_mask``, pixels, ...), on the
            model's device, floating-point tensors in the model's activation type.

        Raises
        ------
        ModelCapabilityError
            If images are given to a text-only model.
        ParameterError
            If the number of images differs from the number of prompts, a prompt has no image,
            or a model that reads one image per prompt is given several.
        """
        if images is not None and not self.loaded.supports_images:
            raise ModelCapabilityError(
                "this model reads text only: choose a vision-language model to classify images"
            )
        if images is not None and len(images) != len(prompts):
            raise ParameterError(f"{len(images)} images for {len(prompts)} prompts: give one each")
        counts = [0] * len(prompts) if images is None else [len(images_of(i)) for i in images]
        keys = list(zip(prompts, counts, strict=True))
        rendered = {k: self.chat.render(k[0], image=k[1]) for k in dict.fromkeys(keys)}
        return self.encode_rendered(images, [rendered[k] for k in keys])

    def encode_rendered(
        self, images: Sequence[PromptImages] | None, texts: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """`encode` for prompts already in the chat format (e.g. whole conversations).

        Parameters
        ----------
        images
            Each text's image or images (filling its placeholders in order), or None.
        texts
            Rendered prompts, e.g. by ``self.chat.render_turns``.

        Returns
        -------
        dict of str to torch.Tensor
            As `encode`.
        """
        texts = list(texts)
        kwargs: dict[str, Any] = {
            "padding": True,
            "return_tensors": "pt",
            "add_special_tokens": False,
        }
        if images is not None:
            per_text = [self._checked_count(images_of(item)) for item in images]
            rgb = [im if im.mode == "RGB" else im.convert("RGB") for ims in per_text for im in ims]
            batch = self._fast_encode(texts, rgb, [len(ims) for ims in per_text])
            if batch is None:
                batch = self._processor(texts, rgb)
        else:
            batch = self._locked_tokenizer(texts, **kwargs)
        device, dtype = self.loaded.device, self.loaded.dtype
        return {
            k: v.to(device, dtype) if v.is_floating_point() else v.to(device)
            for k, v in batch.items()
        }

    def _checked_count(self, images: tuple[Image.Image, ...]) -> tuple[Image.Image, ...]:
        """One prompt's images, refused if none or several for a model that reads one."""
        if not images:
            raise ParameterError("a prompt has no image: give each prompt one image or more")
        if len(images) > 1 and not self.loaded.several_images:
            raise ParameterError(
                f"{len(images)} images in one prompt, but this model reads one image per prompt:"
                " give one image each, or choose a Qwen-VL model for pre and post images"
            )
        return images

    def _processor(self, texts: list[str], images: list[Image.Image]) -> dict[str, torch.Tensor]:
        """The processor's own encoding of prompts and their images, in order (own tokenizer)."""
        with self._image_encoder_lock:
            return processor_inputs(self._image_encoder, texts, images, self._image_kwargs)

    def _locked_tokenizer(self, *args: Any, **kwargs: Any) -> Any:
        """Call the tokenizer while no other thread uses it."""
        with self._tokenizer_lock:
            return self.tokenizer(*args, **kwargs)

    def _tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids, mask and (where the processor gives them) modality ids of expanded texts."""
        batch = dict(
            self._locked_tokenizer(
                texts, padding=True, return_tensors="pt", add_special_tokens=False
            )
        )
        processor = self.loaded.processor
        if getattr(processor, "return_mm_token_type_ids", False):
            types_ = processor.create_mm_token_type_ids(batch["input_ids"])
            batch["mm_token_type_ids"] = torch.tensor(types_, dtype=batch["input_ids"].dtype)
        return batch

    def _fast_encode(
        self, texts: list[str], images: list[Image.Image], counts: list[int]
    ) -> dict[str, torch.Tensor] | None:
        """`_processor`'s result through `QwenPatches`, or None where that does not apply.

        ``images`` are every text's images in order, ``counts`` how many each text has. The
        first batch of each number of images per prompt is also encoded by the processor and
        compared key by key; any difference turns the fast path off for good (with a warning).
        """
        if self._patches is None or not images or not self._patches.fits(images):
            return None
        processor = self.loaded.processor
        pixels = self._patches(images)
        expanded: list[str] = []
        for text, start in zip(texts, itertools.accumulate(counts, initial=0), strict=False):
            parts = text.split(processor.image_token)
            expansions = [processor.replace_image_token(pixels, start + j)
                          for j in range(len(parts) - 1)]
            expanded.append(parts[0] + "".join(e + p for e, p in zip(expansions, parts[1:],
                                                                     strict=True)))
        if len(set(expanded)) == 1:  # one prompt for all chips: tokenize it once
            if expanded[0] not in self._token_cache:
                self._token_cache = {expanded[0]: self._tokens(expanded[:1])}
            one = self._token_cache[expanded[0]]
            batch = {k: v.expand(len(expanded), -1).clone() for k, v in one.items()}
        else:
            batch = self._tokens(expanded)
        batch.update(pixels)
        if unchecked := set(counts) - self._patches_checked:
            reference = self._processor(texts, images)
            same = reference.keys() == batch.keys() and all(
                torch.equal(reference[k], batch[k]) for k in reference
            )
            self._patches_checked |= unchecked
            if not same:
                logger.warning("fast Qwen-VL image encoding differs from the processor: off")
                self._patches = None
                return reference
        return batch
