"""Temperature and prior calibration: recovers a known temperature, helps held out, round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from geovlm.errors import PresetError
from geovlm.evaluation.metrics import expected_calibration_error, negative_log_likelihood
from geovlm.labels.calibration import Calibration, cross_fitted_probabilities, fit_calibration
from geovlm.labels.prompts import DisasterLabel
from geovlm.models.presets import ModelPreset


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _synthetic(n, temperature, prior=0.0, seed=0):
    """Truth drawn from softmax(z + prior); the model reports softmax(z * T): over-confident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 6))
    true_probs = _softmax(z + prior)
    truth = (rng.random((n, 1)) > true_probs.cumsum(1)).sum(1)
    return _softmax(z * temperature), truth


def test_fit_recovers_a_known_temperature():
    probs, truth = _synthetic(20_000, 2.5)
    fitted = fit_calibration(probs, truth)
    assert fitted.temperature == pytest.approx(2.5, rel=0.05)
    assert max(abs(b) for b in fitted.log_prior) < 0.1
    assert sum(fitted.log_prior) == pytest.approx(0.0, abs=1e-5)


def test_fit_recovers_a_label_prior():
    prior = np.array([1.0, -0.5, 0, 0, 0, -0.5])
    probs, truth = _synthetic(20_000, 1.0, prior, seed=1)
    fitted = fit_calibration(probs, truth, l2=0.0)
    assert fitted.temperature == pytest.approx(1.0, rel=0.05)
    assert np.array(fitted.log_prior) == pytest.approx(prior - prior.mean(), abs=0.1)


def test_penalty_keeps_a_tiny_set_from_blowing_the_prior_up():
    probs, truth = _synthetic(6, 1.0, seed=3)
    truth[:] = 0  # every sample "fire": an unpenalised prior would run off to infinity
    assert max(abs(b) for b in fit_calibration(probs, truth).log_prior) < 10


def test_cross_fitting_lowers_held_out_ece_and_nll():
    probs, truth = _synthetic(3000, 2.5, seed=4)
    tiles = [f"tile{i // 10}" for i in range(len(truth))]
    held_out = cross_fitted_probabilities(probs, truth, tiles)
    before, after = expected_calibration_error(truth, probs), expected_calibration_error(
        truth, held_out)
    assert after < before / 3
    assert negative_log_likelihood(truth, held_out) < negative_log_likelihood(truth, probs)
    with pytest.raises(ValueError, match="two tiles"):
        cross_fitted_probabilities(probs[:5], truth[:5], ["one"] * 5)


def test_apply_keeps_rows_normalised_and_identity_changes_nothing():
    probs, _ = _synthetic(50, 1.7)
    assert Calibration(1.0, (0.0,) * 6).apply(probs) == pytest.approx(probs)
    calibrated = Calibration(2.0, (0.5, 0, 0, 0, 0, -0.5)).apply(probs)
    assert calibrated.sum(1) == pytest.approx(np.ones(50))
    assert (calibrated.max(1) < probs.max(1) + 1e-9).mean() > 0.5


def test_round_trips_through_yaml():
    cal = Calibration(1.83, (0.1, -0.2, 0.0, 0.3, -0.1, -0.1), "ds (test)", 0.21, 0.04)
    text = yaml.safe_dump({"calibration": cal.to_mapping()})
    assert Calibration.from_mapping(yaml.safe_load(text)["calibration"]) == cal
    partial = Calibration.from_mapping({"temperature": 2, "log_prior": {"flooding": 0.5}})
    assert partial.log_prior[list(DisasterLabel).index(DisasterLabel.FLOOD)] == 0.5


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"temperature": 0}, "positive"),
        ({"temperature": "hot"}, "must be a number"),
        ({"temperature": 1, "log_prior": {"hail": 1}}, "unknown disaster label"),
        ({"temperature": 1, "bias": {}}, "unknown keys"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_bad_mappings_are_named(mapping, message):
    with pytest.raises(ValueError, match=message):
        Calibration.from_mapping(mapping)


def _preset_file(folder, calibration):
    path = folder / "cal.yaml"
    path.write_text(yaml.safe_dump({
        "name": "cal", "model_id": "org/model", "family": "qwen3_vl", "chip_size": 512,
        "supports_images": True, "calibration": calibration,
    }))
    return path


def test_preset_reads_its_calibration(tmp_path):
    cal = Calibration(2.0, (0.0, 0.1, -0.1, 0.0, 0.0, 0.0))
    assert ModelPreset.from_yaml(_preset_file(tmp_path, cal.to_mapping())).calibration == cal
    with pytest.raises(PresetError, match="temperature must be a positive"):
        ModelPreset.from_yaml(_preset_file(tmp_path, {"temperature": -1}))


def test_a_calibration_applies_only_with_the_presets_own_adapter(tmp_path):
    from geovlm.backends.choice import ModelChoice

    cal = Calibration(2.0, (0.0,) * 6)
    path = _preset_file(tmp_path, cal.to_mapping())
    text = path.read_text() + "adapter_id: org/adapter\n"
    path.write_text(text)
    preset = ModelPreset.from_yaml(path)
    own = ModelChoice(preset, "org/adapter", "none", "cpu", 8)
    assert own.calibration == cal
    assert ModelChoice(preset, "other/adapter", "none", "cpu", 8).calibration is None
    assert ModelChoice(preset, None, "none", "cpu", 8).calibration is None
    assert ModelChoice(preset, "org/adapter", "none", "cpu", 8, False).calibration is None


def test_a_bare_folder_name_with_a_preset_receives_the_calibration(tmp_path, monkeypatch):
    from geovlm.errors import ParameterError
    from geovlm.evaluation.preset_calibration import calibration_folder

    monkeypatch.chdir(tmp_path)
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "geovlm-preset.yaml").write_text("name: run1\n")
    (tmp_path / "plain").mkdir()
    assert calibration_folder("run1", None) == tmp_path.joinpath("run1").relative_to(tmp_path)
    # A bare name without a preset file may be a hub id: refused, as a preset name is.
    for name in ("plain", "xview2-qwen3vl"):
        with pytest.raises(ParameterError, match="no local folder"):
            calibration_folder(name, None)
