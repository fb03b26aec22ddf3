"""In-process transformers backend: any supported VLM or text model, batched with left padding.

`HFBackend.load` chooses the model class from the config (see `geovlm.backends.loading`), renders
prompts with the model's own chat template or a named `PromptTemplate`
(`geovlm.backends.chat`), and scores candidate answers with one shared prefill per batch
(`geovlm.backends.scoring`).

Two CPU fast paths, measured by ``bench/classify.py``: chips that Qwen-VL's image processor would
not resize are cut into patches straight from their uint8 pixels (bit-identical to the processor,
checked against it on the first batch), and a vision tower's Conv3d patch embedding, whose kernel
equals its stride, runs as the matrix product it is (float64 accumulation, so the same numbers
within float32 rounding, batch or not) instead of a 3-D convolution over 1x1x1 outputs.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image

from geovlm.backends.chat import ChatFormat, PromptTemplate
from geovlm.backends.loading import LoadedModel, load_model
from geovlm.backends.scoring import score_candidates
from geovlm.errors import ModelCapabilityError, ParameterError
from geovlm.quantization import Quantization

__all__ = ["HFBackend"]

logger = logging.getLogger(__name__)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


#: Rows per matrix product in `_conv3d_as_linear`. Every product has exactly this many rows
#: (the last padded with zeros), so a patch's result does not depend on what else is in the batch.
_PATCH_ROWS = 512


def _conv3d_as_linear(self: torch.nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A float32 patch Conv3d (kernel == stride, one output per patch) as matrix products.

    Each output is one dot product, accumulated in float64 and rounded once: closer to exact
    than the convolution's own float32 sum, and independent of the batch, because BLAS's
    blocking (which depends on the row count) no longer shows in the rounded result. Blocks
    of `_PATCH_ROWS` rows keep the float64 copy small and every product the same shape.
    """
    if x.dtype != torch.float32 or tuple(x.shape[-3:]) != tuple(self.kernel_size):
        return torch.nn.Conv3d.forward(self, x)
    weight = self.weight.reshape(self.out_channels, -1).double()
    bias = None if self.bias is None else self.bias.double()
    rows = x.reshape(x.shape[0], -1)
    n = rows.shape[0]
    block = rows.new_empty((_PATCH_ROWS, rows.shape[1]), dtype=torch.float64)  # reused
    out = rows.new_empty((n, self.out_channels))
    for start in range(0, n, _PATCH_ROWS):
        size = min(_PATCH_ROWS, n - start)
        block[:size].copy_(rows[start : start + size])
        if size < _PATCH_ROWS:
            block[size:].zero_()
        out[start : start + size] = torch.nn.functional.linear(block, weight, bias)[:size]
    return out.view(n, self.out_channels, 1, 1, 1)


def _patch_embeddings_as_matmul(model: torch.nn.Module) -> None:
    """Run every non-overlapping Conv3d patch embedding (Qwen-VL vision towers) as `linear`.

    Same mathematics (float rounding aside): each output is the dot product of one flattened
    input patch with one flattened kernel. On CPUs the 3-D convolution computes them one patch
    at a time and is several times slower. Modules wrapped by accelerate hooks are left alone;
    the state dict is unchanged.
    """
    for module in model.modules():
        if (
            type(module) is torch.nn.Conv3d
            and tuple(module.kernel_size) == tuple(module.stride)
            and tuple(module.padding) == (0, 0, 0)
            and tuple(module.dilation) == (1, 1, 1)
            and module.groups == 1
            and not hasattr(module, "_hf_hook")
        ):
            module.forward = types.MethodType(_conv3d_as_linear, module)


class _QwenPatches:
    """Qwen-VL ``pixel_values`` cut straight from uint8 chips the processor would not resize.

    The processor's own path converts, rescales, normalises and patchifies each image through a
    generic pipeline; here one uint8 transpose puts pixels in patch order and a 256-entry table
    per channel, computed by the processor's own ``rescale_and_normalize``, gives each value, so
    the result is bit-identical.
    """

    def __init__(self, image_processor: Any, size: dict[str, int] | None) -> None:
        self.patch = image_processor.patch_size
        self.merge = image_processor.merge_size
        self.temporal = image_processor.temporal_patch_size
        self.do_resize = image_processor.do_resize
        bounds = size or image_processor.size
        self.min_pixels, self.max_pixels = bounds["shortest_edge"], bounds["longest_edge"]

        def hashable(value: Any) -> Any:
            return tuple(value) if isinstance(value, list) else value

        codes = torch.arange(256, dtype=torch.uint8).expand(1, 3, 1, 256).contiguous()
        table = image_processor.rescale_and_normalize(
            codes,
            image_processor.do_rescale,
            image_processor.rescale_factor,
            image_processor.do_normalize,
            hashable(image_processor.image_mean),
            hashable(image_processor.image_std),
        )
        self.table = table[0, :, 0].to(torch.float32).numpy()
        self._pool = ThreadPoolExecutor(
            max(1, torch.get_num_threads()), thread_name_prefix="geovlm-patches"
        )

    @classmethod
    def for_processor(cls, processor: Any, size: dict[str, int] | None) -> _QwenPatches | None:
        """The fast path for a Qwen-VL torchvision image processor, or None for any other."""
        try:
            from transformers.models.qwen2_vl.image_processing_qwen2_vl import (
                Qwen2VLImageProcessor,
            )
        except ImportError:  # pragma: no cover - older or newer transformers layouts
            return None
        image_processor = getattr(processor, "image_processor", None)
        if not isinstance(image_processor, Qwen2VLImageProcessor):
            return None
        if getattr(image_processor, "backend", None) != "torchvision":
            return None
        if not (image_processor.do_rescale or image_processor.do_normalize):
            return None
        if not hasattr(processor, "replace_image_token") or not processor.image_token:
            return None
        return cls(image_processor, size)

    def fits(self, images: Sequence[Image.Image]) -> bool:
        """Whether all images are RGB, of one size, and left unresized by the processor."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        width, height = images[0].size
        if any(im.size != (width, height) or im.mode != "RGB" for im in images):
            return False
        factor = self.patch * self.merge
        if height % factor or width % factor:
            return False
        if not self.do_resize:
            return True
        resized = smart_resize(
            height, width, factor=factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )
        return tuple(resized) == (height, width)

    def __call__(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        """``pixel_values`` (patches x channels*temporal*patch*patch) and ``image_grid_thw``.

        Images are cut in parallel on `_pool` (numpy releases the GIL while it copies), each
        into its own rows of one output array.
        """
        width, height = images[0].size
        p, m, t = self.patch, self.merge, self.temporal
        per_image = (height // p) * (width // p)
        out = np.empty((len(images) * per_image, 3, t, p, p), dtype=np.float32)

        def fill(i: int) -> None:
            pixels = np.asarray(images[i])
            blocks = pixels.reshape(height // (p * m), m, p, width // (p * m), m, p, 3)
            # (merged row, merged col, row in merge, col in merge, channel, y, x)
            order = np.ascontiguousarray(blocks.transpose(0, 3, 1, 4, 6, 2, 5))
            order = order.reshape(per_image, 3, p, p)
            rows = out[i * per_image : (i + 1) * per_image]
            for c in range(3):
                rows[:, c] = self.table[c][order[:, c]][:, None]

        for _ in self._pool.map(fill, range(len(images))):
            pass
        grid = torch.tensor([[1, height // p, width // p]] * len(images), dtype=torch.long)
        flat = torch.from_numpy(out).view(out.shape[0], -1)
        return {"pixel_values": flat, "image_grid_thw": grid}


class HFBackend:
    """A transformers model answering and scoring prompts about images, in batches.

    Build it with `HFBackend.load`. Implements `geovlm.backends.base.Backend`.

    Parameters
    ----------
    loaded
        The model, processor and what was loaded.
    template
        A named chat format overriding the model's own chat template, or None.
    image_max_pixels
        Upper bound on ``width * height`` the image processor resizes to, or None for its default.
    batch_size
        Most prompts sent through the model at once.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        template: PromptTemplate | None = None,
        image_max_pixels: int | None = None,
        batch_size: int = 8,
    ) -> None:
        if batch_size < 1:
            raise ParameterError(f"batch size must be at least 1, not {batch_size}")
        self.loaded = loaded
        self.batch_size = batch_size
        self.supports_images = loaded.supports_images
        self.tokenizer = getattr(loaded.processor, "tokenizer", loaded.processor)
        self.chat = ChatFormat(loaded.processor, self.tokenizer, template)
        self._end_of_turn = self.chat.end_of_turn_id()
        if template is not None and self._end_of_turn in (None, self.tokenizer.unk_token_id):
            raise ParameterError(
                f"chat template {template.value!r} does not fit this model's tokenizer: "
                "leave the template unset to use the model's own"
            )
        self._image_kwargs = self._pixel_cap(image_max_pixels)
        self._patches = _QwenPatches.for_processor(
            loaded.processor, self._image_kwargs.get("size")
        )
        self._patches_checked = False
        self._token_cache: dict[str, dict[str, torch.Tensor]] = {}
        if loaded.device.type == "cpu":
            _patch_embeddings_as_matmul(loaded.model)

    @classmethod
    def load(
        cls,
        model: str,
        *,
        adapter: str | None = None,
        quantize: Quantization | str = "auto",
        template: str | None = None,
        image_max_pixels: int | None = None,
        device: str | None = None,
        batch_size: int = 8,
    ) -> HFBackend:
        """Load a model id or folder (and optional LoRA adapter) ready to answer and score.

        Parameters
        ----------
        model
            A Hugging Face hub id (in the local cache, or downloadable) or a local folder.
        adapter
            A peft LoRA adapter id or folder applied on top, or None.
        quantize
            ``"4bit"`` (bitsandbytes NF4, double quantization, bfloat16 compute), ``"8bit"``,
            ``"none"``, or ``"auto"`` (4bit on CUDA, none on the CPU).
        template
            A named chat format such as ``"qwen3_vl_nothink"``, or None for the model's own.
        image_max_pixels
            Cap on the pixels of each image after the processor's single resize (e.g. 262144
            for 512x512), or None for the processor's default.
        device
            A torch device string; None picks CUDA when available, else the CPU.
        batch_size
            Most prompts sent through the model at once.

        Returns
        -------
        HFBackend

        Raises
        ------
        ModelNotFoundError
            If the model or adapter cannot be found locally, in the cache, or on the hub.
        ValueError
            If ``quantize`` or ``template`` is not one of the options.
        """
        chosen = PromptTemplate(template) if template is not None else None
        quantization = Quantization(quantize)
        loaded = load_model(model, adapter=adapter, quantize=quantization, device=device)
        return cls(
            loaded, template=chosen, image_max_pixels=image_max_pixels, batch_size=batch_size
        )

    @property
    def model(self) -> torch.nn.Module:
        """The underlying transformers (or peft) model."""
        return self.loaded.model

    def _pixel_cap(self, max_pixels: int | None) -> dict[str, Any]:
        """Image processor arguments that cap the pixels of each image (its single resize)."""
        if max_pixels is None:
            return {}
        if max_pixels < 1:
            raise ParameterError(f"image_max_pixels must be positive, not {max_pixels}")
        image_processor = getattr(self.loaded.processor, "image_processor", None)
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

    def encode(
        self, images: Sequence[Image.Image] | None, prompts: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Model inputs for prompts (each about the image at the same index), left-padded.

        Parameters
        ----------
        images
            One image per prompt, or None for text-only prompts.
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
            If the number of images differs from the number of prompts.
        """
        with_images = images is not None
        if with_images and not self.supports_images:
            raise ModelCapabilityError(
                "this model reads text only: choose a vision-language model to classify images"
            )
        if with_images and len(images) != len(prompts):
            raise ParameterError(f"{len(images)} images for {len(prompts)} prompts: give one each")
        rendered = {p: self.chat.render(p, image=with_images) for p in dict.fromkeys(prompts)}
        texts = [rendered[p] for p in prompts]
        kwargs: dict[str, Any] = {
            "padding": True,
            "return_tensors": "pt",
            "add_special_tokens": False,
        }
        if with_images:
            rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
            batch = self._fast_encode(texts, rgb)
            if batch is None:
                batch = self._processor(texts, rgb)
        else:
            batch = self.tokenizer(texts, **kwargs)
        device, dtype = self.loaded.device, self.loaded.dtype
        return {
            k: v.to(device, dtype) if v.is_floating_point() else v.to(device)
            for k, v in batch.items()
        }

    def _processor(self, texts: list[str], images: list[Image.Image]) -> dict[str, torch.Tensor]:
        """The processor's own encoding of prompts with one image each."""
        return dict(
            self.loaded.processor(
                text=texts,
                images=images,
                padding=True,
                return_tensors="pt",
                add_special_tokens=False,
                **self._image_kwargs,
            )
        )

    def _tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids, mask and (where the processor gives them) modality ids of expanded texts."""
        batch = dict(
            self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        )
        processor = self.loaded.processor
        if getattr(processor, "return_mm_token_type_ids", False):
            types_ = processor.create_mm_token_type_ids(batch["input_ids"])
            batch["mm_token_type_ids"] = torch.tensor(types_, dtype=batch["input_ids"].dtype)
        return batch

    def _fast_encode(
        self, texts: list[str], images: list[Image.Image]
    ) -> dict[str, torch.Tensor] | None:
        """`_processor`'s result through `_QwenPatches`, or None where that does not apply.

        The first batch is also encoded by the processor and compared key by key; any
        difference turns the fast path off for good (with a warning).
        """
        if self._patches is None or not images or not self._patches.fits(images):
            return None
        processor = self.loaded.processor
        pixels = self._patches(images)
        expanded = [
            text.replace(processor.image_token, processor.replace_image_token(pixels, i), 1)
            for i, text in enumerate(texts)
        ]
        if len(set(expanded)) == 1:  # one prompt for all chips: tokenize it once
            if expanded[0] not in self._token_cache:
                self._token_cache = {expanded[0]: self._tokens(expanded[:1])}
            one = self._token_cache[expanded[0]]
            batch = {k: v.expand(len(expanded), -1).clone() for k, v in one.items()}
        else:
            batch = self._tokens(expanded)
        batch.update(pixels)
        if not self._patches_checked:
            reference = self._processor(texts, images)
            same = reference.keys() == batch.keys() and all(
                torch.equal(reference[k], batch[k]) for k in reference
            )
            self._patches_checked = True
            if not same:
                logger.warning("fast Qwen-VL image encoding differs from the processor: off")
                self._patches = None
                return reference
        return batch

    def generate(
        self,
        images: Sequence[Image.Image] | None,
        prompts: Sequence[str],
        max_new_tokens: int = 32,
    ) -> list[str]:
        """Answer each prompt (about the image at the same index, if any) with greedy decoding.

        Parameters
        ----------
        images
            One RGB image per prompt, or None for text-only prompts.
        prompts
            The user's questions, without any chat template.
        max_new_tokens
            Upper bound on the length of each answer.

        Returns
        -------
        list of str
            The decoded answers, special tokens removed, in input order.

        Raises
        ------
        ModelCapabilityError
            If images are given to a text-only model.
        ParameterError
            If the number of images differs from the number of prompts.
        """
        from transformers import GenerationConfig

        if images is not None and len(images) != len(prompts):
            raise ParameterError(f"{len(images)} images for {len(prompts)} prompts: give one each")
        own = self.model.generation_config
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=own.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        answers: list[str] = []
        for inputs in self._batches(images, prompts):
            with torch.inference_mode():
                out = self.model.generate(**inputs, generation_config=config)
            new = out[:, inputs["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            answers += [t.strip() for t in texts]
        return answers

    def answer_ids(self, answer: str) -> list[int]:
        """The tokens scored for one answer: its text, then the end-of-turn token.

        Parameters
        ----------
        answer
            A candidate assistant reply.

        Returns
        -------
        list of int
        """
        ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        return [*ids, self._end_of_turn]

    def score(
        self, images: Sequence[Image.Image], prompt: str, answers: Sequence[str]
    ) -> np.ndarray:
        """Probability of each candidate answer to the same prompt, for every image.

        Each answer's log-likelihood covers its tokens and the end-of-turn token, so it is the
        probability of exactly that complete reply. One prefill of prompt and image per image,
        then one forward over all candidates, per batch.

        Parameters
        ----------
        images
            The images, each asked ``prompt``.
        prompt
            The user's question, without any chat template.
        answers
            The candidate assistant replies.

        Returns
        -------
        numpy.ndarray
            Shape ``(len(images), len(answers))``, float64; each row is the softmax of the
            answers' total log-likelihoods, so it sums to 1.

        Raises
        ------
        ModelCapabilityError
            If the model reads text only.
        ParameterError
            If ``answers`` is empty.
        """
        if not answers:
            raise ParameterError("no candidate answers to score: give at least one")
        rows = [np.empty((0, len(answers)))]
        rows += [
            self.score_encoded(x, answers) for x in self._batches(images, [prompt] * len(images))
        ]
        return np.concatenate(rows)

    def score_encoded(self, inputs: dict[str, torch.Tensor], answers: Sequence[str]) -> np.ndarray:
        """`score` for one batch already built by `encode` (e.g. in a preprocessing thread).

        Parameters
        ----------
        inputs
            `encode`'s output for ``B`` images asked the same prompt.
        answers
            The candidate assistant replies.

        Returns
        -------
        numpy.ndarray
            Shape ``(B, len(answers))``, float64, rows summing to 1.
        """
        candidates = [self.answer_ids(a) for a in answers]
        logp = score_candidates(self.model, inputs, candidates, pad_id=self.tokenizer.pad_token_id)
        return torch.softmax(logp.double(), dim=-1).cpu().numpy()

    def _batches(
        self, images: Sequence[Image.Image] | None, prompts: Sequence[str]
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Encoded batches in order, each next one prepared in a thread while the model runs."""

        def encode(part: slice) -> dict[str, torch.Tensor]:
            return self.encode(None if images is None else images[part], prompts[part])

        parts = list(_chunks(len(prompts), self.batch_size))
        if len(parts) <= 1:
            yield from map(encode, parts)
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(encode, parts[0])
            for following in [*parts[1:], None]:
                current = pending.result()
                if following is not None:
                    pending = pool.submit(encode, following)
                yield current
