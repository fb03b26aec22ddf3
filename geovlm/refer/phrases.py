"""The words of the rules as structures: directions, grid cells, ranks, phrases and targets.

A `Phrase` is a referring expression before it has words (`geovlm.refer.text` renders it); a
`Target` is an object as the rules see it, placed in a chip's `Frame`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from geovlm.enums import CheckedEnum
from geovlm.labels.damage import Damage

__all__ = ["CELL_GRID", "Cell", "Direction", "Frame", "Phrase", "Rank", "Reference", "Target"]


class Direction(CheckedEnum):
    """A compass direction on the map (north: +y of the scene's CRS)."""

    N = "north"
    NE = "north-east"
    E = "east"
    SE = "south-east"
    S = "south"
    SW = "south-west"
    W = "west"
    NW = "north-west"


class Cell(CheckedEnum):
    """A cell of the 3 x 3 grid over a chip, named in map directions."""

    NW = "north-west"
    N = "north"
    NE = "north-east"
    W = "west"
    C = "centre"
    E = "east"
    SW = "south-west"
    S = "south"
    SE = "south-east"


class Rank(CheckedEnum):
    """A rank that singles out the extreme object of a scope."""

    NORTH = "north"
    SOUTH = "south"
    EAST = "east"
    WEST = "west"
    LARGEST = "largest"
    SMALLEST = "smallest"


#: Cells by (row, column), row 0 in the north, column 0 in the west.
CELL_GRID = {(r, c): cell for (r, c), cell in zip(product(range(3), range(3)), Cell, strict=True)}


@dataclass(frozen=True, slots=True)
class Phrase:
    """A structured referring expression; equal phrases say the same thing.

    Attributes
    ----------
    damage
        The damage grade named (and the scope's filter), or None for any building.
    cell
        The grid cell it lies in, or None.
    rank
        The rank within the scope (damage and cell), or None.
    group
        The scope's size when named (2 to 5), else 0.
    clustered
        The scope is a cluster of `group` objects (with `cell` the cell of its centre),
        rather than every object of the damage grade and cell.
    relation
        A compass direction and the anchor's phrase: the scope's nearest object that way.
    """

    damage: Damage | None = None
    cell: Cell | None = None
    rank: Rank | None = None
    group: int = 0
    clustered: bool = False
    relation: tuple[Direction, Phrase] | None = None

    @property
    def complexity(self) -> int:
        """How much the phrase says, for picking the simplest unique one."""
        if self.relation is not None:
            return 10 + self.relation[1].complexity
        return (self.cell is not None) + 2 * (self.rank is not None) + 3 * self.clustered


@dataclass(frozen=True, slots=True)
class Target:
    """An object as the rules see it: an id, its centroid in map coordinates, area and damage."""

    object_id: str
    x: float
    y: float
    area: float
    damage: Damage | None = None


@dataclass(frozen=True, slots=True)
class Frame:
    """The chip's extent in map coordinates (its footprint's bounds), where the grid is laid.

    Examples
    --------
    >>> Frame(0, 0, 30, 30).position(Target("a", 5, 25, 1.0))
    (0.16666666666666666, 0.16666666666666666)
    """

    min_x: float
    min_y: float
    max_x: float
    max_y: float

    def position(self, target: Target) -> tuple[float, float]:
        """The share of the way from west to east, and from north to south (0 to 1)."""
        east = (target.x - self.min_x) / (self.max_x - self.min_x)
        south = (self.max_y - target.y) / (self.max_y - self.min_y)
        return min(max(east, 0.0), 1.0), min(max(south, 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class Reference:
    """The expression chosen for one object.

    Attributes
    ----------
    object_id
        The object.
    phrase
        The unique phrase, or the object's simplest firm one when `ambiguous`.
    ambiguous
        No phrase denotes this object alone.
    """

    object_id: str
    phrase: Phrase
    ambiguous: bool
