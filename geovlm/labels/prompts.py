"""Disaster-type vocabularies: labels, EN/JA/ZH questions, answer forms, and answer parsing.

The questions and answers reproduce the seed adapter's training data
(``WayBob/Qwen3VL-8B-QLora-4bit-xView2-Disaster-Recognition``, built from xBD) so that a
classifier scoring them asks the model exactly what it learned to answer.

Each label has a few answer forms per language (`answer_forms`, the built-in verbalizer; a
preset's ``answers:`` table overrides them), the training sentence first (`answer`). Fire::

    en  A fire disaster occurred in this image.   Fire disaster   Fire
    ja  この画像では火災災害が発生しました。       火災災害          火災
    zh  火灾                                      火灾灾害          这张图片中发生了火灾灾害。

and likewise with the words flooding (short form "Flood disaster", bare "Flooding"), wind,
earthquake, tsunami, volcano; 洪水, 風災, 地震, 津波, 火山 (ja); 洪水, 风灾, 地震, 海啸, 火山 (zh).
English inserts xBD's ``disaster_type`` word mechanically, so earthquake has both
"A earthquake disaster ..." (the mechanical form) and "An earthquake disaster ..." (grammar).

Attested in the seed card: "A fire disaster ...", "A flooding disaster ...", "Fire disaster",
"Flood disaster", "Flooding", "この画像では風災災害が発生しました。", "火災災害" and "火灾".
The other forms mirror them: the same patterns with the other words, the Japanese bare word,
and Chinese forms mirroring the Japanese ones and the Chinese question (not attested). The
Japanese and Chinese words are the standard terms: 洪水 (flood, the same word in both
languages), 風災/风灾 (wind damage, as in the card), 地震, 津波/海啸 and 火山. Check them against
the training set (``WayBob/Disaster_Recognition_RemoteSense_EN_CN_JA``) when it is at hand.
"""

from __future__ import annotations

import re
import unicodedata

from geovlm.enums import CheckedEnum

__all__ = [
    "DisasterLabel",
    "Language",
    "answer",
    "answer_forms",
    "answers",
    "parse_label",
    "question",
]


class DisasterLabel(CheckedEnum):
    """A canonical disaster type: xBD's ``disaster_type`` values, with ``flooding`` as ``flood``.

    Lookup is case-insensitive and accepts xBD's spelling.

    Examples
    --------
    >>> DisasterLabel("flooding")
    <DisasterLabel.FLOOD: 'flood'>
    >>> DisasterLabel("Fire").value
    'fire'
    """

    FIRE = "fire"
    FLOOD = "flood"
    WIND = "wind"
    EARTHQUAKE = "earthquake"
    TSUNAMI = "tsunami"
    VOLCANO = "volcano"

    @classmethod
    def _canonical(cls, key: str) -> str:
        return _XBD_ALIASES.get(key, key)

    @classmethod
    def from_xbd(cls, disaster_type: str) -> DisasterLabel:
        """Return the label of an xBD ``metadata.disaster_type`` value.

        Parameters
        ----------
        disaster_type
            xBD's word, e.g. ``"flooding"`` or ``"wind"``.

        Returns
        -------
        DisasterLabel
            The canonical label.

        Raises
        ------
        ValueError
            If the word is not one of xBD's disaster types; the message lists them.

        Examples
        --------
        >>> DisasterLabel.from_xbd("flooding").value
        'flood'
        """
        return cls(disaster_type)


_XBD_ALIASES = {"flooding": "flood"}


class Language(CheckedEnum):
    """A prompt language: English, Japanese or (simplified) Chinese.

    Examples
    --------
    >>> Language("JA")
    <Language.JA: 'ja'>
    """

    EN = "en"
    JA = "ja"
    ZH = "zh"



_QUESTIONS = {
    Language.EN: "What type of disaster occurred in this image?",
    Language.JA: "この画像ではどのような種類の災害が発生しましたか?",
    Language.ZH: "这张图片中发生了什么类型的灾害?",
}

# The disaster word per label and language; answers are built from these below.
_WORDS: dict[Language, dict[DisasterLabel, str]] = {
    Language.EN: {
        DisasterLabel.FIRE: "fire",
        DisasterLabel.FLOOD: "flooding",
        DisasterLabel.WIND: "wind",
        DisasterLabel.EARTHQUAKE: "earthquake",
        DisasterLabel.TSUNAMI: "tsunami",
        DisasterLabel.VOLCANO: "volcano",
    },
    Language.JA: {
        DisasterLabel.FIRE: "火災",
        DisasterLabel.FLOOD: "洪水",
        DisasterLabel.WIND: "風災",
        DisasterLabel.EARTHQUAKE: "地震",
        DisasterLabel.TSUNAMI: "津波",
        DisasterLabel.VOLCANO: "火山",
    },
    Language.ZH: {
        DisasterLabel.FIRE: "火灾",
        DisasterLabel.FLOOD: "洪水",
        DisasterLabel.WIND: "风灾",
        DisasterLabel.EARTHQUAKE: "地震",
        DisasterLabel.TSUNAMI: "海啸",
        DisasterLabel.VOLCANO: "火山",
    },
}


# English short forms use "Flood", as in the attested "Flood disaster"; the rest use _WORDS.
_SHORT_EN = {DisasterLabel.FLOOD: "flood"}


def _render_forms(label: DisasterLabel, language: Language) -> tuple[str, ...]:
    """The built-in answer forms of a label, the training sentence first (see the module doc)."""
    word = _WORDS[language][label]
    if language is Language.EN:
        mechanical = f"A {word} disaster occurred in this image."
        sentences = [f"An{mechanical[1:]}", mechanical] if word[0] in "aeiou" else [mechanical]
        short = _SHORT_EN.get(label, word).capitalize()
        return (*sentences, f"{short} disaster", word.capitalize())
    if language is Language.JA:
        return f"この画像では{word}災害が発生しました。", f"{word}災害", word
    return word, f"{word}灾害", f"这张图片中发生了{word}灾害。"


_FORMS = {lang: {label: _render_forms(label, lang) for label in DisasterLabel} for lang in Language}
_ANSWERS = {lang: {lb: forms[0] for lb, forms in table.items()} for lang, table in _FORMS.items()}

# Words naming each label in any of the three languages. English entries are whole words
# (an optional plural/verb ending is allowed); Japanese and Chinese ones match as substrings.
_EN_TERMS = {
    DisasterLabel.FIRE: r"fire|wildfire|bushfire|forest fire|burn(?:ed|t|ing)?|blaze",
    DisasterLabel.FLOOD: r"flood(?:ing|ed)?|inundat(?:ion|ed)|deluge",
    DisasterLabel.WIND: r"wind|windstorm|hurricane|typhoon|cyclone|tornado|storm",
    DisasterLabel.EARTHQUAKE: r"earthquake|quake|seismic",
    DisasterLabel.TSUNAMI: r"tsunami",
    DisasterLabel.VOLCANO: r"volcano(?:e)?|volcanic|eruption|erupt(?:ed|ing)?|lava",
}
_CJK_TERMS = {
    DisasterLabel.FIRE: ("火災", "火事", "山火", "火灾", "野火"),
    DisasterLabel.FLOOD: ("洪水", "浸水", "水害", "氾濫", "洪灾", "水灾", "内涝", "泛滥"),
    DisasterLabel.WIND: (
        "風災",
        "台風",
        "ハリケーン",
        "竜巻",
        "暴風",
        "強風",
        "风灾",
        "台风",
        "飓风",
        "龙卷风",
        "暴风",
        "大风",
    ),
    DisasterLabel.EARTHQUAKE: ("地震",),
    DisasterLabel.TSUNAMI: ("津波", "海啸", "海嘯"),
    DisasterLabel.VOLCANO: ("火山", "噴火", "喷发", "熔岩", "溶岩"),
}
_PATTERNS = {
    label: re.compile(
        rf"\b(?:{_EN_TERMS[label]})s?\b|" + "|".join(map(re.escape, _CJK_TERMS[label]))
    )
    for label in DisasterLabel
}


def question(language: Language | str = Language.EN) -> str:
    """Return the disaster-type question, exactly as the seed adapter was trained on it.

    Parameters
    ----------
    language
        ``"en"``, ``"ja"`` or ``"zh"``.

    Returns
    -------
    str
        The question, without any chat template or image placeholder.

    Raises
    ------
    ValueError
        If the language is unknown; the message lists the options.

    Examples
    --------
    >>> question("en")
    'What type of disaster occurred in this image?'
    """
    return _QUESTIONS[Language(language)]


def answer(label: DisasterLabel | str, language: Language | str = Language.EN) -> str:
    """Return the training-data answer naming one disaster type.

    Parameters
    ----------
    label
        The disaster type (a `DisasterLabel` or its value; ``"flooding"`` is accepted).
    language
        ``"en"``, ``"ja"`` or ``"zh"``.

    Returns
    -------
    str
        The full answer sentence (English, Japanese) or the short form (Chinese).

    Raises
    ------
    ValueError
        If the label or language is unknown; the message lists the options.

    Examples
    --------
    >>> answer("flood")
    'A flooding disaster occurred in this image.'
    >>> answer("wind", "ja")
    'この画像では風災災害が発生しました。'
    >>> answer("fire", "zh")
    '火灾'
    """
    return _ANSWERS[Language(language)][DisasterLabel(label)]


def answer_forms(
    label: DisasterLabel | str, language: Language | str = Language.EN
) -> tuple[str, ...]:
    """Return the built-in answer forms of one disaster type: how the adapter may name it.

    These are the default verbalizer (`geovlm.labels.verbalizer.Verbalizer.default`) that a preset's
    ``answers:`` table overrides. The first form is `answer`'s training sentence.

    Parameters
    ----------
    label
        The disaster type (a `DisasterLabel` or its value; ``"flooding"`` is accepted).
    language
        ``"en"``, ``"ja"`` or ``"zh"``.

    Returns
    -------
    tuple of str
        Three forms (four for English "earthquake": "An" and xBD's mechanical "A").

    Raises
    ------
    ValueError
        If the label or language is unknown; the message lists the options.

    Examples
    --------
    >>> answer_forms("flood")
    ('A flooding disaster occurred in this image.', 'Flood disaster', 'Flooding')
    >>> answer_forms("fire", "ja")
    ('この画像では火災災害が発生しました。', '火災災害', '火災')
    """
    return _FORMS[Language(language)][DisasterLabel(label)]


def answers(language: Language | str = Language.EN) -> dict[DisasterLabel, str]:
    """Return every label's answer in one language, in `DisasterLabel` order.

    Parameters
    ----------
    language
        ``"en"``, ``"ja"`` or ``"zh"``.

    Returns
    -------
    dict of DisasterLabel to str
        A new dict, so callers may change it freely.

    Raises
    ------
    ValueError
        If the language is unknown; the message lists the options.

    Examples
    --------
    >>> list(answers("zh").values())
    ['火灾', '洪水', '风灾', '地震', '海啸', '火山']
    """
    return dict(_ANSWERS[Language(language)])


def parse_label(text: str) -> DisasterLabel | None:
    """Return the one disaster type a free-text answer names, in English, Japanese or Chinese.

    Matching is on words, not sentences: case, width (NFKC), punctuation and surrounding text
    do not matter, and synonyms count ("wildfire" is fire; "hurricane", "typhoon", 台風 are
    wind; "Flooding" and 浸水 are flood). Negation is not understood: "not a fire" names fire.

    Parameters
    ----------
    text
        A model's answer or a ground-truth sentence.

    Returns
    -------
    DisasterLabel or None
        The label, or None when the text names no disaster type or names two different ones
        (e.g. "a hurricane or an earthquake").

    Examples
    --------
    >>> parse_label("Fire disaster")
    <DisasterLabel.FIRE: 'fire'>
    >>> parse_label("この画像では風災災害が発生しました。")
    <DisasterLabel.WIND: 'wind'>
    >>> parse_label("no visible evidence of a disaster") is None
    True
    """
    normalized = unicodedata.normalize("NFKC", text).casefold()
    found = [label for label, pattern in _PATTERNS.items() if pattern.search(normalized)]
    return found[0] if len(found) == 1 else None
