"""What the chip and scene rules share: whom phrases denote, ranks, sectors, relations, clusters.

Every phrase of every object is generated in one of two roles: *firm* where the object certainly
fits it, *borderline* where it may (in a band along a grid line or a sector's edge, a runner-up
not clearly behind, an object that may lie outside the scope). A phrase denotes every object it
is generated for in either role; an object may use a phrase only where it is firm and the
phrase denotes no other object (`Denotations.unique`). Positions are shares of a `Frame`, so the
margins below scale with whatever frame the rules describe: a chip, or a cell of a scene.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from geovlm.labels.damage import Damage
from geovlm.refer.phrases import Direction, Frame, Phrase, Rank, Target

__all__ = [
    "BAND",
    "CLUSTER_GAP",
    "EXTREME_MARGIN",
    "NEAREST_RATIO",
    "SECTOR_BAND",
    "SIZE_RATIO",
    "Denotations",
    "Nearby",
    "add_ranks",
    "add_relations",
    "clusters",
    "damage_mask",
    "grid_masks",
    "named_damages",
    "positions",
    "rank_values",
    "simplest",
]

#: Half-width of the borderline band around the 3 x 3 grid lines, as a share of the frame.
BAND = 0.03
#: How far (share of the frame) the extreme object in a direction must lead the runner-up.
EXTREME_MARGIN = 0.02
#: How many times larger (smaller) than the runner-up the largest (smallest) object must be.
SIZE_RATIO = 1.25
#: Half-width in degrees of the borderline band around the 8 compass sectors' edges.
SECTOR_BAND = 5.0
#: A second object this many times as far from the anchor as the nearest is not clearly behind.
NEAREST_RATIO = 1.25
#: Objects closer than this (share of the frame) join one cluster; clusters of 2 to 5 are
#: scopes of their own (``the westernmost of the four destroyed buildings grouped in ...``).
CLUSTER_GAP = 0.05
#: Scopes of this many objects name their size (``the largest of the three ...``).
_GROUP_SIZES = (3, 4, 5)
_CLUSTER_SIZES = (2, 3, 4, 5)
#: The lead each rank needs, in `Rank` order (shares for directions, log areas for sizes).
_MARGINS = np.array([EXTREME_MARGIN if rank not in (Rank.LARGEST, Rank.SMALLEST)
                     else math.log(SIZE_RATIO) for rank in Rank])
#: Up to this many positions, clusters compare every pair; beyond, a k-d tree finds the pairs.
_PAIRWISE = 200

#: For an anchor, the objects that may be its nearest in some direction (indexes in ascending
#: order) and the distance up to which they are all the objects there are (``inf``: all).
Nearby = Callable[[int], tuple[np.ndarray, float]]


@dataclass
class Denotations:
    """Per phrase, whether it denotes one object alone, and firmly.

    A builder the rules fill in (`add`, `add_all`); `unique` reads it.

    Examples
    --------
    >>> found = Denotations()
    >>> found.add(Phrase(Damage.DESTROYED), 0, firm=True)
    >>> found.add(Phrase(), 0, firm=True)
    >>> found.add(Phrase(), 1, firm=False)
    >>> dict(found.unique())
    {0: [Phrase(damage=<Damage.DESTROYED: 'destroyed'>, cell=None, rank=None, group=0, \
clustered=False, relation=None, region=())]}
    """

    #: Per phrase: 0 once it denotes two objects or more, else its object's index + 1,
    #: negated while the object fits it only borderline.
    seen: dict[Phrase, int] = field(default_factory=dict)

    def add(self, phrase: Phrase, index: int, firm: bool) -> None:
        """Record that `phrase` may denote object `index` (certainly, where `firm`)."""
        code = index + 1 if firm else -(index + 1)
        old = self.seen.get(phrase)
        if old is None:
            self.seen[phrase] = code
        elif old and abs(old) != index + 1:
            self.seen[phrase] = 0
        elif firm and old < 0:
            self.seen[phrase] = code

    def add_all(self, phrase: Phrase, indexes: np.ndarray, firm: np.ndarray) -> None:
        """`add` for distinct objects at once (firm where `firm`)."""
        if len(indexes) > 1:
            self.seen[phrase] = 0
        elif len(indexes):
            self.add(phrase, int(indexes[0]), bool(firm[0]))

    def unique(self) -> dict[int, list[Phrase]]:
        """Per object, the phrases it may use: firm for it and denoting nothing else."""
        found: dict[int, list[Phrase]] = defaultdict(list)
        for phrase, code in self.seen.items():
            if code > 0:
                found[code - 1].append(phrase)
        return found


def positions(targets: Sequence[Target], frame: Frame) -> np.ndarray:
    """Each target's `Frame.position`: shares east and south, (n, 2)."""
    points = np.array([(t.x, t.y) for t in targets], dtype=float).reshape(-1, 2)
    east = (points[:, 0] - frame.min_x) / (frame.max_x - frame.min_x)
    south = (frame.max_y - points[:, 1]) / (frame.max_y - frame.min_y)
    return np.clip(np.column_stack([east, south]), 0.0, 1.0)


def grid_masks(shares: np.ndarray, side: int) -> np.ndarray:
    """Whether each position may lie in each cell of a side x side grid, within `BAND` of a line.

    Returns an (n, side * side) array, cells row by row from the north-west (`CELL_GRID`'s order
    for 3, `geovlm.refer.phrases.QUARTER_GRID`'s for 2).

    Examples
    --------
    >>> grid_masks(np.array([[0.1, 0.34]]), 3).nonzero()[1].tolist()  # north-west and west
    [0, 3]
    """
    east, south = shares[:, 0:1], shares[:, 1:2]
    lines = np.arange(side)
    rows = (lines / side - BAND <= south) & (south <= (lines + 1) / side + BAND)
    cols = (lines / side - BAND <= east) & (east <= (lines + 1) / side + BAND)
    return (rows[:, :, None] & cols[:, None, :]).reshape(len(shares), side * side)


def damage_mask(targets: Sequence[Target], damage: Damage | None) -> np.ndarray:
    """Which targets a damage grade's scope holds (all for None)."""
    return np.array([damage in (None, t.damage) for t in targets], dtype=bool)


def rank_values(shares: np.ndarray, targets: Sequence[Target]) -> np.ndarray:
    """Per rank (`Rank` order) a value per object, larger the further it goes that way: (6, n).

    Directions use the positions' shares, sizes the log of the targets' areas.
    """
    areas = np.log(np.maximum([t.area for t in targets], 1e-300)).reshape(-1)
    by_rank = {Rank.NORTH: -shares[:, 1], Rank.SOUTH: shares[:, 1], Rank.EAST: shares[:, 0],
               Rank.WEST: -shares[:, 0], Rank.LARGEST: areas, Rank.SMALLEST: -areas}
    return np.array([by_rank[rank] for rank in Rank], dtype=float).reshape(len(Rank), -1)


def add_ranks(
    found: Denotations, scope: Phrase, indexes: np.ndarray, firm: np.ndarray, values: np.ndarray
) -> None:
    """Add the rank phrases of one scope: the leader firm if clearly ahead, else both.

    `indexes` are the objects that may belong to the scope (ascending) and `firm` whether each
    surely does; a scope names its size (``of the three``) only when every member surely does.
    """
    if len(indexes) < 2:
        return
    group = len(indexes) if firm.all() and len(indexes) in _GROUP_SIZES else 0
    if scope.clustered:
        group = scope.group
    scores = values[:, indexes]
    leaders = scores.argmax(axis=1)
    rows = np.arange(len(scores))
    close = (scores[rows, leaders][:, None] - scores) < _MARGINS[:, None]
    close[rows, leaders] = False
    contested = close.any(axis=1)
    for row, rank in enumerate(Rank):
        phrase = Phrase(scope.damage, scope.cell, rank, group, scope.clustered)
        if contested[row]:
            found.seen[phrase] = 0
        else:
            found.add(phrase, int(indexes[leaders[row]]), bool(firm[leaders[row]]))


def _sectors(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Whether each offset may lie in each compass sector (two near a sector's edge): (n, 8)."""
    bearings = np.degrees(np.arctan2(dx, dy)) % 360.0
    inside = np.zeros((len(bearings), 8), dtype=bool)
    rows = np.arange(len(bearings))
    for delta in (-SECTOR_BAND, 0.0, SECTOR_BAND):
        inside[rows, np.round((bearings + delta) / 45.0).astype(int) % 8] = True
    return inside


def add_relations(
    found: Denotations,
    targets: Sequence[Target],
    anchors: Iterable[tuple[int, Phrase]],
    damages: Sequence[Damage | None],
    sure: Sequence[bool] | np.ndarray | None = None,
    nearby: Nearby | None = None,
) -> None:
    """Add, per anchor, direction and scope, the nearest object that way (and close seconds).

    Parameters
    ----------
    found
        The denotations to add to.
    targets
        Every object of the scope.
    anchors
        Objects with a unique phrase, and that phrase.
    damages
        The damage grades to name (None: any building).
    sure
        Whether each object surely belongs to the scope; default: all do.
    nearby
        Each anchor's candidates (`Nearby`); default: every object. The nearest is firm only
        where its close seconds all lie within the candidates' reach.
    """
    xs = np.array([t.x for t in targets], dtype=float)
    ys = np.array([t.y for t in targets], dtype=float)
    grades = list(Damage)
    codes = np.array([-1 if t.damage is None else grades.index(t.damage) for t in targets])
    wanted = np.array([-2 if d is None else grades.index(d) for d in damages]).reshape(-1, 1)
    directions = list(Direction)
    every = np.arange(len(targets))
    certain = None if sure is None else np.asarray(sure, dtype=bool)
    for anchor, anchor_phrase in anchors:
        indexes, reach = (every, math.inf) if nearby is None else nearby(anchor)
        dx, dy = xs[indexes] - xs[anchor], ys[indexes] - ys[anchor]
        distance = np.hypot(dx, dy)
        sectors = _sectors(dx, dy)
        usable = (indexes != anchor) & (distance > 0)
        graded = usable & ((wanted == -2) | (codes[indexes] == wanted))  # (damages, objects)
        inside = graded[:, None, :] & sectors.T[None, :, :]  # (damages, directions, objects)
        far = np.where(inside, distance, np.inf)
        nearest = far.argmin(axis=2)
        bound = NEAREST_RATIO * far.min(axis=2)
        seconds = inside & (distance < bound[..., None])
        seconds[*np.indices(nearest.shape), nearest] = False
        firm = ((sectors.sum(axis=1)[nearest] == 1) & ~seconds.any(axis=2) & (bound <= reach))
        if certain is not None:
            firm &= certain[indexes[nearest]]
        for grade, column in zip(*np.nonzero(np.isfinite(bound)), strict=True):
            phrase = Phrase(damages[grade], relation=(directions[column], anchor_phrase))
            found.add(phrase, int(indexes[nearest[grade, column]]), bool(firm[grade, column]))
            for other in indexes[seconds[grade, column]].tolist():
                found.add(phrase, other, firm=False)


def clusters(shares: np.ndarray) -> list[list[int]]:
    """Groups of 2 to 5 positions linked by gaps under `CLUSTER_GAP` (indexes into `shares`).

    Examples
    --------
    >>> clusters(np.array([[0.1, 0.1], [0.12, 0.1], [0.9, 0.9]]))
    [[0, 1]]
    """
    if len(shares) < 2:
        return []
    if len(shares) <= _PAIRWISE:
        near = np.hypot(*(shares[:, None, :] - shares[None, :, :]).transpose(2, 0, 1))
        pairs = np.argwhere(np.triu(near < CLUSTER_GAP, 1))
    else:
        pairs = cKDTree(shares).query_pairs(CLUSTER_GAP * (1 + 1e-9), output_type="ndarray")
        if len(pairs):
            gaps = np.hypot(*(shares[pairs[:, 0]] - shares[pairs[:, 1]]).T)
            pairs = pairs[gaps < CLUSTER_GAP]
    label = list(range(len(shares)))
    for a, b in pairs.tolist():
        root_a, root_b = _root(label, a), _root(label, b)
        label[max(root_a, root_b)] = min(root_a, root_b)
    groups: dict[int, list[int]] = defaultdict(list)
    for position in range(len(shares)):
        groups[_root(label, position)].append(position)
    return [group for group in groups.values() if len(group) in _CLUSTER_SIZES]


def _root(label: list[int], item: int) -> int:
    while label[item] != item:
        item = label[item]
    return item


def named_damages(targets: Sequence[Target]) -> list[Damage]:
    """The damage grades of the targets that have words (not ``un-classified``), in order."""
    present = {t.damage for t in targets}
    return [d for d in Damage if d in present and d is not Damage.UN_CLASSIFIED]


def simplest(phrases: Iterable[Phrase], damage: Damage | None) -> Phrase:
    """The simplest phrase, naming the object's damage where it can (then the first by repr)."""
    ranked = [((p.complexity, p.damage != damage), p) for p in phrases]
    best = min(key for key, _ in ranked)
    tied = [p for key, p in ranked if key == best]
    return tied[0] if len(tied) == 1 else min(tied, key=repr)
