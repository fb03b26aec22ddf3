"""Damage grades as a label set: forms, validation, parsing, probabilities, calibration, presets."""

from __future__ import annotations

import numpy as np
import pytest

from geovlm.errors import PresetError
from geovlm.labels.building_damage import GRADES, grade_answer
from geovlm.labels.calibration import Calibration, cross_fitted_probabilities, fit_calibration
from geovlm.labels.damage import Damage
from geovlm.labels.grade_forms import DAMAGE_GRADES, grade_forms
from geovlm.labels.prompts import Language
from geovlm.labels.verbalizer import Verbalizer, label_probabilities
from geovlm.models.presets import ModelPreset, list_presets

DAMAGE = Verbalizer.default(DAMAGE_GRADES)


@pytest.mark.parametrize("language", list(Language))
def test_each_grade_has_its_training_answer_first_and_short_forms(language):
    table = DAMAGE.table(language)
    assert list(table) == [grade.value for grade in GRADES]
    assert all(forms[0] == grade_answer(grade, language) and len(forms) >= 2
               for grade, forms in zip(GRADES, table.values(), strict=True))


@pytest.mark.parametrize("language", list(Language))
def test_every_form_parses_back_to_its_grade(language):
    for form in DAMAGE.forms(language):
        assert DAMAGE.parse(form.text, language) is form.label
    assert DAMAGE.parse("major-damage", language) is Damage.MAJOR_DAMAGE
    assert DAMAGE.parse("a fire", language) is None


def test_a_form_under_two_grades_is_refused():
    with pytest.raises(ValueError, match=r"damage_answers\.en lists 'Minor' under both"):
        Verbalizer.from_mapping({"en": {"major-damage": ["Minor"]}}, labels=DAMAGE_GRADES)


@pytest.mark.parametrize(("mapping", "match"), [
    ({"en": {"un-classified": ["?"]}}, "not one of the labels"),
    ({"en": {"fire": ["Fire"]}}, "unknown damage 'fire'"),
    ({"en": {"destroyed": []}}, r"damage_answers.en.destroyed must be a non-empty list"),
])
def test_bad_damage_tables_are_named(mapping, match):
    with pytest.raises(ValueError, match=match):
        Verbalizer.from_mapping(mapping, labels=DAMAGE_GRADES)


def test_probabilities_sum_each_grades_forms():
    forms = DAMAGE.forms("ja")
    probs = np.random.default_rng(0).dirichlet(np.ones(len(forms)), size=5)
    grades = DAMAGE.probabilities(probs, "ja")
    assert grades.shape == (5, 4)
    np.testing.assert_allclose(grades.sum(axis=1), 1.0)
    first = [i for i, form in enumerate(forms) if form.label is Damage.NO_DAMAGE]
    np.testing.assert_allclose(grades[:, 0], probs[:, first].sum(axis=1))
    np.testing.assert_array_equal(grades, label_probabilities(probs, forms, DAMAGE_GRADES))


def test_damage_calibration_fits_and_round_trips():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, 400)
    logits = 3.0 * np.eye(4)[truth] + rng.normal(size=(400, 4))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    fitted = fit_calibration(probs, truth, labels=DAMAGE_GRADES, fitted_on="synthetic")
    assert fitted.labels is DAMAGE_GRADES and len(fitted.log_prior) == 4
    mapping = fitted.to_mapping()
    assert list(mapping["log_prior"]) == [grade.value for grade in GRADES]
    assert Calibration.from_mapping(mapping, DAMAGE_GRADES) == fitted
    np.testing.assert_allclose(fitted.apply(probs).sum(axis=1), 1.0)
    held = cross_fitted_probabilities(probs, truth, [str(i % 3) for i in range(400)],
                                      labels=DAMAGE_GRADES)
    assert held.shape == (400, 4)
    with pytest.raises(ValueError, match=r"\(n, 6\) probabilities"):
        fit_calibration(probs, truth)
    with pytest.raises(ValueError, match=r"damage_calibration\.log_prior: unknown damage 'fire'"):
        Calibration.from_mapping({"temperature": 1.0, "log_prior": {"fire": 1.0}}, DAMAGE_GRADES)


def test_shipped_presets_have_the_builtin_damage_forms():
    for preset in list_presets():
        assert preset.damage_answers == DAMAGE and preset.damage_calibration is None


def _preset(tmp_path, extra: str):
    path = tmp_path / "site.yaml"
    path.write_text("name: site\nmodel_id: org/model\nfamily: qwen3_vl\nchip_size: 512\n"
                    "supports_images: true\n" + extra, encoding="utf-8")
    return ModelPreset.from_yaml(path)


def test_a_preset_overrides_damage_forms_and_carries_a_damage_calibration(tmp_path):
    preset = _preset(tmp_path, (
        "damage_answers:\n  en:\n    destroyed: [Gone, Rubble]\n  zh:\n    no-damage: [完好无损]\n"
        "damage_calibration:\n  temperature: 1.5\n  log_prior: {destroyed: 0.2}\n"
    ))
    answers = preset.answers_for(DAMAGE_GRADES)
    assert answers.table("en")["destroyed"] == ["Gone", "Rubble"]
    assert answers.table("en")["minor-damage"] == list(grade_forms("minor-damage"))
    assert answers.table("zh")["no-damage"] == ["完好无损"]
    assert preset.answers == Verbalizer.default()
    calibration = preset.calibration_for(DAMAGE_GRADES)
    assert calibration is not None and calibration.log_prior == (0.0, 0.0, 0.0, 0.2)
    assert preset.calibration is None


def test_a_bad_damage_table_in_a_preset_is_one_sentence(tmp_path):
    with pytest.raises(PresetError, match=r"bad value: damage_answers\.ja lists '全壊' under both"):
        _preset(tmp_path, "damage_answers:\n  ja:\n    no-damage: [全壊]\n")
