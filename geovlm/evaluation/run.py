"""The ``eval`` command's engine: check everything, load the model, score, measure, write.

Every check (samples, report folder, calibration folder, tiles for a held-out fit) runs before
the model is loaded, so a mistake costs no model load and leaves no output.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from geovlm.backends.base import Backend
from geovlm.backends.choice import ModelChoice
from geovlm.datasets.samples import Task
from geovlm.errors import DatasetError, ModelCapabilityError, ParameterError
from geovlm.evaluation.building_scoring import score_buildings, xbd_source, xview2_score
from geovlm.evaluation.preset_calibration import write_calibration
from geovlm.evaluation.report import EvaluationContext, EvaluationReport
from geovlm.evaluation.report_folder import check_report_folder, write_report
from geovlm.evaluation.scoring import EvaluationSet, evaluate_scores, score_samples
from geovlm.events.progress import ProgressMode
from geovlm.labels.grade_forms import DAMAGE_GRADES
from geovlm.labels.label_set import DISASTER_TYPES

__all__ = ["EvaluationSummary", "run_evaluation"]


@dataclass(frozen=True, slots=True)
class EvaluationSummary:
    """What an evaluation wrote, for the closing line."""

    report: EvaluationReport
    #: The report folder's HTML page.
    html: Path
    #: The preset file that received the fitted calibration, or None.
    preset_file: Path | None
    seconds: float


def run_evaluation(
    chosen: EvaluationSet,
    output: str | Path,
    *,
    choice: ModelChoice,
    context: EvaluationContext,
    calibration_folder: Path | None = None,
    backend_factory: Callable[[], Backend] | None = None,
    progress: ProgressMode = ProgressMode.AUTO,
    overwrite: bool = False,
    min_confidence: float = 0.0,
    xview2_dir: str | Path | None = None,
    xbd: str | None = None,
) -> EvaluationSummary:
    """Evaluate a model on the chosen samples and write the report folder.

    Parameters
    ----------
    chosen
        The samples (`geovlm.evaluation.scoring.select_samples`).
    output
        The report folder.
    choice
        The model, adapter and device; its preset gives the answer forms and any calibration.
    context
        What is evaluated, recorded in the report.
    calibration_folder
        Fit a calibration and write it into this folder's preset file
        (`geovlm.evaluation.preset_calibration.calibration_folder`); None: no fit.
    backend_factory
        Returns the model; by default ``choice.load_backend``. Called after every check.
    progress
        How progress is shown.
    overwrite
        Replace an existing report folder.
    min_confidence
        Building damage: below this top probability a building counts as ``uncertain``.
    xview2_dir
        Building damage: write the xView2 rasters of the scored tiles here and put their
        pixel score in the report; None: none.
    xbd
        The xBD folder of those rasters; None: the one the dataset's manifest records.

    Returns
    -------
    EvaluationSummary

    Raises
    ------
    ModelCapabilityError
        If the model reads text only.
    OutputError
        If the report folder is refused.
    DatasetError
        If a fit is asked with samples of a single tile, an image is unreadable, or the
        xView2 rasters have no xBD folder.
    ParameterError
        If xView2 rasters are asked of disaster-type samples.
    """
    start = time.perf_counter()
    if not choice.preset.supports_images:
        raise ModelCapabilityError(
            f"{choice.preset.name} reads text only and cannot be evaluated on images; choose a"
            " vision-language model with --model."
        )
    check_report_folder(output, overwrite)
    if calibration_folder is not None and chosen.tiles < 2:
        raise DatasetError(
            f"--fit-calibration needs samples from at least two tiles to measure the fit on"
            f" held-out ones, and {chosen.data.root} gives {chosen.tiles}: evaluate a larger"
            " set or --split all."
        )
    damage = chosen.samples[0].task is Task.BUILDING_DAMAGE
    if xview2_dir is not None and not damage:
        raise ParameterError("--xview2-dir writes building-damage rasters: evaluate a"
                             " building-damage set (--task building-damage).")
    source = xbd_source(chosen.data.manifest, xbd) if xview2_dir is not None else None
    labels = DAMAGE_GRADES if damage else DISASTER_TYPES
    backend = (backend_factory or choice.load_backend)()
    score = score_buildings if damage else score_samples
    scored = score(backend, chosen, choice.preset.answers_for(labels),
                   batch_size=choice.batch_size, progress=progress)
    report = evaluate_scores(
        scored,
        context=context,
        preset_calibration=choice.calibration_for(labels),
        min_confidence=min_confidence,
        fit=calibration_folder is not None,
        fitted_on=f"{context.data} (split {context.split}, language {context.language},"
                  f" {len(scored.samples)} samples)",
    )
    if xview2_dir is not None and source is not None:
        report = replace(report, xview2=xview2_score(scored, source, xview2_dir))
    html = write_report(output, report, scored.records(), overwrite=overwrite)
    preset_file = None
    if calibration_folder is not None and report.fitted is not None:
        preset_file = write_calibration(calibration_folder, report.fitted.calibration, choice)
    return EvaluationSummary(report, html, preset_file, time.perf_counter() - start)
