"""The damage grades' answer forms per language, and the grades as a scored `LabelSet`.

A model asked `geovlm.labels.building_damage.building_question` is trained on
`geovlm.labels.building_damage.grade_answer` ("Major damage."), but may answer shorter: score
mode sums every form of a grade (`geovlm.labels.verbalizer.label_probabilities`), so each grade
has its training answer first and a few short forms, each naming that grade only::

    en  No damage. | No damage | Undamaged     Minor damage. | Minor damage | Minor
        Major damage. | Major damage | Major   Destroyed. | Destroyed
    ja  被害なし。 | 被害なし | 無被害          軽微な被害。 | 軽微な被害 | 軽微
        大きな被害。 | 大きな被害 | 大破         全壊。 | 全壊
    zh  无损坏。 | 无损坏 | 完好                轻微损坏。 | 轻微损坏 | 轻微
        严重损坏。 | 严重损坏 | 严重            完全摧毁。 | 完全摧毁 | 摧毁

A preset's ``damage_answers:`` table (language -> grade -> list of forms) replaces a grade's
forms as ``answers:`` does a disaster type's.
"""

from __future__ import annotations

from geovlm.enums import CheckedEnum
from geovlm.labels.building_damage import GRADES, grade_answer
from geovlm.labels.damage import Damage
from geovlm.labels.label_set import LabelSet
from geovlm.labels.prompts import Language

__all__ = ["DAMAGE_GRADES", "grade_forms", "parse_grade"]

_SHORT: dict[Language, dict[Damage, tuple[str, ...]]] = {
    Language.EN: {Damage.NO_DAMAGE: ("No damage", "Undamaged"),
                  Damage.MINOR_DAMAGE: ("Minor damage", "Minor"),
                  Damage.MAJOR_DAMAGE: ("Major damage", "Major"),
                  Damage.DESTROYED: ("Destroyed",)},
    Language.JA: {Damage.NO_DAMAGE: ("被害なし", "無被害"),
                  Damage.MINOR_DAMAGE: ("軽微な被害", "軽微"),
                  Damage.MAJOR_DAMAGE: ("大きな被害", "大破"),
                  Damage.DESTROYED: ("全壊",)},
    Language.ZH: {Damage.NO_DAMAGE: ("无损坏", "完好"),
                  Damage.MINOR_DAMAGE: ("轻微损坏", "轻微"),
                  Damage.MAJOR_DAMAGE: ("严重损坏", "严重"),
                  Damage.DESTROYED: ("完全摧毁", "摧毁")},
}


def grade_forms(grade: Damage | str, language: Language | str = Language.EN) -> tuple[str, ...]:
    """Return the built-in answer forms of one damage grade, its training answer first.

    Raises
    ------
    ValueError
        The grade is not one of `GRADES`, or the language unknown.

    Examples
    --------
    >>> grade_forms("minor-damage")
    ('Minor damage.', 'Minor damage', 'Minor')
    >>> grade_forms("destroyed", "zh")[0]
    '完全摧毁。'
    """
    language = Language(language)
    first = grade_answer(grade, language)
    return (first, *_SHORT[language][Damage(grade)])


def parse_grade(text: str) -> Damage | None:
    """Return the grade a free-text answer spells as xBD does (``major-damage``), else None.

    Examples
    --------
    >>> parse_grade("Major damage!")
    <Damage.MAJOR_DAMAGE: 'major-damage'>
    >>> parse_grade("un-classified") is None
    True
    """
    key = "-".join(text.strip(" .!?。").replace("_", " ").replace("-", " ").lower().split())
    try:
        grade = Damage(key)
    except ValueError:
        return None
    return grade if grade in GRADES else None


def _forms(label: CheckedEnum, language: Language) -> tuple[str, ...]:
    return grade_forms(Damage(label), language)


#: The four damage grades asked per building, least to most severe, with `grade_forms`.
DAMAGE_GRADES = LabelSet("damage_answers", "damage_calibration", GRADES, _forms, parse_grade)
