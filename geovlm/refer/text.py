"""Words of referring expressions in English, Japanese and Chinese, and the facts each carries.

`render` turns a `geovlm.refer.phrases.Phrase` into text; `facts` lists the words a rewrite of that
text must keep (damage, direction and size words), so a model's rephrasing can be checked.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from geovlm.labels.damage import Damage
from geovlm.labels.prompts import Language
from geovlm.refer.phrases import Cell, Quarter

if TYPE_CHECKING:
    from geovlm.refer.phrases import Direction, Phrase, Rank

__all__ = ["facts", "keeps_facts", "render"]

_DAMAGE = {
    Language.EN: {Damage.NO_DAMAGE: "undamaged", Damage.MINOR_DAMAGE: "slightly damaged",
                  Damage.MAJOR_DAMAGE: "severely damaged", Damage.DESTROYED: "destroyed"},
    Language.JA: {Damage.NO_DAMAGE: "無傷の", Damage.MINOR_DAMAGE: "軽微な被害の",
                  Damage.MAJOR_DAMAGE: "大きな被害の", Damage.DESTROYED: "全壊した"},
    Language.ZH: {Damage.NO_DAMAGE: "未受损的", Damage.MINOR_DAMAGE: "轻微受损的",
                  Damage.MAJOR_DAMAGE: "严重受损的", Damage.DESTROYED: "被摧毁的"},
}
_NOUN = {Language.EN: ("building", "buildings"), Language.JA: ("建物", "建物"),
         Language.ZH: ("建筑", "建筑")}
#: Compass words by direction value, in each language.
_COMPASS = {
    Language.EN: {"north": "north", "north-east": "north-east", "east": "east",
                  "south-east": "south-east", "south": "south", "south-west": "south-west",
                  "west": "west", "north-west": "north-west"},
    Language.JA: {"north": "北", "north-east": "北東", "east": "東", "south-east": "南東",
                  "south": "南", "south-west": "南西", "west": "西", "north-west": "北西"},
    Language.ZH: {"north": "北", "north-east": "东北", "east": "东", "south-east": "东南",
                  "south": "南", "south-west": "西南", "west": "西", "north-west": "西北"},
}
_RANK = {
    Language.EN: {"north": "northernmost", "south": "southernmost", "east": "easternmost",
                  "west": "westernmost", "largest": "largest", "smallest": "smallest"},
    Language.JA: {"north": "最も北にある", "south": "最も南にある", "east": "最も東にある",
                  "west": "最も西にある", "largest": "最も大きい", "smallest": "最も小さい"},
    Language.ZH: {"north": "最北边的", "south": "最南边的", "east": "最东边的",
                  "west": "最西边的", "largest": "最大的", "smallest": "最小的"},
}
_COUNT = {Language.EN: {2: "two", 3: "three", 4: "four", 5: "five"},
          Language.JA: {2: "2棟", 3: "3棟", 4: "4棟", 5: "5棟"},
          Language.ZH: {2: "两栋", 3: "三栋", 4: "四栋", 5: "五栋"}}


#: The word that makes "the only ... building" unique, a fact of its own.
_ONLY = {Language.EN: "only", Language.JA: "唯一", Language.ZH: "唯一"}
#: The whole scene, named by a region phrase (``in the north-west part of the image``), a fact.
_IMAGE = {Language.EN: "image", Language.JA: "画像", Language.ZH: "图像"}
#: The central cell of a scene, which has no compass word.
_CENTRE = {Language.EN: "central", Language.JA: "中央", Language.ZH: "中"}
#: A quarter of a part of the scene (``the north-western quarter of the image``).
_QUARTER = {Language.EN: "quarter", Language.JA: "四半分", Language.ZH: "四分之一"}
#: A cell of a region, inside a region phrase's relation (``the north of that part``).
_OF_PART = {Language.EN: "{} of that part", Language.JA: "その部分の{}", Language.ZH: "该部分的{}"}


def _cell(cell: Cell, language: Language, in_part: bool = False) -> str:
    compass = _COMPASS[language].get(cell.value)
    if language is Language.EN:
        text = ("the centre" if compass is None else
                f"the {compass} corner" if "-" in compass else f"the {compass}")
    elif language is Language.JA:
        text = ("中央" if compass is None else
                f"{compass}の隅" if len(compass) == 2 else f"{compass}側")
    else:
        text = ("中央" if compass is None else
                f"{compass}角" if len(compass) == 2 else f"{compass}部")
    return _OF_PART[language].format(text) if in_part else text


def _piece_word(piece: Cell | Quarter, language: Language) -> str:
    """A part's compass word (or the centre's)."""
    value = piece.compass if isinstance(piece, Quarter) else piece.value
    return _COMPASS[language].get(value) or _CENTRE[language]


def _region(path: tuple[Cell | Quarter, ...], language: Language) -> str:
    """A part of the scene: ``the northern part of the north-western quarter of the image``."""
    image, quarter = _IMAGE[language], _QUARTER[language]
    if language is Language.EN:
        names = []
        for piece in reversed(path):
            word = _piece_word(piece, language)
            adjective = word if word == _CENTRE[language] else f"{word}ern"
            names.append(f"the {adjective} {quarter if isinstance(piece, Quarter) else 'part'}")
        return " of ".join([*names, f"the {image}"])
    words = [_piece_word(piece, language) + (quarter if isinstance(piece, Quarter) else "部")
             for piece in path]
    return image + "".join(f"の{w}" for w in words) if language is Language.JA else (
        image + "的".join(words))


def _place(phrase: Phrase, language: Language) -> str:
    """Where a region phrase looks: its part, or a cell of it (``the north of the ...``)."""
    region = _region(phrase.region, language)
    if phrase.cell is None or phrase.clustered:
        return region
    where = _cell(phrase.cell, language)
    return {Language.EN: f"{where} of {region}", Language.JA: f"{region}の{where}",
            Language.ZH: f"{region}的{where}"}[language]


def _located(phrase: Phrase, language: Language) -> str:
    """A region phrase without its place: what it singles out there."""
    if phrase.clustered:  # the cluster's cell stays with it: "grouped in the north of that part"
        return _render(replace(phrase, region=()), language, in_part=True)
    rest = replace(phrase, cell=None, region=())
    if phrase.cell is not None and rest.rank is None:
        noun = _noun_phrase(phrase.damage, language)
        return f"the {noun}" if language is Language.EN else noun
    return _render(rest, language, in_part=True)


def _noun_phrase(damage: Damage | None, language: Language, plural: bool = False) -> str:
    adjective = _DAMAGE[language].get(damage) if damage is not None else None
    noun = _NOUN[language][plural]
    if adjective is None:
        return noun
    return f"{adjective} {noun}" if language is Language.EN else f"{adjective}{noun}"


def _ranked(phrase: Phrase, rank: Rank, language: Language, in_part: bool = False) -> str:
    word = _RANK[language][rank.value]
    noun = _noun_phrase(phrase.damage, language)
    if phrase.group:
        count = _COUNT[language][phrase.group]
        plural = _noun_phrase(phrase.damage, language, plural=True)
        if phrase.clustered:
            where = _cell(phrase.cell, language, in_part) if phrase.cell is not None else None
            if language is Language.EN:
                place = f"in {where}" if where else "together"
                return f"the {word} of the {count} {plural} grouped {place}"
            if language is Language.JA:
                return f"{where or ''}に集まった{count}の{plural}のうち{word}もの".lstrip("に")
            return f"聚集在{where or '一起'}的{count}{plural}中{word}一栋"
        if language is Language.EN:
            return f"the {word} of the {count} {plural}"
        if language is Language.JA:
            return f"{count}の{plural}のうち{word}もの"
        return f"{count}{plural}中{word}一栋"
    if language is Language.EN:
        return f"the {word} {noun}"
    return f"{word}{noun}"


def render(phrase: Phrase, language: Language) -> str:
    """The phrase as text in one language.

    A phrase with a `Phrase.region` (a scene's expression) names the cell of the scene first.

    Parameters
    ----------
    phrase
        The structured expression.
    language
        The language.

    Returns
    -------
    str
        E.g. ``the largest destroyed building in the north-west corner``, or ``in the
        north-western part of the image, the easternmost destroyed building``.

    Examples
    --------
    >>> from geovlm.refer.phrases import Cell, Phrase, Rank
    >>> render(Phrase(Damage.DESTROYED, rank=Rank.EAST, region=(Cell.NW,)), Language.EN)
    'in the north-western part of the image, the easternmost destroyed building'
    >>> render(Phrase(Damage.DESTROYED, Cell.S, region=(Cell.C, Cell.N)), Language.ZH)
    '在图像中部的北部的南部，被摧毁的建筑'
    """
    return _render(phrase, language)


def _render(phrase: Phrase, language: Language, in_part: bool = False) -> str:
    """`render`, with cells named as cells of a region (``that part``) where `in_part`."""
    if phrase.region:
        where, rest = _place(phrase, language), _located(phrase, language)
        return {Language.EN: f"in {where}, {rest}", Language.JA: f"{where}で、{rest}",
                Language.ZH: f"在{where}，{rest}"}[language]
    noun = _noun_phrase(phrase.damage, language)
    if phrase.relation is not None:
        direction, anchor = phrase.relation
        compass = _COMPASS[language][direction.value]
        anchor_text = _anchor(anchor, language, in_part)
        if language is Language.EN:
            return f"the {noun} just {compass} of {anchor_text}"
        if language is Language.JA:
            return f"{anchor_text}のすぐ{compass}にある{noun}"
        return f"紧邻{anchor_text}{compass}侧的{noun}"
    if phrase.rank is not None:
        text = _ranked(phrase, phrase.rank, language, in_part)
    elif phrase.cell is None:
        only = _ONLY[language]
        text = {Language.EN: f"the {only} {noun}", Language.JA: f"{only}の{noun}",
                Language.ZH: f"{only}的{noun}"}[language]
    else:
        text = {Language.EN: f"the {noun}", Language.JA: noun, Language.ZH: noun}[language]
    if phrase.cell is None or phrase.clustered:
        return text
    where = _cell(phrase.cell, language, in_part)
    if language is Language.EN:
        return f"{text} in {where}"
    if language is Language.JA:
        return f"{where}にある{text}"
    return f"位于{where}的{text}"


def _anchor(phrase: Phrase, language: Language, in_part: bool) -> str:
    """An anchor's text inside a relation, its place (if it has a region) after it."""
    if not phrase.region:
        return _render(phrase, language, in_part)
    where, rest = _place(phrase, language), _located(phrase, language)
    return {Language.EN: f"{rest} in {where}", Language.JA: f"{where}の{rest}",
            Language.ZH: f"{where}的{rest}"}[language]


def _direction_word(direction: Direction | Cell, language: Language) -> str | None:
    return _COMPASS[language].get(direction.value)


def facts(phrase: Phrase, language: Language) -> tuple[str, ...]:
    """The words a rewrite of `render(phrase)` must keep: damage, directions, rank, counts.

    Parameters
    ----------
    phrase
        The structured expression.
    language
        The language of the text.

    Returns
    -------
    tuple of str
        Words, each of which must appear in a faithful rewrite.

    Examples
    --------
    >>> from geovlm.refer.phrases import Cell, Phrase, Rank
    >>> facts(Phrase(Damage.DESTROYED, Cell.NW, Rank.LARGEST), Language.EN)
    ('destroyed', 'north-west', 'largest')
    """
    found: list[str] = []
    if phrase.region:
        found.append(_IMAGE[language])
        found += [_piece_word(piece, language) for piece in phrase.region]
        if any(isinstance(piece, Quarter) for piece in phrase.region):
            found.append(_QUARTER[language])
    if phrase.damage is not None and phrase.damage in _DAMAGE[language]:
        found.append(_DAMAGE[language][phrase.damage].removesuffix("の"))
    if phrase.cell is not None and (word := _direction_word(phrase.cell, language)):
        found.append(word)
    if phrase.rank is not None:
        found.append(_RANK[language][phrase.rank.value])
    if phrase.group:
        found.append(_COUNT[language][phrase.group])
    if phrase.relation is None and phrase.cell is None and phrase.rank is None:
        found.append(_ONLY[language])
    if phrase.relation is not None:
        direction, anchor = phrase.relation
        found.append(_COMPASS[language][direction.value])
        found += [word for word in facts(anchor, language) if word not in found]
    return tuple(dict.fromkeys(found))


def _normalised(text: str) -> str:
    return re.sub(r"[\s\-_]+", "", text.casefold())


def keeps_facts(rewrite: str, phrase: Phrase, language: Language) -> bool:
    """Whether a rewrite keeps every fact word of the phrase (case, spaces, hyphens ignored).

    Examples
    --------
    >>> from geovlm.refer.phrases import Cell, Phrase
    >>> keeps_facts("The destroyed house at the Northwest corner", Phrase(Damage.DESTROYED,
    ...             Cell.NW), Language.EN)
    True
    >>> keeps_facts("a house", Phrase(Damage.DESTROYED), Language.EN)
    False
    """
    text = _normalised(rewrite)
    return all(_normalised(word) in text for word in facts(phrase, language))
