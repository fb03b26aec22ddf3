"""Rule-based referring expressions: truth and uniqueness against a strict oracle, words."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geovlm.labels.damage import Damage
from geovlm.labels.prompts import Language
from geovlm.refer.phrases import Cell, Direction, Frame, Phrase, Rank, Target
from geovlm.refer.rules import CLUSTER_GAP, refer_chip
from geovlm.refer.text import facts, keeps_facts, render

FRAME = Frame(0.0, 0.0, 100.0, 100.0)
_CELL_GRID = [[Cell.NW, Cell.N, Cell.NE], [Cell.W, Cell.C, Cell.E], [Cell.SW, Cell.S, Cell.SE]]


def _cell(target: Target, frame: Frame = FRAME) -> Cell:
    east, south = frame.position(target)
    return _CELL_GRID[min(int(south * 3), 2)][min(int(east * 3), 2)]


def _value(target: Target, rank: Rank, frame: Frame) -> float:
    east, south = frame.position(target)
    return {Rank.NORTH: -south, Rank.SOUTH: south, Rank.EAST: east, Rank.WEST: -east,
            Rank.LARGEST: target.area, Rank.SMALLEST: -target.area}[rank]


def _leaders(members: list[int], targets: list[Target], rank: Rank, frame: Frame) -> set[int]:
    best = max(_value(targets[i], rank, frame) for i in members)
    return {i for i in members if _value(targets[i], rank, frame) == best}


def _clusters(members: list[int], targets: list[Target], frame: Frame) -> list[list[int]]:
    left, found = set(members), []
    while left:
        todo, group = [left.pop()], []
        while todo:
            i = todo.pop()
            group.append(i)
            near = {j for j in left if math.dist(frame.position(targets[i]),
                                                 frame.position(targets[j])) < CLUSTER_GAP}
            left -= near
            todo += near
        found.append(group)
    return found


def nearest(anchor: Target, direction: Direction, scope: list[int],
            targets: list[Target]) -> set[int]:
    """The objects of `scope` nearest to `anchor` in `direction`'s sector (exact sectors).

    An object on the anchor's very centre lies in no direction of it.
    """
    directions = list(Direction)
    inside = [
        i for i in scope if (targets[i].x, targets[i].y) != (anchor.x, anchor.y)
        and directions[round(math.degrees(math.atan2(targets[i].x - anchor.x,
                                                     targets[i].y - anchor.y)) % 360 / 45) % 8]
        is direction
    ]
    if not inside:
        return set()
    best = min(math.dist((targets[i].x, targets[i].y), (anchor.x, anchor.y)) for i in inside)
    return {i for i in inside
            if math.dist((targets[i].x, targets[i].y), (anchor.x, anchor.y)) == best}


def denote(phrase: Phrase, targets: list[Target], frame: Frame = FRAME,
           anchors: Callable[[Phrase], set[int]] | None = None) -> set[int]:
    """The objects a phrase is true of, read literally: exact cells, sectors and leaders.

    `anchors` reads a relation's anchor phrase (default: the same way, in the same frame).
    """
    scope = [i for i, t in enumerate(targets) if phrase.damage in (None, t.damage)]
    if phrase.relation is not None:
        direction, anchor_phrase = phrase.relation
        found = (anchors or (lambda p: denote(p, targets, frame)))(anchor_phrase)
        assert len(found) == 1, anchor_phrase
        return nearest(targets[found.pop()], direction, scope, targets)
    if phrase.clustered:
        assert phrase.rank is not None
        groups = [g for g in _clusters(scope, targets, frame) if len(g) == phrase.group]
        if phrase.cell is not None:
            groups = [g for g in groups if _cell(Target(
                "c", sum(targets[i].x for i in g) / len(g), sum(targets[i].y for i in g) / len(g),
                1.0), frame) is phrase.cell]
        return set().union(*(_leaders(g, targets, phrase.rank, frame) for g in groups))
    if phrase.cell is not None:
        scope = [i for i in scope if _cell(targets[i], frame) is phrase.cell]
    if phrase.group:
        assert len(scope) == phrase.group
    if phrase.rank is not None:
        return _leaders(scope, targets, phrase.rank, frame) if scope else set()
    return set(scope)


_targets = st.lists(
    st.tuples(st.floats(0.5, 99.5), st.floats(0.5, 99.5), st.floats(1.0, 60.0),
              st.sampled_from([None, Damage.NO_DAMAGE, Damage.DESTROYED,
                               Damage.UN_CLASSIFIED])),
    min_size=1, max_size=30,
).map(lambda rows: [Target(str(i), *row) for i, row in enumerate(rows)])


@given(_targets)
def test_every_unambiguous_expression_denotes_its_object_alone(targets):
    references = refer_chip(targets, FRAME)
    assert [r.object_id for r in references] == [t.object_id for t in targets]
    for index, reference in enumerate(references):
        if not reference.ambiguous:
            assert denote(reference.phrase, targets) == {index}, render(reference.phrase,
                                                                        Language.EN)
    assert refer_chip(targets, FRAME) == references  # deterministic


@given(_targets, st.sampled_from(list(Language)))
def test_every_expression_renders_with_its_facts(targets, language):
    for reference in refer_chip(targets, FRAME):
        text = render(reference.phrase, language)
        assert text and keeps_facts(text, reference.phrase, language)


def test_one_object_is_the_only_building_and_twins_are_ambiguous():
    [alone] = refer_chip([Target("a", 50, 50, 5.0, Damage.DESTROYED)], FRAME)
    assert render(alone.phrase, Language.EN) == "the only destroyed building"
    twins = refer_chip([Target("a", 50, 50, 5.0), Target("b", 50.5, 50, 5.0)], FRAME)
    assert twins[0].ambiguous and twins[1].ambiguous


def test_a_borderline_object_blocks_both_cells():
    # a lies clearly in the north-west; b sits on the line between north-west and north.
    a, b = Target("a", 10, 90, 5.0), Target("b", 33.5, 90, 5.0)
    far = Target("c", 90, 10, 5.0)
    refs = {r.object_id: r for r in refer_chip([a, b, far], FRAME)}
    assert refs["a"].phrase.cell is not Cell.NW  # "in the north-west" would also fit b
    assert not refs["a"].ambiguous and refs["a"].phrase.rank is Rank.WEST
    assert refs["b"].phrase.cell is None and not refs["b"].ambiguous


def test_extremes_and_sizes_only_when_clearly_ahead():
    close = [Target("a", 20, 50.5, 5.0), Target("b", 80, 50.0, 5.2), Target("c", 50, 20, 5.1)]
    phrases = [r.phrase for r in refer_chip(close, FRAME)]
    assert all(p.rank not in (Rank.NORTH, Rank.LARGEST) for p in phrases[:2])
    big = [Target("a", 45, 50, 30.0), Target("b", 55, 50, 5.0), Target("c", 50, 47, 5.0)]
    [first, *_] = refer_chip(big, FRAME)
    assert first.phrase == Phrase(rank=Rank.LARGEST, group=3)
    assert render(first.phrase, Language.EN) == "the largest of the three buildings"


def test_text_in_three_languages_and_the_fact_check():
    phrase = Phrase(Damage.DESTROYED, Cell.NW, Rank.LARGEST)
    assert render(phrase, Language.EN) == "the largest destroyed building in the north-west corner"
    assert render(phrase, Language.JA) == "北西の隅にある最も大きい全壊した建物"
    assert render(phrase, Language.ZH) == "位于西北角的最大的被摧毁的建筑"
    assert facts(phrase, Language.ZH) == ("被摧毁的", "西北", "最大的")
    assert keeps_facts("The biggest ruined house, up in the NW", phrase, Language.EN) is False
    assert keeps_facts("North west corner: the largest destroyed house", phrase, Language.EN)
    related = Phrase(relation=(Direction.SE, Phrase(Damage.NO_DAMAGE)))
    assert render(related, Language.EN) == (
        "the building just south-east of the only undamaged building")
    assert facts(related, Language.EN) == ("south-east", "undamaged", "only")


@pytest.mark.parametrize("language", list(Language))
def test_clusters_name_their_size(language):
    row = [Target(str(i), 70 + 2.5 * i, 67, 1.0, Damage.DESTROYED) for i in range(4)]
    others = [Target("x", 10, 10, 9.0, Damage.DESTROYED), Target("y", 20, 90, 2.0)]
    refs = refer_chip([*row, *others], FRAME)
    assert not any(r.ambiguous for r in refs)
    texts = [render(r.phrase, language) for r in refs[:4]]
    assert len(set(texts)) == 4
