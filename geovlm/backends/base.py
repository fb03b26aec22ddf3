"""The contract every model backend keeps, so tasks never depend on where a model runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

__all__ = ["Backend"]


@runtime_checkable
class Backend(Protocol):
    """A vision-language (or text) model that answers prompts about images.

    Implementations: `geovlm.backends.hf.HFBackend` (in-process transformers).
    """

    #: False for text-only models; tasks refuse to send them images.
    supports_images: bool

    def encode(self, images: Sequence[Image.Image] | None, prompts: Sequence[str]) -> Any:
        """Prepare one batch for the model: the CPU-side work, safe to run in another thread.

        Tasks encode the next batch while the model works on the current one.

        Parameters
        ----------
        images
            One RGB image per prompt, or None for text-only prompts.
        prompts
            The user's questions, without any chat template.

        Returns
        -------
        object
            An opaque batch for `generate_encoded` or `score_encoded`.
        """
        ...

    def generate_encoded(self, inputs: Any, max_new_tokens: int = 32) -> list[str]:
        """`generate` for a batch built by `encode`."""
        ...

    def score_encoded(self, inputs: Any, answers: Sequence[str]) -> np.ndarray:
        """`score` for a batch built by `encode` (every prompt in it the same)."""
        ...

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
        """
        ...

    def score(
        self, images: Sequence[Image.Image], prompt: str, answers: Sequence[str]
    ) -> np.ndarray:
        """Probability of each candidate answer to the same prompt, for every image.

        Parameters
        ----------
        images
            The images, each asked `prompt`.
        prompt
            The user's question, without any chat template.
        answers
            The candidate assistant replies.

        Returns
        -------
        numpy.ndarray
            Shape ``(len(images), len(answers))``, float64; each row is the softmax of the
            answers' total log-likelihoods, so it sums to 1.
        """
        ...
