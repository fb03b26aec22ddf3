"""In-process transformers backend: any supported VLM or text model, batched with left padding.

`HFBackend.load` chooses the model class from the config (see `geovlm.backends.loading`), renders
prompts with the model's own chat template or a named `PromptTemplate`
(`geovlm.backends.chat`), and scores candidate answers with one shared prefill per batch
(`geovlm.backends.scoring`).
Prompts and images are encoded by `geovlm.backends.hf_encoder.BatchEncoder` (Qwen-VL chips take the
fast paths of `geovlm.backends.qwen_fastpath` where they apply).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from geovlm.backends.base import PromptImages
from geovlm.backends.chat import ChatFormat, PromptTemplate
from geovlm.backends.encoding import answer_ids, image_size_kwargs
from geovlm.backends.hf_encoder import BatchEncoder
from geovlm.backends.loading import LoadedModel, load_model
from geovlm.backends.qwen_fastpath import patch_embeddings_as_matmul
from geovlm.backends.scoring import score_candidates
from geovlm.errors import ParameterError
from geovlm.models.quantization import Quantization
from geovlm.prefetch import prepared_ahead

__all__ = ["HFBackend"]

logger = logging.getLogger(__name__)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


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
        # A fast tokenizer's Rust state is not shared safely between threads (padding settings
        # are mutated per call), and batches are encoded in a thread while the model runs.
        self._tokenizer_lock = threading.Lock()
        self.chat = ChatFormat(loaded.processor, self.tokenizer, template)
        self._end_of_turn = self.chat.end_of_turn_id()
        if template is not None and self._end_of_turn in (None, self.tokenizer.unk_token_id):
            raise ParameterError(
                f"chat template {template.value!r} does not fit this model's tokenizer: "
                "leave the template unset to use the model's own"
            )
        self.encoder = BatchEncoder(loaded, self.chat, self._tokenizer_lock,
                                    image_size_kwargs(loaded.processor, image_max_pixels))
        if loaded.device.type == "cpu":
            patch_embeddings_as_matmul(loaded.model)

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
        ModelFileError, DeviceError, DependencyError, ParameterError
            If a folder is broken, the adapter made for another base, the device absent, or
            bitsandbytes missing for 4/8-bit (see `geovlm.backends.preflight.plan_model`).
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
    def model(self) -> Any:
        """The underlying transformers (or peft) model (typed loosely: its API is per class)."""
        return self.loaded.model

    def encode(
        self, images: Sequence[PromptImages] | None, prompts: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Model inputs for prompts (each about the image(s) at the same index), left-padded.

        See `geovlm.backends.hf_encoder.BatchEncoder.encode`.
        """
        return self.encoder.encode(images, prompts)

    def encode_rendered(
        self, images: Sequence[PromptImages] | None, texts: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """`encode` for prompts already in the chat format (e.g. whole conversations)."""
        return self.encoder.encode_rendered(images, texts)

    def generate(
        self,
        images: Sequence[PromptImages] | None,
        prompts: Sequence[str],
        max_new_tokens: int = 32,
    ) -> list[str]:
        """Answer each prompt (about the image(s) at the same index, if any), greedily.

        Parameters
        ----------
        images
            Each prompt's RGB image, or its images in order, or None for text-only prompts.
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
            If the number of images differs from the number of prompts, or several images
            go to a model that reads one per prompt.
        """
        if images is not None and len(images) != len(prompts):
            raise ParameterError(f"{len(images)} images for {len(prompts)} prompts: give one each")
        answers: list[str] = []
        for inputs in self._batches(images, prompts):
            answers += self.generate_encoded(inputs, max_new_tokens)
        return answers

    def generate_encoded(
        self, inputs: dict[str, torch.Tensor], max_new_tokens: int = 32
    ) -> list[str]:
        """`generate` for one batch already built by `encode` (e.g. in a preprocessing thread).

        Parameters
        ----------
        inputs
            `encode`'s output.
        max_new_tokens
            Upper bound on the length of each answer.

        Returns
        -------
        list of str
            The decoded answers, special tokens removed, in input order.
        """
        from transformers import GenerationConfig

        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=self.stop_ids(),
            pad_token_id=self.tokenizer.pad_token_id,
        )
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=config)
        new = out[:, inputs["input_ids"].shape[1] :]
        with self._tokenizer_lock:
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [t.strip() for t in texts]

    def stop_ids(self) -> list[int]:
        """The tokens that end an answer: the model's EOS ids and the chat's end of turn.

        ``geovlm serve`` stops its generation at the same tokens, so remote answers equal these.

        Fine-tuned checkpoints often save a generation config whose EOS is the tokenizer's
        alone; without the end-of-turn token their answers would run to ``max_new_tokens``.
        """
        configured = self.model.generation_config.eos_token_id
        ids = [configured] if isinstance(configured, int) else list(configured or [])
        if self._end_of_turn is not None and self._end_of_turn not in ids:
            ids.append(self._end_of_turn)
        return ids

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
        with self._tokenizer_lock:
            return answer_ids(self.tokenizer, answer, self._end_of_turn)

    def score(
        self, images: Sequence[PromptImages], prompt: str, answers: Sequence[str]
    ) -> np.ndarray:
        """Probability of each candidate answer to the same prompt, for every image (or images).

        Each answer's log-likelihood covers its tokens and the end-of-turn token, so it is the
        probability of exactly that complete reply. One prefill of prompt and image per image,
        then one forward over all candidates, per batch.

        Parameters
        ----------
        images
            Each prompt's image, or its images in order (e.g. ``(pre, post)``), each asked
            ``prompt``.
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
            If ``answers`` is empty, or several images go to a model that reads one.
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
        self, images: Sequence[PromptImages] | None, prompts: Sequence[str]
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Encoded batches in order, each next one prepared in a thread while the model runs."""

        def encode(part: slice) -> dict[str, torch.Tensor]:
            return self.encode(None if images is None else images[part], prompts[part])

        parts = _chunks(len(prompts), self.batch_size)
        return (inputs for _, inputs in prepared_ahead(parts, encode))
