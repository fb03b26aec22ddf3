"""Read boxes out of a vision-language model's grounding answer, and place them on the map.

Qwen3-VL answers a grounding prompt with boxes in coordinates scaled to 0..1000 over the image,
usually as JSON (``[{"bbox_2d": [x1, y1, x2, y2], "label": "building"}, ...]``), sometimes in a
code fence, sometimes as bare ``[x1, y1, x2, y2]`` lists or cut short by the token limit. The
parser takes every four-number list it can find; a list that is not a box (out of range, empty,
too few numbers) is skipped and counted, and no answer, however malformed, raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from affine import Affine
from shapely.geometry import Polygon

from geovlm.labels.prompts import Language

__all__ = ["GROUNDING_SCALE", "Box", "Grounding", "grounding_prompt", "parse_boxes"]

#: Qwen-VL's box coordinates run from 0 to this over the image's width and height.
GROUNDING_SCALE = 1000.0
_NUMBER = r"-?\d+(?:\.\d+)?"
#: A bracketed list of numbers (what a box should be); its count is checked after matching.
_LIST = re.compile(rf"\[\s*((?:{_NUMBER}\s*,\s*)*{_NUMBER})\s*\]")
_PROMPTS = {
    Language.EN: "Locate every building in the image. Answer in JSON: a list of"
                 ' {"bbox_2d": [x1, y1, x2, y2], "label": "building"}.',
    Language.JA: "画像内のすべての建物の位置を特定してください。JSONで答えてください:"
                 ' {"bbox_2d": [x1, y1, x2, y2], "label": "building"} のリスト。',
    Language.ZH: "找出图像中的每一栋建筑。用JSON回答:"
                 ' {"bbox_2d": [x1, y1, x2, y2], "label": "building"} 的列表。',
}


def grounding_prompt(language: Language) -> str:
    """The prompt asking for every building's box, in one language."""
    return _PROMPTS[language]


@dataclass(frozen=True, slots=True)
class Box:
    """A box in 0..1000 coordinates of the image (x to the right, y down)."""

    x1: float
    y1: float
    x2: float
    y2: float

    def polygon(self, transform: Affine, size: int) -> Polygon:
        """The box on the map, through the image's affine transform (``size`` pixels a side).

        Examples
        --------
        >>> Box(0, 0, 500, 1000).polygon(Affine(2, 0, 100, 0, -2, 50), 10).bounds
        (100.0, 30.0, 110.0, 50.0)
        """
        scale = size / GROUNDING_SCALE
        corners = [(self.x1, self.y1), (self.x2, self.y1), (self.x2, self.y2), (self.x1, self.y2)]
        return Polygon([transform @ (x * scale, y * scale) for x, y in corners])


@dataclass(frozen=True, slots=True)
class Grounding:
    """The boxes read from one answer and how many lists were skipped as no box."""

    boxes: tuple[Box, ...]
    skipped: int


def parse_boxes(text: str) -> Grounding:
    """Every well-formed box in a grounding answer, skipping (and counting) malformed ones.

    A box is four numbers in 0..1000 with ``x1 < x2`` and ``y1 < y2``; repeated boxes count
    once.

    Parameters
    ----------
    text
        The model's answer.

    Returns
    -------
    Grounding
        The boxes in order of appearance and the number of lists skipped.

    Examples
    --------
    >>> parse_boxes('[{"bbox_2d": [10, 20, 110, 220], "label": "building"}, [5, 5, 1]]')
    Grounding(boxes=(Box(x1=10.0, y1=20.0, x2=110.0, y2=220.0),), skipped=1)
    """
    boxes: list[Box] = []
    skipped = 0
    for match in _LIST.finditer(text):
        values = [float(part) for part in match.group(1).split(",")]
        box = Box(*values) if len(values) == 4 else None
        if (
            box is None
            or not all(0.0 <= v <= GROUNDING_SCALE for v in values)
            or not (box.x1 < box.x2 and box.y1 < box.y2)
        ):
            skipped += 1
        elif box not in boxes:
            boxes.append(box)
    return Grounding(tuple(boxes), skipped)
