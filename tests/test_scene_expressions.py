"""Scene-context expressions: unique among all of a scene's objects, read literally."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geovlm.labels.damage import Damage
from geovlm.labels.prompts import Language
from geovlm.refer import scene as scene_rules
from geovlm.refer.phrases import Cell, Frame, Phrase, Quarter, Rank, Target
from geovlm.refer.rules import refer_chip
from geovlm.refer.scene import refer_scene_objects
from geovlm.refer.text import facts, keeps_facts, render
from tests.test_expressions import _cell, denote, nearest

SCENE = Frame(0.0, 0.0, 300.0, 300.0)
_QUARTERS = [[Quarter.NW, Quarter.NE], [Quarter.SW, Quarter.SE]]


def _piece(frame: Frame, target: Target, kind: type) -> Cell | Quarter:
    if kind is Cell:
        return _cell(target, frame)
    east, south = frame.position(target)
    return _QUARTERS[min(int(south * 2), 1)][min(int(east * 2), 1)]


def _in_part(phrase: Phrase, scope: list[int], targets: list[Target], frame: Frame,
             wide: bool) -> set[int]:
    """A region phrase's rest among its part's objects; `wide`: relations among all objects."""
    if wide and phrase.relation is not None:
        direction, anchor_phrase = phrase.relation
        found = _in_part(anchor_phrase, scope, targets, frame, wide)
        assert len(found) == 1, anchor_phrase
        candidates = [i for i, t in enumerate(targets) if phrase.damage in (None, t.damage)]
        return nearest(targets[found.pop()], direction, candidates, targets)
    return {scope[j] for j in denote(phrase, [targets[i] for i in scope], frame)}


def denote_scene(phrase: Phrase, targets: list[Target], wide: bool = False) -> set[int]:
    """The objects a scene phrase is true of: exact parts, then the rest read within them."""
    if not phrase.region:
        return denote(phrase, targets, SCENE,
                      anchors=lambda anchor: denote_scene(anchor, targets, wide))
    frame, scope = SCENE, list(range(len(targets)))
    for piece in phrase.region:
        scope = [i for i in scope if _piece(frame, targets[i], type(piece)) is piece]
        frame = frame.part(piece)
    return _in_part(replace(phrase, region=()), scope, targets, frame, wide)


_targets = st.lists(
    st.tuples(st.floats(0.5, 299.5), st.floats(0.5, 299.5), st.floats(1.0, 60.0),
              st.sampled_from([None, Damage.NO_DAMAGE, Damage.DESTROYED,
                               Damage.UN_CLASSIFIED])),
    min_size=1, max_size=60,
).map(lambda rows: [Target(str(i), *row) for i, row in enumerate(rows)])


@settings(max_examples=60, deadline=None)
@given(_targets, st.sampled_from([100, 6]))
def test_every_unambiguous_scene_expression_denotes_its_object_alone(targets, part_objects):
    # Parts of more than 6 objects split again: deep regions and quarters with few objects.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scene_rules, "PART_OBJECTS", part_objects)
        references = refer_scene_objects(targets, SCENE)
        assert refer_scene_objects(targets, SCENE) == references  # deterministic
    assert [r.object_id for r in references] == [t.object_id for t in targets]
    for index, reference in enumerate(references):
        if reference.ambiguous:
            assert reference.phrase.region  # placed in a part of the scene all the same
            continue
        text = render(reference.phrase, Language.EN)
        assert denote_scene(reference.phrase, targets) == {index}, text
        # Relations within a part read the same across the whole scene.
        assert denote_scene(reference.phrase, targets, wide=True) == {index}, text
    texts = [render(r.phrase, Language.EN) for r in references if not r.ambiguous]
    assert len(set(texts)) == len(texts)


@given(_targets, st.sampled_from(list(Language)))
def test_every_scene_expression_renders_with_its_facts(targets, language):
    for reference in refer_scene_objects(targets, SCENE):
        text = render(reference.phrase, language)
        assert text and keeps_facts(text, reference.phrase, language)


def test_equal_chip_texts_get_distinct_scene_texts():
    # Two chips side by side, the west and the east half of the scene, alike.
    left = [Target("a1", 20, 250, 5.0, Damage.DESTROYED),
            Target("a2", 40, 240, 5.0, Damage.DESTROYED), Target("a3", 75, 60, 5.0)]
    right = [Target(f"b{t.object_id[1]}", t.x + 150, t.y, t.area, t.damage) for t in left]
    chips = (refer_chip(left, Frame(0, 0, 150, 300)) + refer_chip(right, Frame(150, 0, 300, 300)))
    chip_texts = [render(r.phrase, Language.EN) for r in chips]
    assert chip_texts[:3] == chip_texts[3:]  # each text twice on the map
    assert chip_texts[1] == "the easternmost destroyed building"
    references = refer_scene_objects([*left, *right], SCENE)
    texts = [render(r.phrase, Language.EN) for r in references]
    assert not any(r.ambiguous for r in references)
    assert texts[1] == ("in the centre of the north-western part of the image,"
                        " the destroyed building")
    assert texts[4] == "in the northern part of the image, the easternmost destroyed building"
    assert len(set(texts)) == 6


def test_an_object_on_a_cell_line_uses_no_cell_and_blocks_both():
    # a is clearly in the north-west; b sits on the line between the north-west and the north.
    a, b = Target("a", 30, 270, 5.0), Target("b", 100.5, 270, 5.0)
    far = Target("c", 270, 30, 5.0)
    refs = {r.object_id: r for r in refer_scene_objects([a, b, far], SCENE)}
    assert refs["a"].phrase.region == (Cell.NW,) and not refs["a"].ambiguous
    # Not "in the north-western part of the image, the only building": it may fit b.
    assert render(refs["a"].phrase, Language.EN) == (
        "in the north-west corner of the north-western part of the image, the building")
    assert Cell.NW not in refs["b"].phrase.region and Cell.N not in refs["b"].phrase.region
    assert refs["b"].phrase.region == (Quarter.NW,) and not refs["b"].ambiguous
    assert render(refs["b"].phrase, Language.EN) == (
        "in the north-western quarter of the image, the easternmost building")


def test_twins_are_ambiguous_and_placed():
    twins = [Target("a", 50, 250, 5.0, Damage.DESTROYED), Target("b", 50.5, 250, 5.0,
             Damage.DESTROYED)]
    references = refer_scene_objects(twins, SCENE)
    assert all(r.ambiguous for r in references)
    assert render(references[0].phrase, Language.EN) == (
        "in the centre of the north-western part of the image, the destroyed building")


def test_region_words_in_three_languages_and_their_facts():
    phrase = Phrase(Damage.DESTROYED, Cell.S, Rank.EAST, region=(Quarter.NE, Cell.C))
    assert render(phrase, Language.EN) == ("in the south of the central part of the"
                                           " north-eastern quarter of the image, the easternmost"
                                           " destroyed building")
    assert render(phrase, Language.JA) == (
        "画像の北東四半分の中央部の南側で、最も東にある全壊した建物")
    assert render(phrase, Language.ZH) == "在图像东北四分之一的中部的南部，最东边的被摧毁的建筑"
    assert facts(phrase, Language.EN) == ("image", "north-east", "central", "quarter",
                                          "destroyed", "south", "easternmost")
    assert not keeps_facts("the easternmost destroyed building in the south", phrase, Language.EN)
