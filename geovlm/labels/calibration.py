"""Temperature and class-prior calibration of label probabilities, fitted by maximum likelihood.

A fine-tuned model is often over-confident, and the answer forms of one label may be likelier
to the model than another's whatever the image shows. `Calibration` corrects both::

    p'_k = softmax_k(log p_k / T + b_k)

with one temperature ``T > 0`` shared by all labels and a log-prior correction ``b`` (mean
zero). `fit_calibration` minimises the negative log-likelihood of the truth plus a little L2
penalty on ``b`` (so a small evaluation set cannot push a label's prior far);
`cross_fitted_probabilities` calibrates every sample with a fit that never saw its group
(tile), so the error measured after calibration is a held-out one. The labels are a
`geovlm.labels.label_set.LabelSet`: disaster types unless told otherwise, or the damage grades
(`geovlm.labels.grade_forms.DAMAGE_GRADES`), each fitted and stored on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geovlm.labels.label_set import DISASTER_TYPES, LabelSet

__all__ = ["DEFAULT_L2", "Calibration", "cross_fitted_probabilities", "fit_calibration"]

#: Weight of the L2 penalty on the log-prior correction, per sample's mean NLL.
DEFAULT_L2 = 0.01
_EPS = 1e-12
_LOG_T_BOUNDS = (math.log(0.05), math.log(20.0))
_DIGITS = 6


@dataclass(frozen=True, slots=True)
class Calibration:
    """A temperature and a log-prior correction per label, with where they were fitted.

    Examples
    --------
    >>> cal = Calibration(2.0, (0.0,) * 6)
    >>> cal.apply(np.array([[0.9, 0.02, 0.02, 0.02, 0.02, 0.02]])).round(3).tolist()
    [[0.573, 0.085, 0.085, 0.085, 0.085, 0.085]]
    >>> Calibration.from_mapping(cal.to_mapping()) == cal
    True
    >>> from geovlm.labels.grade_forms import DAMAGE_GRADES
    >>> grades = Calibration(1.5, (0.1, 0.0, 0.0, -0.1), labels=DAMAGE_GRADES)
    >>> sorted(grades.to_mapping()["log_prior"])
    ['destroyed', 'major-damage', 'minor-damage', 'no-damage']
    """

    #: Divides the log-probabilities; above 1 softens over-confident models.
    temperature: float
    #: Added to the tempered log-probabilities, one per label, in the label set's order.
    log_prior: tuple[float, ...]
    #: What the calibration was fitted on (dataset and split), for people.
    fitted_on: str | None = None
    #: Held-out ECE of the probabilities before and after calibration, when measured.
    ece_before: float | None = None
    ece_after: float | None = None
    #: The labels corrected: disaster types, or `geovlm.labels.grade_forms.DAMAGE_GRADES`.
    labels: LabelSet = DISASTER_TYPES

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a positive number, not {self.temperature!r}")
        count = len(self.labels.labels)
        if len(self.log_prior) != count or not all(math.isfinite(b) for b in self.log_prior):
            raise ValueError(f"log_prior needs one finite number per label ({count})")

    def apply(self, probs: Any) -> np.ndarray:
        """Return the calibrated probabilities.

        Parameters
        ----------
        probs
            ``(..., K)`` label probabilities in the label set's order (zeros are clipped to
            1e-12 before the logarithm).

        Returns
        -------
        numpy.ndarray
            Same shape, float64, each row summing to 1.
        """
        return _softmax(_logits(probs) / self.temperature + np.asarray(self.log_prior))

    def to_mapping(self) -> dict[str, Any]:
        """Return the YAML mapping of a preset's ``calibration:`` key.

        Returns
        -------
        dict
            ``temperature``, ``log_prior`` (label -> value), and ``fitted_on``, ``ece_before``,
            ``ece_after`` when known.
        """
        data: dict[str, Any] = {
            "temperature": self.temperature,
            "log_prior": dict(zip(self.labels.values(), self.log_prior, strict=True)),
        }
        for key in ("fitted_on", "ece_before", "ece_after"):
            if (value := getattr(self, key)) is not None:
                data[key] = value
        return data

    @classmethod
    def from_mapping(cls, mapping: Any, labels: LabelSet = DISASTER_TYPES) -> Calibration:
        """Read a preset's ``calibration:`` mapping (as `to_mapping` writes it).

        Parameters
        ----------
        mapping
            ``temperature`` (required), ``log_prior`` (label -> number; missing labels 0),
            optional ``fitted_on``, ``ece_before``, ``ece_after``.
        labels
            The labels ``log_prior`` names (``damage_calibration:`` holds damage grades).

        Returns
        -------
        Calibration

        Raises
        ------
        ValueError
            With one clause naming the bad entry.
        """
        key = labels.calibration_key
        if not isinstance(mapping, Mapping):
            raise ValueError(f"{key} must be a mapping, not {mapping!r}")
        allowed = {"temperature", "log_prior", "fitted_on", "ece_before", "ece_after"}
        if unknown := sorted(set(map(str, mapping)) - allowed):
            raise ValueError(f"{key} has unknown keys {unknown}")
        priors = mapping.get("log_prior") or {}
        if not isinstance(priors, Mapping):
            raise ValueError(f"{key}.log_prior must map labels to numbers, not {priors!r}")
        values = {label: 0.0 for label in labels.labels}
        for name, value in priors.items():
            try:
                label = labels.label(name)
            except ValueError as exc:
                raise ValueError(f"{key}.log_prior: {exc}") from None
            values[label] = _number(value, f"{key}.log_prior.{name}")
        return cls(
            temperature=_number(mapping.get("temperature"), f"{key}.temperature"),
            log_prior=tuple(values.values()),
            fitted_on=None if mapping.get("fitted_on") is None else str(mapping["fitted_on"]),
            ece_before=_optional_number(mapping, "ece_before", key),
            ece_after=_optional_number(mapping, "ece_after", key),
            labels=labels,
        )


def fit_calibration(
    probs: Any, truth: Any, *, l2: float = DEFAULT_L2, fitted_on: str | None = None,
    labels: LabelSet = DISASTER_TYPES,
) -> Calibration:
    """Fit temperature and log-prior correction by minimising the NLL of the truth.

    The objective is ``mean_i -log p'_i[truth_i] + l2 * |b|^2`` over ``log T`` (bounded to
    T in [0.05, 20]) and ``b`` (L-BFGS-B with exact gradients; deterministic). Adding a
    constant to ``b`` changes no probability, so the penalty's minimum has ``b`` mean zero.

    Parameters
    ----------
    probs
        ``(n, K)`` uncalibrated label probabilities, one column per label of ``labels``.
    truth
        ``(n,)`` indices of the true labels.
    l2
        Penalty weight on ``b``.
    fitted_on
        Recorded in the result.
    labels
        The label set of the columns (disaster types unless told otherwise).

    Returns
    -------
    Calibration
        Rounded to 6 decimals.

    Raises
    ------
    ValueError
        If there are no samples or the shapes disagree.
    """
    from scipy.optimize import minimize

    logits = _logits(probs)
    truth = np.asarray(truth, dtype=np.int64)
    count = len(labels.labels)
    if logits.shape[1:] != (count,) or not len(logits) or truth.shape != (len(logits),):
        raise ValueError(f"fit_calibration needs (n, {count}) probabilities and n labels, n >= 1")
    onehot = np.eye(logits.shape[1])[truth]

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        inverse_t, b = math.exp(-x[0]), x[1:]
        z = logits * inverse_t + b
        z = z - z.max(axis=1, keepdims=True)
        log_q = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        residual = (np.exp(log_q) - onehot) / len(logits)  # d(mean NLL)/dz
        value = -(log_q * onehot).sum() / len(logits) + l2 * float(b @ b)
        grad_log_t = -float((residual * logits).sum()) * inverse_t
        return value, np.concatenate([[grad_log_t], residual.sum(axis=0) + 2 * l2 * b])

    bounds = [_LOG_T_BOUNDS] + [(None, None)] * logits.shape[1]
    result = minimize(objective, np.zeros(logits.shape[1] + 1), jac=True, method="L-BFGS-B",
                      bounds=bounds)
    b = result.x[1:] - result.x[1:].mean()
    return Calibration(
        temperature=round(math.exp(result.x[0]), _DIGITS),
        log_prior=tuple(round(float(v), _DIGITS) + 0.0 for v in b),
        fitted_on=fitted_on,
        labels=labels,
    )


def cross_fitted_probabilities(
    probs: Any, truth: Any, groups: Sequence[str], *, folds: int = 5, l2: float = DEFAULT_L2,
    labels: LabelSet = DISASTER_TYPES,
) -> np.ndarray:
    """Calibrate every sample with a fit on the other folds only (groups kept whole).

    Parameters
    ----------
    probs
        ``(n, K)`` uncalibrated label probabilities.
    truth
        ``(n,)`` indices of the true labels.
    groups
        ``n`` group names (tiles): a group's samples share a fold, so none is calibrated by a
        fit that saw a sample of its own group.
    folds
        Most folds; fewer when there are fewer groups.
    l2, labels
        As `fit_calibration`.

    Returns
    -------
    numpy.ndarray
        ``(n, K)`` held-out calibrated probabilities, in the input order.

    Raises
    ------
    ValueError
        If there are fewer than two groups.
    """
    from sklearn.model_selection import GroupKFold

    probs = np.asarray(probs, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.int64)
    names = np.asarray(groups, dtype=str)
    count = len(set(names.tolist()))
    if count < 2:
        raise ValueError("held-out calibration needs samples from at least two tiles")
    calibrated = np.empty_like(probs)
    for fit_rows, held_rows in GroupKFold(n_splits=min(folds, count)).split(probs, truth, names):
        fitted = fit_calibration(probs[fit_rows], truth[fit_rows], l2=l2, labels=labels)
        calibrated[held_rows] = fitted.apply(probs[held_rows])
    return calibrated


def _logits(probs: Any) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} must be a number, not {value!r}")
    return float(value)


def _optional_number(mapping: Mapping[str, Any], key: str, where: str) -> float | None:
    value = mapping.get(key)
    return None if value is None else _number(value, f"{where}.{key}")
