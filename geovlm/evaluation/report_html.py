"""The one-page HTML evaluation report: plain tables and embedded plots, no JavaScript."""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable, Mapping
from html import escape
from pathlib import Path

from geovlm.evaluation.damage_metrics import GRADE_LABELS
from geovlm.evaluation.metrics import CalibrationMetrics, ClassificationMetrics
from geovlm.evaluation.report import EvaluationReport
from geovlm.labels.calibration import Calibration
from geovlm.output.html_tables import html_table

__all__ = ["render_html"]

#: The page's tables: scores to three decimals.
_table = functools.partial(html_table, digits=3)

_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1.5em;
       color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eee; }
img { max-width: 100%; }
.note { color: #555; font-size: 0.9em; }
"""


def render_html(report: EvaluationReport, images: Mapping[str, Path]) -> str:
    """Return the report page, the PNG files embedded as base64 data.

    Parameters
    ----------
    report
        The measurements.
    images
        File name -> path of the plots to embed (``confusion.png``, ``reliability.png``).

    Returns
    -------
    str
        A complete HTML document.
    """
    context = report.context
    model = ", ".join(f"{k}: {v}" for k, v in context.model.items() if v is not None)
    skipped = ", ".join(f"{n} {task}-task" for task, n in context.skipped.items())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>geovlm evaluation</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>geovlm evaluation</h1>",
        f"<p>Data <code>{escape(context.data)}</code>, split {escape(context.split)},"
        f" language {escape(context.language)}: {report.samples} samples from"
        f" {report.tiles} tiles{escape(f'; skipped {skipped}') if skipped else ''}.<br>"
        f"Model: {escape(model)}.</p>",
        "<h2>Overall</h2>",
        _table(["samples", "accuracy", "macro-F1", "ECE", "classwise ECE", "Brier", "NLL"],
               [_overall(report.samples, report.classification, report.calibration)]),
        "<h2>Per class</h2>",
        _per_class(report.classification),
        "<h2>Per language</h2>",
        _table(
            ["language", "samples", "accuracy", "macro-F1", "ECE", "ECE calibrated (held out)"],
            [[row.language, row.samples, row.accuracy, row.macro_f1, row.ece,
              row.ece_calibrated] for row in report.per_language],
        ),
        *_damage(report),
        "<h2>Confusion matrix</h2>",
        _image(images.get("confusion.png")),
        "<h2>Calibration</h2>",
        *_calibration(report),
        _image(images.get("reliability.png")),
        f'<p class="note">ECE: expected calibration error of the top-label confidence,'
        f" {report.bins} equal-width bins. Brier: multiclass, 0 best. NLL: natural log.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _overall(
    samples: int, classification: ClassificationMetrics, calibration: CalibrationMetrics
) -> list[object]:
    return [samples, classification.accuracy, classification.macro_f1, calibration.ece,
            calibration.classwise_ece, calibration.brier, calibration.nll]


def _per_class(metrics: ClassificationMetrics) -> str:
    return _table(
        ["label", "precision", "recall", "F1", "support"],
        [[c.label, c.precision, c.recall, c.f1, c.support] for c in metrics.per_class],
    )


def _damage(report: EvaluationReport) -> Iterable[str]:
    damage, xview2 = report.damage, report.xview2
    if damage is not None:
        graded = damage.graded
        yield "<h2>Building damage</h2>"
        yield _table(
            ["buildings", "accuracy", "xView2 damage F1", "ECE", "uncertain", "coverage",
             "accuracy (graded)", "xView2 damage F1 (graded)"],
            [[report.samples, damage.classification.accuracy, damage.xview2_f1,
              damage.calibration.ece, damage.uncertain, damage.coverage,
              None if graded is None else graded.accuracy, damage.graded_xview2_f1]],
        )
        yield ('<p class="note">xView2 damage F1: harmonic mean of the four grades\' F1s'
               " (epsilon 1e-6), over buildings. Uncertain: top probability below"
               " --min-confidence; graded: the others.</p>")
    if xview2 is not None:
        yield "<h2>xView2 score (pixels)</h2>"
        yield _table(
            ["tiles", "score", "localization F1", "damage F1", *GRADE_LABELS],
            [[xview2.tiles, xview2.score, xview2.localization_f1, xview2.damage_f1,
              *xview2.damage_f1s]],
        )
        yield ('<p class="note">As the official xView2 scorer computes it: 0.3 localization F1'
               " + 0.7 damage F1. Localization is the given footprints against the"
               " pre-disaster polygons: geovlm grades footprints, it does not find them.</p>")


def _calibration(report: EvaluationReport) -> Iterable[str]:
    header = ["probabilities", "samples", "accuracy", "macro-F1", "ECE", "classwise ECE",
              "Brier", "NLL"]
    rows = [["model", *_overall(report.samples, report.classification, report.calibration)]]
    if report.preset_calibration is not None:
        applied = report.preset_calibration
        rows.append(["preset's calibration (may be fitted on these samples)",
                     *_overall(report.samples, applied.classification,
                               applied.calibration_metrics)])
    if report.fitted is not None:
        fitted = report.fitted
        rows.append([f"calibrated on held-out tiles ({fitted.folds} folds)",
                     *_overall(report.samples, fitted.held_out_classification,
                               fitted.held_out)])
    yield _table(header, rows)
    for title, calibration in (
        ("Preset's calibration", report.preset_calibration and
         report.preset_calibration.calibration),
        ("Fitted calibration (on every sample; written with --fit-calibration)",
         report.fitted and report.fitted.calibration),
    ):
        if calibration:
            yield f"<h3>{escape(title)}</h3>"
            yield _parameters(calibration)


def _parameters(calibration: Calibration) -> str:
    mapping = calibration.to_mapping()
    priors = mapping.pop("log_prior")
    return _table(["parameter", "value"],
                  [[key, value] for key, value in mapping.items()]
                  + [[f"log prior {label}", value] for label, value in priors.items()])




def _image(path: Path | None) -> str:
    if path is None or not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{escape(path.stem)}" src="data:image/png;base64,{data}"></p>'
