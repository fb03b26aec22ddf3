"""The contract every model backend keeps, so tasks never depend on where a model runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
from PIL import Image

from geovlm.labels.calibration import Calibration

__all__ = ["Backend", "ModelRun", "PromptImages", "images_of"]

#: What a `ModelRun` loads: a `Backend`, or a task's own bundle of them (``refer``'s two).
M = TypeVar("M")

#: The images of one prompt: one image, or several in the order the prompt names them (e.g. a
#: ``(pre, post)`` pair of crops). Each gets its own placeholder, before the question.
PromptImages = Image.Image | Sequence[Image.Image]


def images_of(item: PromptImages) -> tuple[Image.Image, ...]:
    """Return one prompt's images as a tuple (one image becomes a 1-tuple).

    Examples
    --------
    >>> pre, post = Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8))
    >>> len(images_of(post)), len(images_of((pre, post)))
    (1, 2)
    """
    return (item,) if isinstance(item, Image.Image) else tuple(item)


@runtime_checkable
class Backend(Protocol):
    """A vision-language (or text) model that answers prompts about images.

    Implementations: `geovlm.backends.hf.HFBackend` (in-process transformers).
    """

    #: False for text-only models; tasks refuse to send them images.
    supports_images: bool

    def encode(self, images: Sequence[PromptImages] | None, prompts: Sequence[str]) -> Any:
        """Prepare one batch for the model: the CPU-side work, safe to run in another thread.

        Tasks encode the next batch while the model works on the current one.

        Parameters
        ----------
        images
            Each prompt's RGB image, or its images in order (`PromptImages`), or None for
            text-only prompts. A model that reads one image per prompt refuses several.
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
        images: Sequence[PromptImages] | None,
        prompts: Sequence[str],
        max_new_tokens: int = 32,
    ) -> list[str]:
        """Answer each prompt (about the image(s) at the same index, if any), greedily.

        Parameters
        ----------
        images
            Each prompt's image or images (`PromptImages`), or None for text-only prompts.
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
        self, images: Sequence[PromptImages], prompt: str, answers: Sequence[str]
    ) -> np.ndarray:
        """Probability of each candidate answer to the same prompt, for every image (or images).

        Parameters
        ----------
        images
            Each prompt's image or images (`PromptImages`), each asked `prompt`.
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


@dataclass(frozen=True, slots=True)
class ModelRun(Generic[M]):
    """A run's model before it loads: what loads it, and what the run records about it.

    A command builds it once (`geovlm.backends.choice.ModelChoice.local_run` or
    `remote_run`); the task calls `load` only after its inputs and output passed their checks.

    Attributes
    ----------
    load
        Loads (or connects to) the model.
    record
        The model's choices recorded with the run (model, adapter, quantization, or the server).
    name
        The model's name in messages.
    reads_images
        False for a text-only model, which tasks about images refuse before loading it.
    calibration
        Applied to the model's label probabilities, or None.
    """

    load: Callable[[], M]
    record: Mapping[str, Any] = field(default_factory=dict)
    name: str = "the model"
    reads_images: bool = True
    calibration: Calibration | None = None
