"""Evaluation of building-damage samples: each building's crops scored as ``geovlm damage`` does.

A sample shows one building with its (pre, post) crops or its post crop alone, as the dataset
lists them (`geovlm.datasets.samples.Sample.images`), and asks its grade. Every sample goes
through `geovlm.backends.grade_scoring.GradeScorer` in the sample's language, uncalibrated (the
report measures the preset's ``damage_calibration:`` apart), in batches of one language; a batch
may mix two-image and one-image buildings. The per-building grades, put back into their tiles,
make the xView2 rasters (`geovlm.evaluation.xview2_rasters`) and their pixel score.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from geovlm.backends.base import Backend
from geovlm.backends.grade_scoring import GradeScorer
from geovlm.errors import DatasetError
from geovlm.evaluation.damage_metrics import GRADE_LABELS
from geovlm.evaluation.scoring import EvaluationSet, ScoredSamples, read_image, truth_indices
from geovlm.evaluation.xview2_rasters import write_xview2
from geovlm.evaluation.xview2_score import Xview2Score, score_folders
from geovlm.events.progress import ProgressMode, ProgressReporter
from geovlm.labels.prompts import Language
from geovlm.labels.verbalizer import Verbalizer

__all__ = ["building_grades", "score_buildings", "xbd_source", "xview2_score"]


def score_buildings(
    backend: Backend,
    chosen: EvaluationSet,
    verbalizer: Verbalizer,
    *,
    batch_size: int = 8,
    progress: ProgressMode = ProgressMode.NONE,
) -> ScoredSamples:
    """Grade probabilities of every building-damage sample, with the images it lists.

    Parameters
    ----------
    backend
        The model (one that reads two images per prompt for pre+post samples).
    chosen
        Building-damage samples (`geovlm.evaluation.scoring.select_samples`).
    verbalizer
        The grades' answer forms (the preset's ``damage_answers``).
    batch_size
        Buildings per model call; results do not depend on it.
    progress
        How progress is shown (``samples`` counted).

    Returns
    -------
    ScoredSamples
        With ``labels`` `GRADE_LABELS`.

    Raises
    ------
    DatasetError
        If an image cannot be read.
    """
    samples = chosen.samples
    groups: dict[Language, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        groups[sample.language].append(i)
    probs = np.zeros((len(samples), len(GRADE_LABELS)))
    with ProgressReporter(progress, len(samples), "samples") as reporter:
        for language, indices in groups.items():
            scorer = GradeScorer(language, verbalizer)
            for start in range(0, len(indices), batch_size):
                batch = indices[start:start + batch_size]
                images = [tuple(read_image(path) for path in chosen.data.image_paths(samples[i]))
                          for i in batch]
                probs[batch] = scorer.probabilities(backend, scorer.encode(backend, images))
                reporter.advance(len(batch))
        reporter.finish(samples=len(samples))
    return ScoredSamples(samples, truth_indices(samples), probs, GRADE_LABELS)


def building_grades(scored: ScoredSamples) -> dict[str, str]:
    """The predicted grade of every building: the argmax of its samples' mean probabilities.

    A building asked in several languages has one sample per language; their probabilities
    are averaged, so the raster holds one grade per footprint.

    Raises
    ------
    DatasetError
        If a sample names no building (a dataset built before building uids were recorded).

    Examples
    --------
    >>> from geovlm.datasets.samples import Sample, Task
    >>> def asked(language: Language) -> Sample:
    ...     return Sample("a.png", "?", "!", "destroyed", language, Task.BUILDING_DAMAGE,
    ...                   "t", "e", building="b1")
    >>> scored = ScoredSamples((asked(Language.EN), asked(Language.JA)), np.array([3, 3]),
    ...                        np.array([[0.6, 0.0, 0.0, 0.4], [0.0, 0.0, 0.0, 1.0]]),
    ...                        GRADE_LABELS)
    >>> building_grades(scored)
    {'b1': 'destroyed'}
    """
    sums: dict[str, np.ndarray] = {}
    for sample, row in zip(scored.samples, scored.probs, strict=True):
        if not sample.building:
            raise DatasetError(
                f"sample {sample.image} names no building: rebuild the dataset with"
                " `geovlm dataset from-xbd --tasks building-damage` to write xView2 rasters."
            )
        sums[sample.building] = sums.get(sample.building, 0) + row
    return {uid: GRADE_LABELS[int(np.argmax(total))] for uid, total in sums.items()}


def xview2_score(
    scored: ScoredSamples, xbd: str | Path, folder: str | Path
) -> Xview2Score:
    """Write the xView2 rasters of the scored tiles and score them as the challenge does.

    Parameters
    ----------
    scored
        Building-damage probabilities (`score_buildings`).
    xbd
        The xBD folder the dataset was built from (its labels give footprints and truth).
    folder
        Receives ``predictions/`` and ``targets/`` of the tiles among the samples.

    Returns
    -------
    Xview2Score
        `geovlm.evaluation.xview2_score.score_folders` of the written files.
    """
    tiles = {sample.tile for sample in scored.samples}
    written = write_xview2(xbd, folder, building_grades(scored), tiles=tiles)
    return score_folders(written.predictions, written.targets)


def xbd_source(manifest: Mapping[str, object], given: str | None) -> Path:
    """The xBD folder of a dataset: ``--xbd`` when given, else the one its manifest records.

    Raises
    ------
    DatasetError
        If neither names a folder with ``labels/``.
    """
    parameters = manifest.get("parameters")
    recorded = parameters.get("xbd") if isinstance(parameters, Mapping) else None
    path = given if given is not None else recorded
    if not isinstance(path, str) or not (Path(path) / "labels").is_dir():
        raise DatasetError(
            f"the xView2 rasters need the xBD folder the dataset was built from, and"
            f" {path or 'the manifest'} names none with labels/: pass it with --xbd."
        )
    return Path(path)
