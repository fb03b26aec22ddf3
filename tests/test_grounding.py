"""Boxes from grounding answers: well-formed JSON and lists, and junk that never crashes."""

from __future__ import annotations

import json

from affine import Affine
from hypothesis import given
from hypothesis import strategies as st

from geovlm.refer.grounding import Box, Grounding, parse_boxes

_coord = st.integers(0, 1000)


@st.composite
def _boxes(draw: st.DrawFn) -> Box:
    x1, x2 = sorted(draw(st.lists(_coord, min_size=2, max_size=2, unique=True)))
    y1, y2 = sorted(draw(st.lists(_coord, min_size=2, max_size=2, unique=True)))
    return Box(x1, y1, x2, y2)


@given(st.lists(_boxes(), max_size=8, unique=True), st.booleans())
def test_well_formed_json_answers_give_every_box(boxes, fenced):
    answer = json.dumps([{"bbox_2d": [b.x1, b.y1, b.x2, b.y2], "label": "building"}
                         for b in boxes])
    if fenced:
        answer = f"```json\n{answer}\n```"
    assert parse_boxes(answer) == Grounding(tuple(boxes), 0)


@given(st.text(max_size=300))
def test_junk_never_raises(junk):
    found = parse_boxes(junk)
    assert found.skipped >= 0
    assert all(0 <= b.x1 < b.x2 <= 1000 and 0 <= b.y1 < b.y2 <= 1000 for b in found.boxes)


@given(st.lists(st.one_of(st.text(alphabet="[]{},.-0123456789 \"bbox_2d:", max_size=40),
                          _boxes().map(lambda b: f"[{b.x1}, {b.y1}, {b.x2}, {b.y2}]")),
                max_size=10))
def test_boxes_survive_among_bracket_junk(pieces):
    found = parse_boxes(" ".join(pieces))
    assert all(0 <= b.x1 < b.x2 <= 1000 and 0 <= b.y1 < b.y2 <= 1000 for b in found.boxes)


def test_malformed_lists_are_skipped_and_counted():
    answer = ('[{"bbox_2d": [10, 20, 110, 220]}, {"bbox_2d": [300, 300, 200, 400]},'
              ' {"bbox_2d": [0, 0, 1200, 50]}, {"bbox_2d": [1, 2, 3]}, [10, 20, 110, 220],'
              ' {"bbox_2d": [5.5, 6, 7.25, 8')  # cut off by the token limit
    assert parse_boxes(answer) == Grounding((Box(10, 20, 110, 220),), 3)


def test_box_polygon_follows_the_chip_transform():
    rotated = Affine(0, 1, 100, 1, 0, 50)  # rows run east, columns north
    polygon = Box(0, 0, 1000, 500).polygon(rotated, 20)
    assert polygon.bounds == (100.0, 50.0, 110.0, 70.0)
