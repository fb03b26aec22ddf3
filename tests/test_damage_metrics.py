"""Building-damage metrics against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geovlm.evaluation.damage_metrics import GRADE_LABELS, damage_metrics
from geovlm.evaluation.metrics import expected_calibration_error

# Truth: no no minor major destroyed destroyed; argmax: no minor minor major destroyed no.
TRUTH = [0, 0, 1, 2, 3, 3]
PROBS = [
    [0.9, 0.05, 0.03, 0.02],
    [0.3, 0.4, 0.2, 0.1],
    [0.1, 0.8, 0.05, 0.05],
    [0.1, 0.1, 0.6, 0.2],
    [0.0, 0.05, 0.05, 0.9],
    [0.35, 0.2, 0.2, 0.25],
]


def test_damage_metrics_by_hand():
    m = damage_metrics(TRUTH, PROBS)
    assert m.classification.labels == GRADE_LABELS == (
        "no-damage", "minor-damage", "major-damage", "destroyed")
    assert m.classification.accuracy == pytest.approx(4 / 6)
    # no: P 1/2 R 1/2; minor: P 1/2 R 1; major: P 1 R 1; destroyed: P 1 R 1/2.
    f1s = [0.5, 2 / 3, 1.0, 2 / 3]
    assert [c.f1 for c in m.classification.per_class] == pytest.approx(f1s)
    assert m.xview2_f1 == pytest.approx(4 / sum(1 / (f + 1e-6) for f in f1s), rel=1e-12)
    assert m.calibration.ece == expected_calibration_error(TRUTH, PROBS)
    assert m.classification.confusion[3] == (1, 0, 0, 1)
    assert (m.uncertain, m.coverage) == (0, 1.0)
    assert m.graded == m.classification


def test_uncertain_buildings_are_counted_apart():
    m = damage_metrics(TRUTH, PROBS, min_confidence=0.5)
    # Rows 1 (0.4) and 5 (0.35) fall below 0.5; the other four are all right.
    assert (m.uncertain, m.coverage) == (2, pytest.approx(4 / 6))
    assert m.graded is not None and m.graded.accuracy == 1.0 and m.graded.samples == 4
    assert m.graded_xview2_f1 == pytest.approx(4 / (4 / (1 + 1e-6)))
    assert m.classification.samples == 6  # the full metrics keep every building
    data = json.loads(json.dumps(m.to_dict()))
    assert data["uncertain"] == 2 and data["graded"]["samples"] == 4


def test_every_building_uncertain():
    m = damage_metrics(TRUTH, PROBS, min_confidence=0.99)
    assert (m.uncertain, m.coverage, m.graded, m.graded_xview2_f1) == (6, 0.0, None, None)


def test_a_grade_never_true_nor_predicted_drives_the_xview2_f1_to_zero():
    probs = np.eye(4)[[0, 1, 2, 2]]
    m = damage_metrics([0, 1, 2, 2], probs)
    assert m.classification.accuracy == 1.0 and m.classification.macro_f1 == 1.0
    assert m.xview2_f1 < 1e-5
