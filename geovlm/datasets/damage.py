"""The building-damage question: geovlm's own EN/JA/ZH wording, and the label of one chip.

xBD grades each building of a post-disaster image (``no-damage``, ``minor-damage``,
``major-damage``, ``destroyed``, ``un-classified``) but has no text. The question and answers
below are geovlm's own wording, not taken from any published training set: one question per
language, one answer sentence per grade, and "no buildings" for a chip without any::

    en  What is the most severe building damage in this image?   Minor damage.
    ja  この画像で最も深刻な建物の被害は何ですか?                 軽微な被害。
    zh  这张图片中最严重的建筑物损坏是什么?                         轻微损坏。

A chip's label is the worst grade among the graded buildings that lie mostly (more than half
their area) inside it; un-classified buildings are ignored (see `chip_damage`).
"""

from __future__ import annotations

from collections.abc import Iterable

from shapely.geometry import Polygon, box

from geovlm.enums import CheckedEnum
from geovlm.labels.prompts import Language

__all__ = ["DamageLevel", "chip_damage", "damage_answer", "damage_question"]

#: A building counts for a chip when more than this share of its area lies inside the chip.
MOSTLY_INSIDE = 0.5


class DamageLevel(CheckedEnum):
    """The answer to the damage question: xBD's grades, from least to most severe, or none.

    Examples
    --------
    >>> DamageLevel("Destroyed").severity
    4
    """

    NO_BUILDINGS = "no-buildings"
    NO_DAMAGE = "no-damage"
    MINOR_DAMAGE = "minor-damage"
    MAJOR_DAMAGE = "major-damage"
    DESTROYED = "destroyed"

    @property
    def severity(self) -> int:
        """Rank from 0 (no buildings) to 4 (destroyed)."""
        return list(DamageLevel).index(self)


_QUESTIONS = {
    Language.EN: "What is the most severe building damage in this image?",
    Language.JA: "この画像で最も深刻な建物の被害は何ですか?",
    Language.ZH: "这张图片中最严重的建筑物损坏是什么?",
}

_ANSWERS: dict[Language, dict[DamageLevel, str]] = {
    Language.EN: {
        DamageLevel.NO_BUILDINGS: "No buildings.",
        DamageLevel.NO_DAMAGE: "No damage.",
        DamageLevel.MINOR_DAMAGE: "Minor damage.",
        DamageLevel.MAJOR_DAMAGE: "Major damage.",
        DamageLevel.DESTROYED: "Destroyed.",
    },
    Language.JA: {
        DamageLevel.NO_BUILDINGS: "建物はありません。",
        DamageLevel.NO_DAMAGE: "被害なし。",
        DamageLevel.MINOR_DAMAGE: "軽微な被害。",
        DamageLevel.MAJOR_DAMAGE: "大きな被害。",
        DamageLevel.DESTROYED: "全壊。",
    },
    Language.ZH: {
        DamageLevel.NO_BUILDINGS: "没有建筑物。",
        DamageLevel.NO_DAMAGE: "无损坏。",
        DamageLevel.MINOR_DAMAGE: "轻微损坏。",
        DamageLevel.MAJOR_DAMAGE: "严重损坏。",
        DamageLevel.DESTROYED: "完全摧毁。",
    },
}


def damage_question(language: Language | str = Language.EN) -> str:
    """Return the damage question in one language (geovlm's wording).

    Parameters
    ----------
    language
        ``"en"``, ``"ja"`` or ``"zh"``.

    Returns
    -------
    str

    Examples
    --------
    >>> damage_question("en")
    'What is the most severe building damage in this image?'
    """
    return _QUESTIONS[Language(language)]


def damage_answer(level: DamageLevel | str, language: Language | str = Language.EN) -> str:
    """Return the answer naming one damage level (geovlm's wording).

    Parameters
    ----------
    level
        The level, e.g. ``"major-damage"``.
    language
        ``"en"``, ``"ja"`` or ``"zh"``.

    Returns
    -------
    str

    Examples
    --------
    >>> damage_answer("destroyed", "zh")
    '完全摧毁。'
    """
    return _ANSWERS[Language(language)][DamageLevel(level)]


def chip_damage(
    buildings: Iterable[tuple[Polygon, str | None]], bounds: tuple[float, float, float, float]
) -> DamageLevel | None:
    """Return the worst damage in one chip, or None when the chip cannot be labelled honestly.

    Parameters
    ----------
    buildings
        Each building's outline (in the chip's pixel space) and xBD subtype (``"no-damage"``
        ... ``"destroyed"``; ``"un-classified"`` or None are ignored as grades).
    bounds
        The chip as ``(xmin, ymin, xmax, ymax)`` in the same space.

    Returns
    -------
    DamageLevel or None
        The worst grade among graded buildings more than half inside the chip;
        `DamageLevel.NO_BUILDINGS` when no building touches the chip; None when buildings touch
        it but none graded lies mostly inside (cut by the edge, or un-classified), since neither
        a grade nor "no buildings" would be true.

    Examples
    --------
    >>> inside = Polygon([(1, 1), (3, 1), (3, 3), (1, 3)])
    >>> chip_damage([(inside, "minor-damage")], (0, 0, 4, 4)).value
    'minor-damage'
    >>> chip_damage([(inside, "minor-damage")], (10, 10, 14, 14)).value
    'no-buildings'
    """
    chip = box(*bounds)
    worst = DamageLevel.NO_BUILDINGS
    touched = False
    for outline, subtype in buildings:
        inside = outline.intersection(chip).area
        if inside <= 0:
            continue
        touched = True
        if subtype in (None, "un-classified") or inside <= MOSTLY_INSIDE * outline.area:
            continue
        worst = max(worst, DamageLevel(subtype), key=lambda level: level.severity)
    if touched and worst is DamageLevel.NO_BUILDINGS:
        return None
    return worst
