"""Verbalizers: the seed card's forms, validation, parsing back, and label scores vs brute force."""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import geovlm.labels.verbalizer
from geovlm.labels.prompts import DisasterLabel, Language, answer, parse_label, question
from geovlm.labels.verbalizer import AnswerForm, Verbalizer, label_probabilities
from geovlm.models.presets import list_presets
from tests.test_backend_scoring import _brute_force_logp
from tests.test_prompts import SEED_ANSWERS

FIRE, FLOOD, WIND, QUAKE = (
    DisasterLabel.FIRE, DisasterLabel.FLOOD, DisasterLabel.WIND, DisasterLabel.EARTHQUAKE
)
# Where each answer of the seed card belongs: its language (the label is in SEED_ANSWERS).
SEED_LANGUAGE = {"この画像では風災災害が発生しました。": Language.JA, "火災災害": Language.JA,
                 "火灾": Language.ZH}
VERBALIZERS = {
    "default": Verbalizer.default(),
    **{preset.name: preset.answers for preset in list_presets()},
    "custom": Verbalizer.from_mapping({"en": {"fire": ["Conflagration", "Blaze on the hill"]}}),
}


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) without overflow (numpy has no direct function)."""
    return np.logaddexp.reduce(np.asarray(x, dtype=np.float64), axis=axis, keepdims=keepdims)


def _labelled(verbalizer: Verbalizer, language: Language) -> set[tuple[str, DisasterLabel]]:
    return {(form.text, form.label) for form in verbalizer.forms(language)}


def test_default_holds_every_seed_card_answer_and_the_mechanical_forms():
    verbalizer = Verbalizer.default()
    for text, label in SEED_ANSWERS:
        assert (text, label) in _labelled(verbalizer, SEED_LANGUAGE.get(text, Language.EN))
    english = _labelled(verbalizer, Language.EN)
    assert ("A earthquake disaster occurred in this image.", QUAKE) in english
    assert ("An earthquake disaster occurred in this image.", QUAKE) in english


@pytest.mark.parametrize("language", list(Language))
def test_default_is_a_handful_per_label_training_sentence_first(language):
    table = Verbalizer.default().table(language)
    assert list(table) == [label.value for label in DisasterLabel]
    assert all(3 <= len(forms) <= 4 for forms in table.values())
    assert [forms[0] for forms in table.values()] == [answer(lb, language) for lb in DisasterLabel]


def test_the_seed_preset_lists_the_default_forms_explicitly():
    assert VERBALIZERS["xview2-qwen3vl"] == Verbalizer.default()


@pytest.mark.parametrize(("name", "language"), list(itertools.product(VERBALIZERS, Language)))
def test_every_configured_form_parses_back_to_its_label(name, language):
    verbalizer = VERBALIZERS[name]
    for form in verbalizer.forms(language):
        assert verbalizer.parse(form.text, language) is form.label
        assert verbalizer.parse(f" {form.text.upper()}! ", language) is form.label
        if name != "custom":  # the word parser alone reads every shipped form too
            assert parse_label(form.text) is form.label


def test_parse_falls_back_to_the_word_parser():
    verbalizer = VERBALIZERS["custom"]
    assert verbalizer.parse("Conflagration.", "en") is FIRE
    assert verbalizer.parse("Conflagration.", "ja") is None  # a form of English only
    assert verbalizer.parse("Typhoon damage", "en") is WIND
    assert verbalizer.parse("no disaster", "en") is None


def test_from_mapping_replaces_listed_labels_only():
    custom = Verbalizer.from_mapping({"EN": {"flooding": ["Inundation"]}, "zh": {}})
    assert custom.table("en")["flood"] == ["Inundation"]
    default = Verbalizer.default()
    for language in Language:
        for label in DisasterLabel:
            if (language, label) != (Language.EN, FLOOD):
                assert custom.table(language)[label.value] == default.table(language)[label.value]
    assert Verbalizer.from_mapping({}) == default
    assert len({custom, default, Verbalizer.default()}) == 2  # hashable, by value


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        (["en"], "answers must map languages"),
        ({"fr": {"fire": ["Feu"]}}, r"answers: unknown language 'fr'; choose one of: en, ja, zh"),
        ({"en": ["Fire"]}, r"answers\.en must map labels"),
        ({"en": {"hail": ["Hail"]}}, r"answers\.en: unknown disaster label 'hail'; choose one of"),
        ({"en": {"fire": []}}, r"answers\.en\.fire must be a non-empty list"),
        ({"en": {"fire": "Fire"}}, r"answers\.en\.fire must be a non-empty list"),
        ({"en": {"fire": ["Fire", 3]}}, r"non-blank strings, not \['Fire', 3\]"),
        ({"en": {"fire": ["  "]}}, "non-blank strings"),
        ({"en": {"fire": ["Fire", "Fire"]}}, r"answers\.en\.fire lists a form twice"),
        ({"en": {"flood": ["Flood"], "flooding": ["Flooding"]}}, "gives label flood twice"),
        ({"en": {"fire": ["Fire"]}, "EN": {"wind": ["Wind"]}}, "gives language en twice"),
        ({"en": {"wind": ["Wind", "Fire"]}}, r"answers\.en lists 'Fire' under both fire and wind"),
    ],
)
def test_from_mapping_refuses_bad_tables(mapping, match):
    with pytest.raises(ValueError, match=match) as info:
        Verbalizer.from_mapping(mapping)
    assert "\n" not in str(info.value)


def test_constructor_checks_coverage_and_uniqueness():
    forms = Verbalizer.default().entries
    with pytest.raises(ValueError, match=r"answers\.zh has no forms for volcano; add some"):
        Verbalizer(tuple(f for f in forms if (f.language, f.label) != ("zh", "volcano")))
    twice = AnswerForm(Language.JA, FIRE, answer(FIRE, Language.JA))
    with pytest.raises(ValueError, match="under fire twice"):
        Verbalizer((*forms, twice))


@given(hnp.arrays(np.float64, (2, 19), elements=st.floats(-30, 5)))
def test_label_probabilities_is_the_normalised_logsumexp(logp):
    forms = Verbalizer.default().forms(Language.EN)
    softmax = np.exp(logp - logsumexp(logp, axis=1, keepdims=True))
    labels = np.array([list(DisasterLabel).index(form.label) for form in forms])
    per_label = np.stack([logsumexp(logp[:, labels == i], axis=1) for i in range(6)], axis=1)
    expected = np.exp(per_label - logsumexp(per_label, axis=1, keepdims=True))
    np.testing.assert_allclose(label_probabilities(softmax, forms), expected, atol=1e-12)


@pytest.mark.parametrize("language", list(Language))
def test_label_scores_equal_brute_force_over_all_forms(qwen3_vl_backend, chip_images, language):
    """One pass over all forms, summed per label == each form's own forward, logsumexp'd."""
    forms = Verbalizer.default().forms(language)
    texts = [form.text for form in forms]
    form_probs = qwen3_vl_backend.score(chip_images, question(language), texts)
    fast = label_probabilities(form_probs, forms)
    for row, image in zip(fast, chip_images, strict=True):
        logp = _brute_force_logp(qwen3_vl_backend, image, question(language), texts)
        per_label = np.array([
            logsumexp([lp for lp, f in zip(logp, forms, strict=True) if f.label is label])
            for label in DisasterLabel
        ])
        np.testing.assert_allclose(row, np.exp(per_label - logsumexp(per_label)), atol=1e-5)


def test_doctests():
    result = doctest.testmod(geovlm.labels.verbalizer)
    assert result.attempted > 0
    assert result.failed == 0
