"""The per-building damage question: the four grades, asked with pre and post crops or post alone.

`geovlm damage`, `dataset from-xbd --tasks building-damage`, training and evaluation all ask
this question, so its wording lives once, here. The model sees a square crop centred on one
building (the same crop rule everywhere: `geovlm.sources.crops.crop_bounds`), after the
disaster and, when a pre-disaster scene is given, before it, the pre crop first::

    en (pre+post)  The first image shows this place before the disaster, the second after it.
                   What is the damage grade of the building in the centre?
    en (post)      What is the damage grade of the building in the centre of this image?

and answers with one of xBD's four grades in geovlm's own words (``un-classified`` is no
answer: such buildings are left out of training and evaluation)::

    en  No damage.   Minor damage.   Major damage.   Destroyed.
    ja  被害なし。     軽微な被害。      大きな被害。      全壊。
    zh  无损坏。       轻微损坏。        严重损坏。        完全摧毁。
"""

from __future__ import annotations

from geovlm.labels.damage import Damage
from geovlm.labels.prompts import Language

__all__ = ["GRADES", "building_question", "grade_answer"]

#: The grades a building can be given, least to most severe (xView2's 1-4).
GRADES: tuple[Damage, ...] = (
    Damage.NO_DAMAGE, Damage.MINOR_DAMAGE, Damage.MAJOR_DAMAGE, Damage.DESTROYED,
)

_PRE_AND_POST = {
    Language.EN: "The first image shows this place before the disaster, the second after it."
                 " What is the damage grade of the building in the centre?",
    Language.JA: "1枚目は災害前、2枚目は災害後のこの場所の画像です。"
                 "中央の建物の被害の程度は何ですか?",
    Language.ZH: "第一张图片是灾害前的这个地方,第二张是灾害后。中央建筑物的损坏程度是什么?",
}

_POST_ONLY = {
    Language.EN: "What is the damage grade of the building in the centre of this image?",
    Language.JA: "この画像の中央の建物の被害の程度は何ですか?",
    Language.ZH: "这张图片中央建筑物的损坏程度是什么?",
}

_ANSWERS: dict[Language, dict[Damage, str]] = {
    Language.EN: {Damage.NO_DAMAGE: "No damage.", Damage.MINOR_DAMAGE: "Minor damage.",
                  Damage.MAJOR_DAMAGE: "Major damage.", Damage.DESTROYED: "Destroyed."},
    Language.JA: {Damage.NO_DAMAGE: "被害なし。", Damage.MINOR_DAMAGE: "軽微な被害。",
                  Damage.MAJOR_DAMAGE: "大きな被害。", Damage.DESTROYED: "全壊。"},
    Language.ZH: {Damage.NO_DAMAGE: "无损坏。", Damage.MINOR_DAMAGE: "轻微损坏。",
                  Damage.MAJOR_DAMAGE: "严重损坏。", Damage.DESTROYED: "完全摧毁。"},
}


def building_question(language: Language | str = Language.EN, *, with_pre: bool = True) -> str:
    """Return the question about the building in the centre of the crop(s).

    Parameters
    ----------
    language
        ``"en"``, ``"ja"`` or ``"zh"``.
    with_pre
        True when the prompt holds two images, the pre-disaster crop first.

    Examples
    --------
    >>> building_question("en", with_pre=False)
    'What is the damage grade of the building in the centre of this image?'
    """
    return (_PRE_AND_POST if with_pre else _POST_ONLY)[Language(language)]


def grade_answer(grade: Damage | str, language: Language | str = Language.EN) -> str:
    """Return the answer naming one grade (the training target, and its first answer form).

    Raises
    ------
    ValueError
        The grade is not one of `GRADES` (``un-classified`` has no answer).

    Examples
    --------
    >>> grade_answer("major-damage", "ja")
    '大きな被害。'
    """
    answers = _ANSWERS[Language(language)]
    grade = Damage(grade)
    if grade not in answers:
        raise ValueError(f"{grade.value} is not a damage grade; use one of"
                         f" {', '.join(g.value for g in GRADES)}")
    return answers[grade]
