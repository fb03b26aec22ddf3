"""Prompts and answer parsing: the seed card's examples, round trips, negatives, properties."""

import doctest
import itertools
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import geovlm.labels.prompts
from geovlm.labels.prompts import DisasterLabel, Language, answer, answers, parse_label, question

SEED_CARD = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "qwen3vl-8b-qlora-xview2.md"

# Every answer in the seed card's examples and quick start, with the label it names.
# Fine-tuned outputs and ground truths:
SEED_ANSWERS = [
    ("Fire disaster", DisasterLabel.FIRE),
    ("A fire disaster occurred in this image.", DisasterLabel.FIRE),
    ("Flood disaster", DisasterLabel.FLOOD),
    ("A flooding disaster occurred in this image.", DisasterLabel.FLOOD),
    ("Flooding", DisasterLabel.FLOOD),
    ("この画像では風災災害が発生しました。", DisasterLabel.WIND),
    ("火災災害", DisasterLabel.FIRE),
    ("火灾", DisasterLabel.FIRE),
]
# The base model's answers: what they name, right or wrong; None where no single disaster.
BASE_ANSWERS = [
    (
        "Based on the visual evidence in the image, this appears to be the aftermath of a "
        "landslide or rockfall... The debris at the bottom is the key indicator...",
        None,
    ),
    (
        "The image shows a green algae bloom, which is not a traditional disaster like a "
        "hurricane or earthquake, but it can be considered an environmental disaster...",
        None,
    ),
    (
        "Based on the image provided, there is no visible evidence of a disaster... The scene "
        "appears to be a normal, undisturbed landscape.",
        None,
    ),
    ("この画像では洪水が発生したと推測されます...", DisasterLabel.FLOOD),
    (
        "この画像では台風による災害が発生しています。画像に見られるのは、台風の影響で甚大な"
        "被害を受けた都市部の衛星写真です...",
        DisasterLabel.WIND,
    ),
]

PAIRS = list(itertools.product(DisasterLabel, Language))


def test_card_answers_are_all_covered():
    """The lists above hold every quoted answer of the card, so none is missed."""
    text = SEED_CARD.read_text(encoding="utf-8")
    quoted = set(re.findall(r'^(?:Fine-tuned|Ground Truth) "(.+)"$', text, re.MULTILINE))
    quoted |= set(re.findall(r'# Output: "(.+)"$', text, re.MULTILINE))
    assert quoted == {a for a, _ in SEED_ANSWERS}
    base = re.findall(r'^Base Model "(.+)"$', text, re.MULTILINE)
    assert base == [a for a, _ in BASE_ANSWERS]


@pytest.mark.parametrize(("text", "label"), SEED_ANSWERS + BASE_ANSWERS)
def test_parse_seed_card_answers(text, label):
    assert parse_label(text) is label


def test_questions_match_seed_card():
    text = SEED_CARD.read_text(encoding="utf-8")
    for language in Language:
        assert f"<image>\\n{question(language)}" in text
    assert question() == "What type of disaster occurred in this image?"
    assert question("ja") == "この画像ではどのような種類の災害が発生しましたか?"
    assert question("zh") == "这张图片中发生了什么类型的灾害?"


def test_answers_match_seed_card():
    assert answer("fire") == "A fire disaster occurred in this image."
    assert answer("flood", "en") == "A flooding disaster occurred in this image."
    assert answer(DisasterLabel.WIND, Language.JA) == "この画像では風災災害が発生しました。"
    assert answer("fire", "ja") == "この画像では火災災害が発生しました。"
    assert answer("fire", "zh") == "火灾"


@pytest.mark.parametrize(("label", "language"), PAIRS)
def test_round_trip(label, language):
    assert parse_label(answer(label, language)) is label


@pytest.mark.parametrize("language", list(Language))
def test_answers_in_label_order_and_distinct(language):
    table = answers(language)
    assert list(table) == list(DisasterLabel)
    assert list(table.values()) == [answer(label, language) for label in DisasterLabel]
    assert len(set(table.values())) == len(DisasterLabel)
    table.clear()  # a copy: the module's table is untouched
    assert len(answers(language)) == 6


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("wildfire", DisasterLabel.FIRE),
        ("Wildfires burned the hillside.", DisasterLabel.FIRE),
        ("FIRE!", DisasterLabel.FIRE),
        ("  fire disaster.  ", DisasterLabel.FIRE),
        ("hurricane", DisasterLabel.WIND),
        ("Typhoon damage", DisasterLabel.WIND),
        ("台風", DisasterLabel.WIND),
        ("台风", DisasterLabel.WIND),
        ("飓风灾害", DisasterLabel.WIND),
        ("wind", DisasterLabel.WIND),
        ("flood", DisasterLabel.FLOOD),
        ("Flooded streets", DisasterLabel.FLOOD),
        ("洪水", DisasterLabel.FLOOD),
        ("洪灾", DisasterLabel.FLOOD),
        ("Earthquake.", DisasterLabel.EARTHQUAKE),
        ("この画像では地震災害が発生しました。", DisasterLabel.EARTHQUAKE),
        ("Tsunami", DisasterLabel.TSUNAMI),
        ("津波", DisasterLabel.TSUNAMI),
        ("海啸", DisasterLabel.TSUNAMI),
        ("A volcanic eruption", DisasterLabel.VOLCANO),
        ("Volcanoes", DisasterLabel.VOLCANO),
        ("火山", DisasterLabel.VOLCANO),
        ("火山災害", DisasterLabel.VOLCANO),
        ("ＦＩＲＥ", DisasterLabel.FIRE),  # full-width letters
    ],
)
def test_parse_synonyms(text, label):
    assert parse_label(text) is label


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "no visible evidence of a disaster",
        "landslide or rockfall",
        "A normal residential area.",
        "Fire or flood",
        "地震と津波",
        "风灾和洪水",
        "window",  # contains "wind" but is not the word
        "firefighters",
        "uncertain",
        "災害",
        "灾害",
    ],
)
def test_parse_none(text):
    assert parse_label(text) is None


def test_enum_lookup_and_errors():
    assert DisasterLabel("flooding") is DisasterLabel.FLOOD
    assert DisasterLabel.from_xbd("flooding") is DisasterLabel.FLOOD
    assert DisasterLabel.from_xbd("wind") is DisasterLabel.WIND
    assert DisasterLabel(" Volcano ") is DisasterLabel.VOLCANO
    assert Language("EN") is Language.EN
    assert DisasterLabel.FIRE == "fire"
    with pytest.raises(ValueError, match="fire, flood, wind, earthquake, tsunami, volcano"):
        DisasterLabel("landslide")
    with pytest.raises(ValueError, match="en, ja, zh"):
        Language("fr")
    with pytest.raises(ValueError, match="en, ja, zh"):
        question("de")
    with pytest.raises(ValueError, match="choose one of"):
        answer("hail", "en")


def test_doctests():
    result = doctest.testmod(geovlm.labels.prompts)
    assert result.attempted > 0
    assert result.failed == 0


_all_answers = st.sampled_from([(answer(lb, lg), lb) for lb, lg in PAIRS] + SEED_ANSWERS)
_padding = st.text(alphabet=" \t\n.,!?。、!?\"'()「」", max_size=5)


@given(_all_answers, _padding, _padding, st.sampled_from([str.lower, str.upper, str.title]))
def test_parse_ignores_padding_and_case(pair, left, right, case):
    text, label = pair
    assert parse_label(left + case(text) + right) is label


@given(
    _all_answers, st.sampled_from(SEED_ANSWERS + [(answer(lb, "en"), lb) for lb in DisasterLabel])
)
def test_two_different_labels_are_ambiguous(first, second):
    text = f"{first[0]} {second[0]}"
    expected = first[1] if first[1] is second[1] else None
    assert parse_label(text) is expected


@given(st.text(max_size=40))
def test_parse_never_raises(text):
    result = parse_label(text)
    assert result is None or isinstance(result, DisasterLabel)
