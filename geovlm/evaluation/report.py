"""What ``geovlm eval`` measured, as frozen dataclasses that turn into ``report.json``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from geovlm import __version__
from geovlm.evaluation.damage_metrics import DamageMetrics
from geovlm.evaluation.metrics import CalibrationMetrics, ClassificationMetrics
from geovlm.evaluation.xview2_score import Xview2Score
from geovlm.labels.calibration import Calibration

__all__ = [
    "AppliedCalibration",
    "EvaluationContext",
    "EvaluationReport",
    "FittedCalibration",
    "LanguageRow",
]


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    """What was evaluated with what: recorded in the report, never measured."""

    #: The ``--data`` argument as given.
    data: str = ""
    #: ``train``, ``test`` or ``all``.
    split: str = "all"
    #: One language, or ``all``.
    language: str = "all"
    #: The model's choices (`geovlm.backends.choice.ModelChoice.run_parameters`) and preset name.
    model: Mapping[str, Any] = field(default_factory=dict)
    #: Samples of the split left out, by reason (e.g. ``{"damage": 12}``).
    skipped: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LanguageRow:
    """Accuracy, macro-F1 and ECE of the samples asked in one language."""

    language: str
    samples: int
    accuracy: float
    macro_f1: float
    ece: float
    #: ECE of the held-out calibrated probabilities, when a calibration was fitted.
    ece_calibrated: float | None = None


@dataclass(frozen=True, slots=True)
class AppliedCalibration:
    """The model preset's own calibration, measured on the evaluation set."""

    calibration: Calibration
    calibration_metrics: CalibrationMetrics
    classification: ClassificationMetrics

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready data."""
        return {
            "calibration": self.calibration.to_mapping(),
            "calibration_metrics": self.calibration_metrics.to_dict(),
            "classification": self.classification.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class FittedCalibration:
    """A calibration fitted on the whole set, and what calibration does on held-out tiles.

    Attributes
    ----------
    calibration
        Fitted on every sample; ``ece_before``/``ece_after`` hold the held-out measurement.
    folds
        Folds of the held-out measurement (tiles kept whole).
    held_out
        Metrics of the samples each calibrated by a fit on the other folds.
    held_out_classification
        Accuracy and F1 of the same (a prior correction can change the argmax).
    """

    calibration: Calibration
    folds: int
    held_out: CalibrationMetrics
    held_out_classification: ClassificationMetrics

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready data."""
        return {
            "calibration": self.calibration.to_mapping(),
            "folds": self.folds,
            "held_out": self.held_out.to_dict(),
            "held_out_classification": self.held_out_classification.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    """Everything ``geovlm eval`` measured on one evaluation set.

    Attributes
    ----------
    context
        What was evaluated with what.
    samples, tiles
        Samples scored, and the distinct tiles they come from.
    bins
        Equal-width bins of every ECE and reliability diagram.
    classification
        Of the model's own probabilities (no calibration).
    calibration
        ECE, Brier, NLL and reliability bins of the model's own probabilities.
    per_language
        One row per language present.
    preset_calibration
        The preset's calibration measured here (it may have been fitted on these very
        samples), or None.
    fitted
        The calibration ``--fit-calibration`` fitted, with its held-out measurement, or None.
    damage
        Building-damage samples: the grades' metrics, the xView2 damage F1 and the
        ``uncertain`` share; None for disaster types.
    xview2
        The xView2 challenge's pixel score of the rasters written with ``--xview2-dir``, or
        None.
    """

    context: EvaluationContext
    samples: int
    tiles: int
    bins: int
    classification: ClassificationMetrics
    calibration: CalibrationMetrics
    per_language: tuple[LanguageRow, ...]
    preset_calibration: AppliedCalibration | None = None
    fitted: FittedCalibration | None = None
    damage: DamageMetrics | None = None
    xview2: Xview2Score | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data: the content of ``report.json``."""
        return {
            "geovlm": __version__,
            "context": {
                **asdict(self.context),
                "model": dict(self.context.model),
                "skipped": dict(self.context.skipped),
            },
            "samples": self.samples,
            "tiles": self.tiles,
            "bins": self.bins,
            "classification": self.classification.to_dict(),
            "calibration": self.calibration.to_dict(),
            "per_language": [asdict(row) for row in self.per_language],
            "preset_calibration": (
                None if self.preset_calibration is None else self.preset_calibration.to_dict()
            ),
            "fitted_calibration": None if self.fitted is None else self.fitted.to_dict(),
            "damage": None if self.damage is None else self.damage.to_dict(),
            "xview2": None if self.xview2 is None else self.xview2.to_dict(),
        }
