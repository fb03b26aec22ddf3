"""The words of the rules as structures: directions, grid cells, ranks, phrases and targets.

A `Phrase` is a referring expression before it has words (`geovlm.refer.text` renders it); a
`Target` is an object as the rules see it, placed in a `Frame` (a chip's, or a whole scene's).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import product

from geovlm.enums import CheckedEnum
from geovlm.labels.damage import Damage

__all__ = [
    "CELL_GRID", "QUARTER_GRID", "Cell", "Direction", "Frame", "Phrase", "Quarter", "Rank",
    "Reference", "Target",
]


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
    """A cell of the 3 x 3 grid over a frame (a chip, a scene), named in map directions."""

    NW = "north-west"
    N = "north"
    NE = "north-east"
    W = "west"
    C = "centre"
    E = "east"
    SW = "south-west"
    S = "south"
    SE = "south-east"


class Quarter(CheckedEnum):
    """A quarter of a frame (its 2 x 2 grid), for objects on the lines of its 3 x 3 grid.

    Values differ from `Cell`'s, so a region's quarter never equals its cell.
    """

    NW = "north-west quarter"
    NE = "north-east quarter"
    SW = "south-west quarter"
    SE = "south-east quarter"

    @property
    def compass(self) -> str:
        """The quarter's compass direction (``north-west``)."""
        return self.value.removesuffix(" quarter")


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
#: Quarters by (row, column), as `CELL_GRID`.
QUARTER_GRID = {(r, c): q for (r, c), q in zip(product(range(2), range(2)), Quarter, strict=True)}


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
    region
        The part of the whole scene that scopes the rest (``in the north-western part of the
        image, ...``; `geovlm.refer.scene`): a cell of the scene's 3 x 3 grid (or a quarter),
        then a cell (or quarter) of that part, and so on; every other part of the phrase then
        applies within it, in its frame. Empty in a chip's expressions.
    """

    damage: Damage | None = None
    cell: Cell | None = None
    rank: Rank | None = None
    group: int = 0
    clustered: bool = False
    relation: tuple[Direction, Phrase] | None = None
    region: tuple[Cell | Quarter, ...] = ()
    #: The hash, computed once: the rules look phrases up millions of times.
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.damage, self.cell, self.rank, self.group,
                                                self.clustered, self.relation, self.region)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def complexity(self) -> int:
        """How much the phrase says, for picking the simplest unique one (the region aside)."""
        if self.relation is not None:
            return 10 + self.relation[1].complexity
        return (self.cell is not None) + 2 * (self.rank is not None) + 3 * self.clustered

    @property
    def hops(self) -> int:
        """How many relations the phrase chains (0: none)."""
        return 0 if self.relation is None else 1 + self.relation[1].hops


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
    """An extent in map coordinates (a chip's or a scene's footprint's bounds), for the grid.

    Examples
    --------
    >>> Frame(0, 0, 30, 30).position(Target("a", 5, 25, 1.0))
    (0.16666666666666666, 0.16666666666666666)
    """

    min_x: float
    min_y: float
    max_x: float
    max_y: float

    @classmethod
    def around(cls, points: Iterable[tuple[float, float]]) -> Frame:
        """The extent of some points, e.g. a raster's corners in map coordinates.

        Examples
        --------
        >>> Frame.around([(3, 1), (0, 5), (2, 2)])
        Frame(min_x=0, min_y=1, max_x=3, max_y=5)
        """
        xs, ys = zip(*points, strict=True)
        return cls(min(xs), min(ys), max(xs), max(ys))

    def position(self, target: Target) -> tuple[float, float]:
        """The share of the way from west to east, and from north to south (0 to 1)."""
        east = (target.x - self.min_x) / (self.max_x - self.min_x)
        south = (self.max_y - target.y) / (self.max_y - self.min_y)
        return min(max(east, 0.0), 1.0), min(max(south, 0.0), 1.0)

    def part(self, piece: Cell | Quarter) -> Frame:
        """The extent of a cell of the frame's 3 x 3 grid, or of a quarter of it.

        Examples
        --------
        >>> Frame(0, 0, 30, 30).part(Cell.NW)
        Frame(min_x=0.0, min_y=20.0, max_x=10.0, max_y=30.0)
        >>> Frame(0, 0, 30, 30).part(Quarter.SE)
        Frame(min_x=15.0, min_y=0.0, max_x=30.0, max_y=15.0)
        """
        grid: dict[tuple[int, int], Cell | Quarter] = (
            dict(CELL_GRID) if isinstance(piece, Cell) else dict(QUARTER_GRID))
        side = 3 if isinstance(piece, Cell) else 2
        row, col = next(key for key, value in grid.items() if value is piece)
        width, height = (self.max_x - self.min_x) / side, (self.max_y - self.min_y) / side
        return Frame(self.min_x + col * width, self.max_y - (row + 1) * height,
                     self.min_x + (col + 1) * width, self.max_y - row * height)


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
