"""Ask the model every sample's question, in batches: label probabilities per sample.

`score_samples` scores a sample as ``classify`` scores a chip: the model reads its image and
question once and the log-likelihood of every answer form of the preset's verbalizer (in the
sample's language) is summed to a probability per label (`geovlm.labels.verbalizer`).
Building-damage samples go through `geovlm.evaluation.building_scoring.score_buildings`. Both
batch by `score_in_groups`, since one model call asks one question; results do not depend on
the batch size or the order of the groups.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from geovlm.backends.base import Backend
from geovlm.datasets.samples import Sample
from geovlm.errors import DatasetError
from geovlm.evaluation.scoring import LABELS, EvaluationSet, ScoredSamples, truth_indices
from geovlm.events.progress import ProgressMode, ProgressReporter
from geovlm.labels.prompts import Language
from geovlm.labels.verbalizer import Verbalizer, label_probabilities

__all__ = ["read_image", "score_in_groups", "score_samples"]

#: What a batch of samples shares (`score_in_groups`).
K = TypeVar("K")


def score_samples(
    backend: Backend,
    chosen: EvaluationSet,
    verbalizer: Verbalizer,
    *,
    batch_size: int = 8,
    progress: ProgressMode = ProgressMode.NONE,
) -> ScoredSamples:
    """Score every sample's answer forms and sum them to label probabilities.

    Parameters
    ----------
    backend
        The model.
    chosen
        The samples (`select_samples`).
    verbalizer
        The answer forms per language (the preset's).
    batch_size
        Samples per model call; results do not depend on it.
    progress
        How progress is shown (``samples`` counted).

    Returns
    -------
    ScoredSamples

    Raises
    ------
    DatasetError
        If an image cannot be read.
    """
    def score(group: tuple[Language, str], batch: list[Sample]) -> np.ndarray:
        language, prompt = group
        forms = verbalizer.forms(language)
        images = [read_image(chosen.data.image_path(sample)) for sample in batch]
        return label_probabilities(backend.score(images, prompt, [f.text for f in forms]), forms)

    probs = score_in_groups(chosen, lambda sample: (sample.language, sample.question),
                            len(LABELS), score, batch_size=batch_size, progress=progress)
    return ScoredSamples(chosen.samples, truth_indices(chosen.samples), probs)


def score_in_groups(
    chosen: EvaluationSet,
    key: Callable[[Sample], K],
    width: int,
    score: Callable[[K, list[Sample]], np.ndarray],
    *,
    batch_size: int,
    progress: ProgressMode,
) -> np.ndarray:
    """Probabilities of every sample, asked in batches of samples that share a `key`.

    One model call asks one question (a language's, a task's), so samples are grouped by it;
    rows come back in the samples' order, with ``samples`` counted as progress.

    Parameters
    ----------
    chosen
        The samples.
    key
        What a batch must share (e.g. language and question).
    width
        Labels per row.
    score
        A group's key and a batch of its samples to their ``(len(batch), width)`` rows.
    batch_size, progress
        Samples per call; how progress is shown.
    """
    samples = chosen.samples
    groups: dict[K, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        groups[key(sample)].append(i)
    probs = np.zeros((len(samples), width))
    with ProgressReporter(progress, len(samples), "samples") as reporter:
        for group, indices in groups.items():
            for start in range(0, len(indices), batch_size):
                batch = indices[start:start + batch_size]
                probs[batch] = score(group, [samples[i] for i in batch])
                reporter.advance(len(batch))
        reporter.finish(samples=len(samples))
    return probs


def read_image(path: Path) -> Image.Image:
    """A dataset's picture as RGB, or the one-sentence error of an unreadable one.

    Raises
    ------
    DatasetError
        If the file cannot be read as an image.
    """
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(
            f"{path} is no readable image ({exc}): rebuild the dataset with `geovlm dataset`."
        ) from None
