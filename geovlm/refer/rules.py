"""Rule-based referring expressions that pick out one object of a chip, in map directions.

The recipe follows Aerial-D's generator. Each object of a chip gets *phrases*: structured
expressions built from

- its damage grade (``the destroyed building``), the scope every other part applies within;
- its cell on a 3 x 3 grid of the chip (``in the north-west corner``), with a borderline band
  (`BAND`) along the grid lines: an object in the band may lie in either cell;
- a rank within the scope: the extreme in a map direction (``northernmost``) when ahead of the
  runner-up by `EXTREME_MARGIN` of the chip, or the size extreme (``largest``) when its area is
  `SIZE_RATIO` times the runner-up's; small scopes name their size (``the largest of the three
  destroyed buildings``);
- a relation to a distinctive neighbour, one described uniquely without relations: the scope's
  nearest object in one of 8 compass sectors of it (``the building just north of the largest
  building``), sectors with a borderline band of `SECTOR_BAND` degrees.

Uniqueness is enforced the way Aerial-D does it. Every phrase of every object is generated, in
two roles: *firm* where the object certainly fits it, and *borderline* where it may (in a band,
or a runner-up not clearly behind). A phrase denotes every object it is generated for in either
role; an object may use a phrase only where it is firm and the phrase denotes no other object.
Among those the simplest wins (position, then rank, then rank within a cell, then relations);
an object with none is flagged ambiguous and keeps its simplest firm phrase.

Directions are map directions: north is +y of the scene's CRS (latitude for geographic CRSs),
computed from georeferenced coordinates, so a rotated geotransform changes nothing.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from geovlm.labels.damage import Damage
from geovlm.refer.phrases import (
    CELL_GRID,
    Cell,
    Direction,
    Frame,
    Phrase,
    Rank,
    Reference,
    Target,
)

__all__ = ["BAND", "CLUSTER_GAP", "EXTREME_MARGIN", "SECTOR_BAND", "SIZE_RATIO", "refer_chip"]

#: Half-width of the borderline band around the 3 x 3 grid lines, as a share of the chip.
BAND = 0.03
#: How far (share of the chip) the extreme object in a direction must lead the runner-up.
EXTREME_MARGIN = 0.02
#: How many times larger (smaller) than the runner-up the largest (smallest) object must be.
SIZE_RATIO = 1.25
#: Half-width in degrees of the borderline band around the 8 compass sectors' edges.
SECTOR_BAND = 5.0
#: A second object this many times as far from the anchor as the nearest is not clearly behind.
NEAREST_RATIO = 1.25
#: Scopes of this many objects name their size (``the largest of the three ...``).
_GROUP_SIZES = (3, 4, 5)
#: Objects closer than this (share of the chip) join one cluster; clusters of 2 to 5 are
#: scopes of their own (``the westernmost of the four destroyed buildings grouped in ...``).
CLUSTER_GAP = 0.05
_CLUSTER_SIZES = (2, 3, 4, 5)
#: Rounds of relations: objects described by a relation in one round anchor the next (two
#: rounds: at most two hops, "the building just north of the building just west of ...").
_RELATION_ROUNDS = 2
#: Most anchors tried per chip and round (the simplest first).
_MAX_ANCHORS = 64


def _thirds(share: float) -> tuple[int, ...]:
    """The grid rows (or columns) a share may fall in, two within `BAND` of a grid line."""
    return tuple(i for i in range(3) if i / 3 - BAND <= share <= (i + 1) / 3 + BAND)


@dataclass
class _Denotations:
    """Per phrase, the objects it denotes firmly and all it denotes (borderline too)."""

    firm: dict[Phrase, set[int]] = field(default_factory=lambda: defaultdict(set))
    every: dict[Phrase, set[int]] = field(default_factory=lambda: defaultdict(set))

    def add(self, phrase: Phrase, index: int, firm: bool) -> None:
        self.every[phrase].add(index)
        if firm:
            self.firm[phrase].add(index)

    def unique(self) -> dict[int, list[Phrase]]:
        """Per object, the phrases it may use: firm for it and denoting nothing else."""
        found: dict[int, list[Phrase]] = defaultdict(list)
        for phrase, indexes in self.every.items():
            if len(indexes) == 1 and indexes <= self.firm.get(phrase, set()):
                found[next(iter(indexes))].append(phrase)
        return found


def _rank_values(targets: Sequence[Target], rank: Rank, frame: Frame) -> np.ndarray:
    """A value per object, larger the further it goes in `rank`'s way (a log area for sizes)."""
    shares = np.array([frame.position(t) for t in targets], dtype=float).reshape(-1, 2)
    areas = np.log(np.maximum([t.area for t in targets], 1e-300))
    return {
        Rank.NORTH: -shares[:, 1], Rank.SOUTH: shares[:, 1], Rank.EAST: shares[:, 0],
        Rank.WEST: -shares[:, 0], Rank.LARGEST: areas, Rank.SMALLEST: -areas,
    }[rank]


def _ranks(
    found: _Denotations, scope: Phrase, members: dict[int, bool], values: dict[Rank, np.ndarray]
) -> None:
    """Add the rank phrases of one scope: the leader firm if clearly ahead, else both."""
    if len(members) < 2:
        return
    indexes = np.array(sorted(members))
    all_firm = all(members.values())
    group = len(members) if all_firm and len(members) in _GROUP_SIZES else 0
    if scope.clustered:
        group = scope.group
    for rank, value in values.items():
        margin = math.log(SIZE_RATIO) if rank in (Rank.LARGEST, Rank.SMALLEST) else EXTREME_MARGIN
        scores = value[indexes]
        order = np.argsort(-scores, kind="stable")
        lead = scores[order[0]]
        phrase = Phrase(scope.damage, scope.cell, rank, group, scope.clustered)
        close = [int(indexes[i]) for i in order[1:] if lead - scores[i] < margin]
        leader = int(indexes[order[0]])
        found.add(phrase, leader, firm=members[leader] and not close)
        for index in close:
            found.add(phrase, index, firm=False)


def _sectors(dx: np.ndarray, dy: np.ndarray) -> list[set[Direction]]:
    """The compass sectors each offset may lie in (two near a sector's edge)."""
    bearings = np.degrees(np.arctan2(dx, dy)) % 360.0
    directions = list(Direction)
    found = []
    for bearing in bearings:
        near = {round((bearing + delta) / 45.0) % 8 for delta in (-SECTOR_BAND, 0, SECTOR_BAND)}
        found.append({directions[i] for i in near})
    return found


def _relations(
    found: _Denotations,
    targets: Sequence[Target],
    anchors: Iterable[tuple[int, Phrase]],
    damages: Sequence[Damage | None],
) -> None:
    """Add, per anchor, direction and scope, the nearest object that way (and close seconds)."""
    xs = np.array([t.x for t in targets])
    ys = np.array([t.y for t in targets])
    for anchor, anchor_phrase in anchors:
        dx, dy = xs - xs[anchor], ys - ys[anchor]
        distance = np.hypot(dx, dy)
        sectors = _sectors(dx, dy)
        for damage, direction in product(damages, Direction):
            phrase = Phrase(damage, relation=(direction, anchor_phrase))
            inside = [
                i for i, t in enumerate(targets)
                if i != anchor and direction in sectors[i] and (damage in (None, t.damage))
                and distance[i] > 0
            ]
            if not inside:
                continue
            nearest = min(inside, key=lambda i: (distance[i], i))
            close = [i for i in inside
                     if i != nearest and distance[i] < NEAREST_RATIO * distance[nearest]]
            found.add(phrase, nearest, firm=len(sectors[nearest]) == 1 and not close)
            for index in close:
                found.add(phrase, index, firm=False)


def _named_damages(targets: Sequence[Target]) -> list[Damage]:
    """The damage grades of the targets that have words (not ``un-classified``), in order."""
    present = {t.damage for t in targets}
    return [d for d in Damage if d in present and d is not Damage.UN_CLASSIFIED]


def _denotations(targets: Sequence[Target], frame: Frame) -> _Denotations:
    """Every phrase without relations of every object, with whom it denotes."""
    found = _Denotations()
    cells = []
    for target in targets:
        east, south = frame.position(target)
        cells.append({CELL_GRID[r, c] for r in _thirds(south) for c in _thirds(east)})
    damages = _named_damages(targets)
    values = {rank: _rank_values(targets, rank, frame) for rank in Rank}
    for damage, cell in product([None, *damages], [None, *Cell]):
        members = {
            i: cell is None or cells[i] == {cell}
            for i, t in enumerate(targets)
            if damage in (None, t.damage) and (cell is None or cell in cells[i])
        }
        scope = Phrase(damage, cell)
        for index, firm in members.items():
            found.add(scope, index, firm)
        _ranks(found, scope, members, values)
    for damage in [None, *damages]:
        for cluster in _clusters(targets, frame, damage):
            east, south = np.mean([frame.position(targets[i]) for i in cluster], axis=0)
            where = [CELL_GRID[r, c] for r in _thirds(south) for c in _thirds(east)]
            for cell in [None, *where]:
                scope = Phrase(damage, cell, group=len(cluster), clustered=True)
                firm = cell is None or len(where) == 1
                _ranks(found, scope, dict.fromkeys(cluster, firm), values)
    return found


def _clusters(targets: Sequence[Target], frame: Frame, damage: Damage | None) -> list[list[int]]:
    """Groups of 2 to 5 objects of a damage grade linked by gaps under `CLUSTER_GAP`."""
    indexes = [i for i, t in enumerate(targets) if damage in (None, t.damage)]
    if len(indexes) < 2:
        return []
    shares = np.array([frame.position(targets[i]) for i in indexes])
    near = np.hypot(*(shares[:, None, :] - shares[None, :, :]).transpose(2, 0, 1)) < CLUSTER_GAP
    label = list(range(len(indexes)))
    for a, b in zip(*np.nonzero(near), strict=True):
        root_a, root_b = _root(label, int(a)), _root(label, int(b))
        label[max(root_a, root_b)] = min(root_a, root_b)
    groups: dict[int, list[int]] = defaultdict(list)
    for position, index in enumerate(indexes):
        groups[_root(label, position)].append(index)
    return [group for group in groups.values() if len(group) in _CLUSTER_SIZES]


def _root(label: list[int], item: int) -> int:
    while label[item] != item:
        item = label[item]
    return item


def _choice(phrases: Iterable[Phrase], damage: Damage | None) -> Phrase:
    """The simplest phrase, naming the object's damage where it can."""
    return min(
        phrases,
        key=lambda p: (p.complexity, p.damage != damage, repr(p)),
    )


def refer_chip(targets: Sequence[Target], frame: Frame) -> list[Reference]:
    """Choose a referring expression for every object of one chip.

    Parameters
    ----------
    targets
        The chip's objects (each object must belong to one chip only).
    frame
        The chip's extent in map coordinates.

    Returns
    -------
    list of Reference
        One per target, in order.

    Examples
    --------
    >>> frame = Frame(0, 0, 90, 90)
    >>> refs = refer_chip([Target("a", 10, 80, 4.0), Target("b", 80, 10, 4.0)], frame)
    >>> [(r.object_id, r.phrase.cell.value, r.ambiguous) for r in refs]
    [('a', 'north-west', False), ('b', 'south-east', False)]
    """
    found = _denotations(targets, frame)
    unique = found.unique()
    tried: set[int] = set()
    for _ in range(_RELATION_ROUNDS):
        if len(unique) == len(targets):
            break
        anchors = sorted(
            ((i, _choice(phrases, targets[i].damage)) for i, phrases in unique.items()
             if i not in tried),
            key=lambda pair: (pair[1].complexity, -targets[pair[0]].area, pair[0]),
        )[:_MAX_ANCHORS]
        tried.update(i for i, _ in anchors)
        _relations(found, targets, anchors, [None, *_named_damages(targets)])
        unique = found.unique()
    references = []
    for index, target in enumerate(targets):
        if index in unique:
            references.append(Reference(target.object_id, _choice(unique[index], target.damage),
                                        False))
            continue
        east, south = frame.position(target)
        cell = CELL_GRID[min(int(south * 3), 2), min(int(east * 3), 2)]
        references.append(Reference(target.object_id, Phrase(target.damage, cell), True))
    return references
