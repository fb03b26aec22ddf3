"""Classification and calibration metrics against hand-computed values and brute force."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geovlm.evaluation.metrics import (
    brier_score,
    calibration_metrics,
    classification_metrics,
    classwise_ece,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
)

# Truth a a b b c c; predictions a b b b a c (argmax of the rows below).
TRUTH = [0, 0, 1, 1, 2, 2]
PROBS = [
    [0.7, 0.2, 0.1],
    [0.3, 0.6, 0.1],
    [0.1, 0.8, 0.1],
    [0.2, 0.5, 0.3],
    [0.5, 0.1, 0.4],
    [0.1, 0.1, 0.8],
]


def test_classification_by_hand():
    m = classification_metrics(TRUTH, PROBS, ["a", "b", "c"])
    assert m.samples == 6
    assert m.accuracy == pytest.approx(4 / 6)
    # a: predicted twice, right once -> P 1/2, R 1/2; b: predicted 3x, right 2x -> P 2/3, R 1;
    # c: predicted once, right -> P 1, R 1/2.
    expected = {"a": (1 / 2, 1 / 2, 1 / 2), "b": (2 / 3, 1.0, 0.8), "c": (1.0, 1 / 2, 2 / 3)}
    for row in m.per_class:
        assert (row.precision, row.recall, row.f1) == pytest.approx(expected[row.label])
        assert row.support == 2
    assert m.macro_f1 == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m.confusion == ((1, 1, 0), (0, 2, 0), (1, 0, 1))
    assert json.loads(json.dumps(m.to_dict()))["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_absent_class_has_zero_support_and_stays_out_of_macro_f1():
    m = classification_metrics([0, 0], [[0.9, 0.1, 0.0], [0.8, 0.2, 0.0]], ["a", "b", "c"])
    assert m.accuracy == 1.0 and m.macro_f1 == 1.0
    assert [c.support for c in m.per_class] == [2, 0, 0]
    assert m.per_class[1].f1 == 0.0


def test_calibration_by_hand():
    # Confidences 0.7 0.6 0.8 0.5 0.5 0.8, correct 1 0 1 1 0 1; 10 bins:
    # (0.4,0.5]: {0.5 ok, 0.5 wrong} gap |0.5-0.5| = 0; (0.5,0.6]: {0.6 wrong} gap 0.6;
    # (0.6,0.7]: {0.7 ok} gap 0.3; (0.7,0.8]: {0.8 ok, 0.8 ok} gap 0.2 each.
    assert expected_calibration_error(TRUTH, PROBS, bins=10) == pytest.approx(
        (0 + 0.6 + 0.3 + 2 * 0.2) / 6
    )
    bins = reliability_bins(TRUTH, PROBS, bins=10)
    assert [b.count for b in bins] == [0, 0, 0, 0, 2, 1, 1, 2, 0, 0]
    assert bins[7].confidence == pytest.approx(0.8) and bins[7].accuracy == 1.0
    assert bins[0].confidence is None
    onehot = np.eye(3)[TRUTH]
    expected_brier = ((np.array(PROBS) - onehot) ** 2).sum(1).mean()
    assert brier_score(TRUTH, PROBS) == pytest.approx(expected_brier)
    assert negative_log_likelihood(TRUTH, PROBS) == pytest.approx(
        -np.mean(np.log([0.7, 0.3, 0.8, 0.5, 0.4, 0.8]))
    )
    summary = calibration_metrics(TRUTH, PROBS, bins=10)
    assert json.loads(json.dumps(summary.to_dict()))["bins"][4]["count"] == 2


def _brute_force_ece(truth, probs, bins):
    """ECE straight from its definition: loop over bins (lo, hi] and samples."""
    confidence = [max(row) for row in probs]
    correct = [int(np.argmax(row) == t) for t, row in zip(truth, probs, strict=True)]
    total = 0.0
    for m in range(bins):
        lo, hi = m / bins, (m + 1) / bins
        members = [i for i, c in enumerate(confidence) if (lo < c <= hi) or (m == 0 and c == 0)]
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            conf = sum(confidence[i] for i in members) / len(members)
            total += len(members) / len(truth) * abs(acc - conf)
    return total


@given(seed=st.integers(0, 10_000), n=st.integers(1, 60), bins=st.integers(1, 20))
def test_ece_matches_brute_force(seed, n, bins):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, 4))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = rng.integers(0, 4, n)
    assert expected_calibration_error(truth, probs, bins) == pytest.approx(
        _brute_force_ece(truth, probs.tolist(), bins), abs=1e-12
    )


def test_classwise_ece_of_a_perfect_one_hot_is_zero():
    probs = np.eye(3)[[0, 1, 2, 1]]
    assert classwise_ece([0, 1, 2, 1], probs) == 0.0
    assert expected_calibration_error([0, 1, 2, 1], probs) == 0.0


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="class indices"):
        expected_calibration_error([3], [[0.5, 0.5]])
    with pytest.raises(ValueError, match="labels"):
        classification_metrics([0], [[0.5, 0.5]], ["a"])
