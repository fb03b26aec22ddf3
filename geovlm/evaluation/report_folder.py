"""The evaluation report folder: ``report.json``, ``report.html``, plots and predictions.

::

    REPORT_DIR/report.json        `EvaluationReport.to_dict`
    REPORT_DIR/report.html        one self-contained page (plots embedded), no JavaScript
    REPORT_DIR/confusion.png      confusion matrix: counts and row-normalised
    REPORT_DIR/reliability.png    reliability diagram, before and after calibration when known
    REPORT_DIR/predictions.jsonl  one line per sample: truth, prediction, probabilities

The folder is written under a temporary name and renamed when complete, so a folder holding
``report.json`` is always whole. Plots use matplotlib's Agg canvas (no display needed).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geovlm.errors import OutputError
from geovlm.evaluation.metrics import CalibrationMetrics, ClassificationMetrics
from geovlm.evaluation.report import EvaluationReport
from geovlm.evaluation.report_html import render_html

__all__ = [
    "CONFUSION_PNG",
    "PREDICTIONS",
    "RELIABILITY_PNG",
    "REPORT_HTML",
    "REPORT_JSON",
    "check_report_folder",
    "plot_confusion",
    "plot_reliability",
    "write_report",
]

#: File names inside the report folder.
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
CONFUSION_PNG = "confusion.png"
RELIABILITY_PNG = "reliability.png"
PREDICTIONS = "predictions.jsonl"


def check_report_folder(folder: str | os.PathLike[str], overwrite: bool) -> Path:
    """Refuse a report folder that exists (without ``overwrite``) or holds something else.

    Parameters
    ----------
    folder
        The ``-o`` folder.
    overwrite
        Replacing an earlier report is allowed.

    Returns
    -------
    Path

    Raises
    ------
    OutputError
        If the folder exists and ``overwrite`` is False, exists and is no report, or its
        parent cannot be written.
    """
    path = Path(folder)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists: pass --overwrite to replace it.")
    if path.exists() and not (path.is_dir() and (path / REPORT_JSON).is_file()):
        raise OutputError(f"{path} exists and is no geovlm report: choose another -o folder.")
    parent = path.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{parent} is not writable: choose another -o folder.")
    return path


def write_report(
    folder: str | os.PathLike[str],
    report: EvaluationReport,
    predictions: Sequence[Mapping[str, Any]] = (),
    *,
    overwrite: bool = False,
) -> Path:
    """Write the report folder whole (or leave an earlier one untouched on failure).

    Parameters
    ----------
    folder
        The folder to create.
    report
        The measurements.
    predictions
        One JSON-ready record per sample, written as ``predictions.jsonl``.
    overwrite
        Replace an existing report folder.

    Returns
    -------
    Path
        The HTML page.

    Raises
    ------
    OutputError
        As `check_report_folder`.
    """
    target = check_report_folder(folder, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        plot_confusion(report.classification, staging / CONFUSION_PNG)
        plot_reliability(report, staging / RELIABILITY_PNG)
        (staging / PREDICTIONS).write_text(
            "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions),
            encoding="utf-8",
        )
        (staging / REPORT_JSON).write_text(
            json.dumps(report.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
        (staging / REPORT_HTML).write_text(
            render_html(report, {name: staging / name for name in (CONFUSION_PNG,
                                                                   RELIABILITY_PNG)}),
            encoding="utf-8",
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    return target / REPORT_HTML


def plot_confusion(metrics: ClassificationMetrics, path: Path) -> None:
    """Draw the confusion matrix twice, counts and row-normalised (rows: truth), as a PNG."""
    from matplotlib.figure import Figure

    counts = np.asarray(metrics.confusion, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    figure = Figure(figsize=(11, 4.8), layout="constrained")
    for axes, values, title, fmt in zip(
        figure.subplots(1, 2), (counts, normalised),
        (f"Counts ({metrics.samples} samples)", "Row-normalised (recall on the diagonal)"),
        ("{:.0f}", "{:.2f}"), strict=True,
    ):
        image = axes.imshow(values, cmap="Blues", vmin=0, vmax=max(values.max(), 1e-9))
        axes.set(title=title, xlabel="predicted", ylabel="truth",
                 xticks=range(len(metrics.labels)), yticks=range(len(metrics.labels)))
        axes.set_xticklabels(metrics.labels, rotation=45, ha="right")
        axes.set_yticklabels(metrics.labels)
        for (i, j), value in np.ndenumerate(values):
            dark = value > 0.6 * values.max()
            axes.text(j, i, fmt.format(value), ha="center", va="center", fontsize=8,
                      color="white" if dark else "black")
        figure.colorbar(image, ax=axes, shrink=0.8)
    figure.suptitle(f"Accuracy {metrics.accuracy:.3f}, macro-F1 {metrics.macro_f1:.3f}")
    figure.savefig(path, dpi=100)


def plot_reliability(report: EvaluationReport, path: Path) -> None:
    """Draw the reliability diagram of the raw probabilities and of a calibration, if any."""
    from matplotlib.figure import Figure

    panels: list[tuple[str, CalibrationMetrics]] = [("Model", report.calibration)]
    if report.fitted is not None:
        panels.append((f"Calibrated (held-out tiles, {report.fitted.folds} folds)",
                       report.fitted.held_out))
    elif report.preset_calibration is not None:
        panels.append(("Preset's calibration", report.preset_calibration.calibration_metrics))
    figure = Figure(figsize=(5.5 * len(panels), 5), layout="constrained")
    for axes, (title, metrics) in zip(
        np.atleast_1d(figure.subplots(1, len(panels))), panels, strict=True
    ):
        width = 1.0 / len(metrics.bins)
        centres = [(b.lower + b.upper) / 2 for b in metrics.bins]
        accuracy = [b.accuracy or 0.0 for b in metrics.bins]
        confidence = [b.confidence or 0.0 for b in metrics.bins]
        axes.bar(centres, accuracy, width=width, edgecolor="black", color="#4c72b0",
                 label="accuracy")
        axes.bar(centres, np.subtract(confidence, accuracy), bottom=accuracy, width=width,
                 edgecolor="#c44e52", color="#c44e52", alpha=0.3, label="gap to confidence")
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        for centre, b in zip(centres, metrics.bins, strict=True):
            if b.count:
                top = max(b.accuracy or 0.0, b.confidence or 0.0)
                axes.text(centre, top + 0.01, str(b.count), ha="center", va="bottom",
                          fontsize=7)
        axes.set(xlim=(0, 1), ylim=(0, 1.08), xlabel="confidence (top label)",
                 ylabel="accuracy",
                 title=f"{title}\nECE {metrics.ece:.3f}, {metrics.samples} samples"
                       " (count above each bin)")
        axes.legend(loc="upper left", fontsize=8)
    figure.savefig(path, dpi=100)
