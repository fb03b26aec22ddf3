"""Building-damage metrics: accuracy, F1s, ECE, the xView2 damage F1 and the uncertain share.

The classification and calibration metrics run over the four grades, beside the xView2 damage
F1 and what abstaining as ``uncertain`` costs and buys.

``probs`` are ``(n, 4)`` grade probabilities in `geovlm.labels.building_damage.GRADES` order
and ``truth`` grade indices, as for `geovlm.evaluation.metrics`. Accuracy, per-class
precision/recall/F1, the confusion matrix and ECE are those of the argmax over every building
(`classification_metrics`, `calibration_metrics`). The xView2 damage F1 is the challenge's
harmonic mean of the four per-grade F1s with its epsilon (`harmonic_mean_f1`), here over
buildings rather than pixels (`geovlm.evaluation.xview2_score` scores pixels).

A building whose top probability is below the run's ``--min-confidence`` is written as
``uncertain``: it is counted apart (``coverage`` is the share graded), and the metrics of the
graded buildings alone are given beside those of all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from geovlm.evaluation.metrics import (
    DEFAULT_BINS,
    CalibrationMetrics,
    ClassificationMetrics,
    calibration_metrics,
    classification_metrics,
)
from geovlm.evaluation.xview2_score import harmonic_mean_f1
from geovlm.labels.building_damage import GRADES

__all__ = ["GRADE_LABELS", "DamageMetrics", "damage_metrics"]

#: The grade names, the columns of every damage probability array.
GRADE_LABELS = tuple(grade.value for grade in GRADES)


@dataclass(frozen=True, slots=True)
class DamageMetrics:
    """What a set of graded buildings measures.

    Attributes
    ----------
    classification
        Of the argmax over every building (``uncertain`` ones included).
    calibration
        ECE, Brier, NLL and reliability bins over every building.
    xview2_f1
        Harmonic mean of ``classification``'s four per-grade F1s (epsilon 1e-6).
    uncertain
        Buildings below the confidence threshold.
    coverage
        Share of buildings graded (not ``uncertain``); 1 without a threshold.
    graded
        Classification of the graded buildings alone; None when every one is uncertain.
    graded_xview2_f1
        The xView2 damage F1 of the same; None likewise.
    """

    classification: ClassificationMetrics
    calibration: CalibrationMetrics
    xview2_f1: float
    uncertain: int
    coverage: float
    graded: ClassificationMetrics | None
    graded_xview2_f1: float | None

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as JSON-ready data."""
        return {
            "classification": self.classification.to_dict(),
            "calibration": self.calibration.to_dict(),
            "xview2_f1": self.xview2_f1,
            "uncertain": self.uncertain,
            "coverage": self.coverage,
            "graded": None if self.graded is None else self.graded.to_dict(),
            "graded_xview2_f1": self.graded_xview2_f1,
        }


def _xview2_f1(metrics: ClassificationMetrics) -> float:
    return harmonic_mean_f1([c.f1 for c in metrics.per_class])


def damage_metrics(
    truth: Any, probs: Any, min_confidence: float = 0.0, bins: int = DEFAULT_BINS
) -> DamageMetrics:
    """Measure grade probabilities against the true grades.

    Parameters
    ----------
    truth
        ``(n,)`` indices into `GRADE_LABELS`.
    probs
        ``(n, 4)`` grade probabilities.
    min_confidence
        A building whose top probability is below it is ``uncertain`` (0: none is).
    bins
        Equal-width bins of the ECE.

    Returns
    -------
    DamageMetrics

    Examples
    --------
    >>> m = damage_metrics([0, 1, 2, 3], np.eye(4) * 0.7 + 0.075, min_confidence=0.5)
    >>> m.classification.accuracy, round(m.xview2_f1, 5), m.coverage
    (1.0, 1.0, 1.0)
    """
    probs = np.asarray(probs, dtype=np.float64)
    classification = classification_metrics(truth, probs, GRADE_LABELS)
    graded = probs.max(axis=1) >= min_confidence if len(probs) else np.zeros(0, dtype=bool)
    kept = (
        classification_metrics(np.asarray(truth)[graded], probs[graded], GRADE_LABELS)
        if graded.any() else None
    )
    return DamageMetrics(
        classification=classification,
        calibration=calibration_metrics(truth, probs, bins),
        xview2_f1=_xview2_f1(classification),
        uncertain=int((~graded).sum()),
        coverage=float(graded.mean()) if len(graded) else 0.0,
        graded=kept,
        graded_xview2_f1=None if kept is None else _xview2_f1(kept),
    )
