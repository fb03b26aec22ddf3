"""Evaluation: score a dataset's disaster questions with a model, then measure and calibrate.

Every sample is scored as ``classify`` scores a chip: the model reads the sample's image and
question once and the log-likelihood of every answer form of the preset's verbalizer (in the
sample's language) is summed to a probability per label (`geovlm.labels.verbalizer`). Samples are
grouped by language and question and sent in batches; results do not depend on the batch size
or the order of the groups. The metrics (`geovlm.evaluation.metrics`) are measured on the model's
own probabilities; a calibration is measured on held-out tiles (`geovlm.labels.calibration`).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from geovlm.backends.base import Backend
from geovlm.datasets.format import TrainingSet
from geovlm.datasets.samples import Sample, Split, Task
from geovlm.errors import DatasetError
from geovlm.evaluation.damage_metrics import GRADE_LABELS, damage_metrics
from geovlm.evaluation.metrics import (
    DEFAULT_BINS,
    calibration_metrics,
    classification_metrics,
    expected_calibration_error,
)
from geovlm.evaluation.report import (
    AppliedCalibration,
    EvaluationContext,
    EvaluationReport,
    FittedCalibration,
    LanguageRow,
)
from geovlm.events.progress import ProgressMode, ProgressReporter
from geovlm.labels.calibration import Calibration, cross_fitted_probabilities, fit_calibration
from geovlm.labels.grade_forms import DAMAGE_GRADES
from geovlm.labels.label_set import DISASTER_TYPES
from geovlm.labels.prompts import DisasterLabel, Language
from geovlm.labels.verbalizer import Verbalizer, label_probabilities

__all__ = [
    "LABELS",
    "EvaluationSet",
    "ScoredSamples",
    "evaluate_scores",
    "read_image",
    "score_samples",
    "select_samples",
    "truth_indices",
]

log = logging.getLogger(__name__)

#: The class names, in `DisasterLabel` order: the columns of every probability array.
LABELS = tuple(label.value for label in DisasterLabel)
#: The column names of each task's probabilities.
_TASK_LABELS = {Task.DISASTER: LABELS, Task.BUILDING_DAMAGE: GRADE_LABELS}
#: Most folds of the held-out calibration measurement.
_FOLDS = 5


@dataclass(frozen=True, slots=True)
class EvaluationSet:
    """The samples an evaluation scores, and what was left out.

    Attributes
    ----------
    data
        The dataset they come from.
    samples
        Disaster-task samples of the chosen split and languages, in dataset order.
    skipped
        Why other samples of the split were left out -> how many (e.g. ``{"damage": 12}``).
    """

    data: TrainingSet
    samples: tuple[Sample, ...]
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def tiles(self) -> int:
        """Number of distinct tiles among the samples."""
        return len({s.tile for s in self.samples})


@dataclass(frozen=True, slots=True, eq=False)
class ScoredSamples:
    """Label probabilities of every sample of an `EvaluationSet`, as the model gives them.

    Attributes
    ----------
    samples
        The samples, in order.
    truth
        ``(n,)`` indices of the true labels into `labels`.
    probs
        ``(n, len(labels))`` float64 label probabilities, rows summing to 1.
    labels
        The class names of the columns: `LABELS` (disaster types) or
        `geovlm.evaluation.damage_metrics.GRADE_LABELS` (building damage grades).
    """

    samples: tuple[Sample, ...]
    truth: np.ndarray
    probs: np.ndarray
    labels: tuple[str, ...] = LABELS

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready record per sample: where from, truth, prediction, probabilities."""
        records = []
        for sample, truth, row in zip(self.samples, self.truth, self.probs, strict=True):
            best = int(np.argmax(row))
            records.append({
                "image": sample.image,
                "tile": sample.tile,
                "event": sample.event,
                **({"building": sample.building} if sample.building else {}),
                "language": sample.language.value,
                "label": self.labels[int(truth)],  # canonical, whatever the dataset's spelling
                "predicted": self.labels[best],
                "confidence": round(float(row[best]), 6),
                "probs": {k: round(float(p), 6) for k, p in zip(self.labels, row, strict=True)},
            })
        return records


def select_samples(
    data: TrainingSet, split: Split | None = None, language: Language | None = None,
    task: Task = Task.DISASTER,
) -> EvaluationSet:
    """Pick the samples of one task, split and language, checking their labels.

    Samples of other tasks are counted and skipped (their answers are another vocabulary).

    Parameters
    ----------
    data
        The dataset.
    split
        ``train`` or ``test``; None for both.
    language
        One language, or None for all.
    task
        `Task.DISASTER` (disaster types) or `Task.BUILDING_DAMAGE` (damage grades).

    Returns
    -------
    EvaluationSet

    Raises
    ------
    DatasetError
        If a sample's label is not of its task, or nothing is left to evaluate.
    """
    names = _TASK_LABELS[Task(task)]
    chosen: list[Sample] = []
    skipped: Counter[str] = Counter()
    for sample in data.samples(split):
        if language is not None and sample.language is not language:
            continue
        if sample.task is not task:
            skipped[sample.task.value] += 1
            continue
        if _label_index(sample) is None:
            raise DatasetError(
                f"{data.root}: sample {sample.image} has label {sample.label!r}, none of"
                f" {', '.join(names)}: rebuild the dataset with `geovlm dataset`."
            )
        chosen.append(sample)
    for other, count in sorted(skipped.items()):
        log.warning("skipped %d %s-task samples: geovlm eval scores one task (--task %s)",
                    count, other, task.value)
    if not chosen:
        where = f"split {split.value}" if split is not None else "the dataset"
        lang = f" in language {language.value}" if language is not None else ""
        raise DatasetError(
            f"{data.root} has no {task.value} samples in {where}{lang}: choose another --split,"
            " --language or --task."
        )
    return EvaluationSet(data, tuple(chosen), dict(sorted(skipped.items())))


def truth_indices(samples: Sequence[Sample]) -> np.ndarray:
    """The true labels' column indices of samples of one task (`select_samples`' checks).

    Examples
    --------
    >>> from geovlm.labels.prompts import Language
    >>> sample = Sample("a.png", "?", "Destroyed.", "destroyed", Language.EN,
    ...                 Task.BUILDING_DAMAGE, "t", "e")
    >>> truth_indices([sample]).tolist()
    [3]
    """
    indices = [_label_index(sample) for sample in samples]
    if None in indices:
        raise ValueError("a sample's label is not of its task: check it with select_samples")
    return np.array(indices, dtype=np.int64)


def _label_index(sample: Sample) -> int | None:
    """The label's column, xBD's spellings (``flooding``) included; None if not of the task."""
    try:
        if sample.task is Task.BUILDING_DAMAGE:
            return GRADE_LABELS.index(sample.label)
        return LABELS.index(DisasterLabel(sample.label).value)
    except ValueError:
        return None


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
    samples = chosen.samples
    groups: dict[tuple[Language, str], list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        groups[sample.language, sample.question].append(i)
    probs = np.zeros((len(samples), len(LABELS)))
    with ProgressReporter(progress, len(samples), "samples") as reporter:
        for (language, prompt), indices in groups.items():
            forms = verbalizer.forms(language)
            texts = [form.text for form in forms]
            for start in range(0, len(indices), batch_size):
                batch = indices[start:start + batch_size]
                images = [read_image(chosen.data.image_path(samples[i])) for i in batch]
                form_probs = backend.score(images, prompt, texts)
                probs[batch] = label_probabilities(form_probs, forms)
                reporter.advance(len(batch))
        reporter.finish(samples=len(samples))
    return ScoredSamples(samples, truth_indices(samples), probs)


def evaluate_scores(
    scored: ScoredSamples,
    *,
    context: EvaluationContext | None = None,
    preset_calibration: Calibration | None = None,
    fit: bool = False,
    fitted_on: str | None = None,
    bins: int = DEFAULT_BINS,
    folds: int = _FOLDS,
    min_confidence: float = 0.0,
) -> EvaluationReport:
    """Measure scored samples: classification, calibration, per language, and a fit if asked.

    Parameters
    ----------
    scored
        The model's probabilities (`score_samples`).
    context
        What was evaluated with what, recorded in the report.
    preset_calibration
        The calibration the model's preset carries for these labels (``damage_calibration:``
        for grades); measured on these samples when given.
    fit
        Fit a calibration on all samples (`fit_calibration`) and measure one on held-out
        tiles: each fold's samples calibrated by a fit on the other folds.
    fitted_on
        Recorded in the fitted calibration.
    bins
        Equal-width bins of the ECE and reliability diagram.
    folds
        Most folds of the held-out measurement (at most one per tile).
    min_confidence
        Building-damage samples only: below this top probability a building counts as
        ``uncertain`` (`geovlm.evaluation.damage_metrics.damage_metrics`).

    Returns
    -------
    EvaluationReport
        With a ``damage`` section when the samples are graded buildings.

    Raises
    ------
    ValueError
        If ``fit`` is asked with samples of a single tile (see `EvaluationSet.tiles`).
    """
    truth, probs, labels = scored.truth, scored.probs, scored.labels
    label_set = DAMAGE_GRADES if labels == GRADE_LABELS else DISASTER_TYPES
    tiles = [s.tile for s in scored.samples]
    fitted = None
    held_out = None
    if fit:
        held_out = cross_fitted_probabilities(probs, truth, tiles, folds=folds,
                                              labels=label_set)
        ece_before = expected_calibration_error(truth, probs, bins)
        ece_after = expected_calibration_error(truth, held_out, bins)
        whole = fit_calibration(probs, truth, fitted_on=fitted_on, labels=label_set)
        fitted = FittedCalibration(
            calibration=replace(whole, ece_before=round(ece_before, 6),
                                ece_after=round(ece_after, 6)),
            folds=min(folds, len(set(tiles))),
            held_out=calibration_metrics(truth, held_out, bins),
            held_out_classification=classification_metrics(truth, held_out, labels),
        )
    applied = None
    if preset_calibration is not None:
        calibrated = preset_calibration.apply(probs)
        applied = AppliedCalibration(
            calibration=preset_calibration,
            calibration_metrics=calibration_metrics(truth, calibrated, bins),
            classification=classification_metrics(truth, calibrated, labels),
        )
    return EvaluationReport(
        context=context or EvaluationContext(),
        samples=len(truth),
        tiles=len(set(tiles)),
        bins=bins,
        classification=classification_metrics(truth, probs, labels),
        calibration=calibration_metrics(truth, probs, bins),
        per_language=_per_language(scored, held_out, bins),
        preset_calibration=applied,
        fitted=fitted,
        damage=(damage_metrics(truth, probs, min_confidence, bins)
                if labels == GRADE_LABELS else None),
    )


def _per_language(
    scored: ScoredSamples, held_out: np.ndarray | None, bins: int
) -> tuple[LanguageRow, ...]:
    rows = []
    languages = [s.language for s in scored.samples]
    for language in Language:
        inside = np.array([lang is language for lang in languages])
        if not inside.any():
            continue
        truth, probs = scored.truth[inside], scored.probs[inside]
        metrics = classification_metrics(truth, probs, scored.labels)
        rows.append(LanguageRow(
            language=language.value,
            samples=int(inside.sum()),
            accuracy=metrics.accuracy,
            macro_f1=metrics.macro_f1,
            ece=expected_calibration_error(truth, probs, bins),
            ece_calibrated=(
                None if held_out is None
                else expected_calibration_error(truth, held_out[inside], bins)
            ),
        ))
    return tuple(rows)


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
