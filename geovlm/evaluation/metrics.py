"""Classification and calibration metrics over label probabilities, as JSON-ready reports.

Inputs are plain arrays: ``truth`` (``n`` class indices) and ``probs`` (``n x K`` rows summing
to 1); a prediction is a row's argmax. Calibration uses the top-label confidence
``max_k p_k`` against whether the prediction is right: with equal-width bins ``B_m`` over
[0, 1]::

    ECE = sum_m |B_m| / n * |accuracy(B_m) - confidence(B_m)|

(Guo et al. 2017). The classwise variant applies the same sum to every class's probability
against whether that class is the truth, and averages over classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

__all__ = [
    "DEFAULT_BINS",
    "CalibrationMetrics",
    "ClassMetrics",
    "ClassificationMetrics",
    "ReliabilityBin",
    "brier_score",
    "calibration_metrics",
    "classification_metrics",
    "classwise_ece",
    "expected_calibration_error",
    "negative_log_likelihood",
    "reliability_bins",
]

#: Equal-width confidence bins of the ECE and the reliability diagram.
DEFAULT_BINS = 15
_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    """Precision, recall and F1 of one class, and its support (samples truly of that class)."""

    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, slots=True)
class ClassificationMetrics:
    """How often the argmax is right, overall and per class.

    Attributes
    ----------
    samples
        Number of samples.
    accuracy
        Share of samples whose argmax is the truth.
    macro_f1
        Unweighted mean F1 over the classes present in the truth or the predictions.
    per_class
        Every class, in label order (absent ones with support 0).
    labels
        The class names, the order of `confusion` rows (truth) and columns (prediction).
    confusion
        Counts: ``confusion[i][j]`` samples of class ``i`` predicted as ``j``.
    """

    samples: int
    accuracy: float
    macro_f1: float
    per_class: tuple[ClassMetrics, ...]
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as JSON-ready data."""
        data = asdict(self)
        data["per_class"] = [asdict(c) for c in self.per_class]
        data["labels"] = list(self.labels)
        data["confusion"] = [list(row) for row in self.confusion]
        return data


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """One confidence bin of a reliability diagram; mean values are None in an empty bin."""

    lower: float
    upper: float
    count: int
    confidence: float | None
    accuracy: float | None


@dataclass(frozen=True, slots=True)
class CalibrationMetrics:
    """How far confidences are from observed accuracy, and proper scores of the probabilities.

    Attributes
    ----------
    samples
        Number of samples.
    ece
        Expected calibration error of the top-label confidence (equal-width bins).
    classwise_ece
        Mean over classes of each class probability's ECE.
    brier
        Multiclass Brier score: mean squared distance to the one-hot truth (0 best, 2 worst).
    nll
        Mean negative log-likelihood of the truth (natural log).
    bins
        The reliability diagram's bins.
    """

    samples: int
    ece: float
    classwise_ece: float
    brier: float
    nll: float
    bins: tuple[ReliabilityBin, ...]

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as JSON-ready data."""
        data = asdict(self)
        data["bins"] = [asdict(b) for b in self.bins]
        return data


def _checked(truth: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or truth.shape != (len(probs),):
        raise ValueError(f"probs must be (n, K) and truth (n,), not {probs.shape}, {truth.shape}")
    if len(truth) and (truth.min() < 0 or truth.max() >= probs.shape[1]):
        raise ValueError(f"truth must hold class indices below {probs.shape[1]}")
    return truth, probs


def _binned_gap(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    """``sum_m |B_m|/n |mean(correct in B_m) - mean(confidence in B_m)|``; bins are (a, b]."""
    if not len(confidence):
        return 0.0
    index = _bin_index(confidence, bins)
    gaps = np.abs(
        np.bincount(index, weights=correct, minlength=bins)
        - np.bincount(index, weights=confidence, minlength=bins)
    )
    return float(gaps.sum() / len(confidence))


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin of each confidence: ``m`` for ``(m/bins, (m+1)/bins]``, 0 also holding 0 itself."""
    return np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)


def expected_calibration_error(truth: Any, probs: Any, bins: int = DEFAULT_BINS) -> float:
    """Expected calibration error of the top-label confidence, with equal-width bins.

    Parameters
    ----------
    truth
        ``(n,)`` class indices.
    probs
        ``(n, K)`` probabilities.
    bins
        Number of equal-width bins over [0, 1]; bin ``m`` holds confidences in
        ``((m-1)/bins, m/bins]`` (a confidence of 0 falls in the first).

    Returns
    -------
    float
        0 for perfectly calibrated (or no) samples, at most 1.

    Examples
    --------
    >>> round(expected_calibration_error([0, 1], [[0.9, 0.1], [0.8, 0.2]], bins=10), 6)
    0.45
    """
    truth, probs = _checked(truth, probs)
    predicted = probs.argmax(axis=1)
    return _binned_gap(probs.max(axis=1), (predicted == truth).astype(float), bins)


def classwise_ece(truth: Any, probs: Any, bins: int = DEFAULT_BINS) -> float:
    """Mean over classes of the ECE of each class's probability against ``truth == class``.

    Parameters
    ----------
    truth
        ``(n,)`` class indices.
    probs
        ``(n, K)`` probabilities.
    bins
        Number of equal-width bins over [0, 1].

    Returns
    -------
    float
    """
    truth, probs = _checked(truth, probs)
    gaps = [
        _binned_gap(probs[:, k], (truth == k).astype(float), bins) for k in range(probs.shape[1])
    ]
    return float(np.mean(gaps))


def reliability_bins(
    truth: Any, probs: Any, bins: int = DEFAULT_BINS
) -> tuple[ReliabilityBin, ...]:
    """The reliability diagram: per equal-width bin of top-label confidence, count and means.

    Parameters
    ----------
    truth
        ``(n,)`` class indices.
    probs
        ``(n, K)`` probabilities.
    bins
        Number of bins.

    Returns
    -------
    tuple of ReliabilityBin
        ``bins`` entries, low to high.
    """
    truth, probs = _checked(truth, probs)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == truth).astype(float)
    index = _bin_index(confidence, bins)
    out = []
    for m in range(bins):
        inside = index == m
        count = int(inside.sum())
        out.append(ReliabilityBin(
            lower=round(m / bins, 6),
            upper=round((m + 1) / bins, 6),
            count=count,
            confidence=float(confidence[inside].mean()) if count else None,
            accuracy=float(correct[inside].mean()) if count else None,
        ))
    return tuple(out)


def brier_score(truth: Any, probs: Any) -> float:
    """Multiclass Brier score: mean over samples of ``sum_k (p_k - [k == truth])**2``.

    Examples
    --------
    >>> brier_score([0], [[0.5, 0.5]])
    0.5
    """
    truth, probs = _checked(truth, probs)
    onehot = np.eye(probs.shape[1])[truth]
    return float(((probs - onehot) ** 2).sum(axis=1).mean()) if len(truth) else 0.0


def negative_log_likelihood(truth: Any, probs: Any) -> float:
    """Mean ``-log p[truth]`` (natural log; probabilities clipped at 1e-12).

    Examples
    --------
    >>> round(negative_log_likelihood([1], [[0.5, 0.5]]), 4)
    0.6931
    """
    truth, probs = _checked(truth, probs)
    if not len(truth):
        return 0.0
    return float(-np.log(np.clip(probs[np.arange(len(truth)), truth], _EPS, 1.0)).mean())


def calibration_metrics(truth: Any, probs: Any, bins: int = DEFAULT_BINS) -> CalibrationMetrics:
    """ECE (top-label and classwise), Brier score, NLL and the reliability bins.

    Parameters
    ----------
    truth
        ``(n,)`` class indices.
    probs
        ``(n, K)`` probabilities.
    bins
        Number of equal-width bins.

    Returns
    -------
    CalibrationMetrics
    """
    truth, probs = _checked(truth, probs)
    return CalibrationMetrics(
        samples=len(truth),
        ece=expected_calibration_error(truth, probs, bins),
        classwise_ece=classwise_ece(truth, probs, bins),
        brier=brier_score(truth, probs),
        nll=negative_log_likelihood(truth, probs),
        bins=reliability_bins(truth, probs, bins),
    )


def classification_metrics(
    truth: Any, probs: Any, labels: Sequence[str]
) -> ClassificationMetrics:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    Parameters
    ----------
    truth
        ``(n,)`` class indices into `labels`.
    probs
        ``(n, K)`` probabilities, ``K == len(labels)``; the prediction is the argmax.
    labels
        The class names.

    Returns
    -------
    ClassificationMetrics
        Precision (recall) of a class never predicted (never true) is 0.

    Examples
    --------
    >>> m = classification_metrics([0, 0, 1], [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]], ["a", "b"])
    >>> round(m.accuracy, 3), round(m.macro_f1, 3), m.confusion
    (0.667, 0.667, ((1, 1), (0, 1)))
    """
    truth, probs = _checked(truth, probs)
    if probs.shape[1] != len(labels):
        raise ValueError(f"probs has {probs.shape[1]} columns for {len(labels)} labels")
    predicted = probs.argmax(axis=1)
    classes = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=classes, zero_division=0.0
    )
    present = np.isin(classes, np.concatenate([truth, predicted]))
    return ClassificationMetrics(
        samples=len(truth),
        accuracy=float((predicted == truth).mean()) if len(truth) else 0.0,
        macro_f1=float(np.asarray(f1)[present].mean()) if present.any() else 0.0,
        per_class=tuple(
            ClassMetrics(label, float(p), float(r), float(f), int(s))
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        ),
        labels=tuple(labels),
        confusion=tuple(
            tuple(int(v) for v in row)
            for row in confusion_matrix(truth, predicted, labels=classes)
        ),
    )
