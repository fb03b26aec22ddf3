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
an object with none is flagged ambiguous and keeps its simplest firm phrase. The machinery lives
in `geovlm.refer.denotations`; `unique_phrases` also describes a part of a scene, whose objects
that may lie outside it are borderline in every phrase (`geovlm.refer.scene`).

Directions are map directions: north is +y of the scene's CRS (latitude for geographic CRSs),
computed from georeferenced coordinates, so a rotated geotransform changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np

from geovlm.labels.damage import Damage
from geovlm.refer.denotations import (
    BAND,
    CLUSTER_GAP,
    EXTREME_MARGIN,
    SECTOR_BAND,
    SIZE_RATIO,
    Denotations,
    Nearby,
    add_ranks,
    add_relations,
    clusters,
    damage_mask,
    grid_masks,
    named_damages,
    positions,
    rank_values,
    simplest,
)
from geovlm.refer.phrases import CELL_GRID, Cell, Frame, Phrase, Rank, Reference, Target

__all__ = [
    "BAND", "CLUSTER_GAP", "EXTREME_MARGIN", "SECTOR_BAND", "SIZE_RATIO", "cell_at",
    "refer_chip", "unique_phrases",
]

#: Rounds of relations: objects described by a relation in one round anchor the next (two
#: rounds: at most two hops, "the building just north of the building just west of ...").
_RELATION_ROUNDS = 2
#: Cluster sizes that are scopes of their own (`geovlm.refer.denotations.clusters`).
_CLUSTER_SIZES = (2, 3, 4, 5)
#: Most anchors tried per chip and round (the simplest first).
_MAX_ANCHORS = 64


def _denotations(targets: Sequence[Target], frame: Frame, sure: np.ndarray) -> Denotations:
    """Every phrase without relations of every object, with whom it denotes."""
    found = Denotations()
    shares = positions(targets, frame)
    cells = grid_masks(shares, 3)
    single = cells.sum(axis=1) == 1
    damages = named_damages(targets)
    scopes = {damage: damage_mask(targets, damage) for damage in [None, *damages]}
    values = rank_values(shares, targets)
    for (damage, held), (column, cell) in product(scopes.items(),
                                                  [(-1, None), *enumerate(Cell)]):
        indexes = np.flatnonzero(held if cell is None else held & cells[:, column])
        firm = sure[indexes] & (True if cell is None else single[indexes])
        scope = Phrase(damage, cell)
        found.add_all(scope, indexes, firm)
        add_ranks(found, scope, indexes, firm, values)
    for damage, held in scopes.items():
        indexes = np.flatnonzero(held)
        for group in clusters(shares[indexes]):
            cluster = indexes[group]
            if not sure[cluster].all():
                _block_clusters(found, damage, shares[cluster])
                continue
            where = [list(Cell)[i] for i in np.flatnonzero(
                grid_masks(shares[cluster].mean(axis=0)[None, :], 3)[0])]
            for cell in [None, *where]:
                scope = Phrase(damage, cell, group=len(cluster), clustered=True)
                firm = cell is None or len(where) == 1
                add_ranks(found, scope, cluster, np.full(len(cluster), firm), values)
    return found


def _block_clusters(found: Denotations, damage: Damage | None, shares: np.ndarray) -> None:
    """Make the cluster phrases a cluster with an uncertain member may fit denote two objects.

    Without a member that may lie outside the frame the cluster may be smaller, or several,
    with other leaders: every cluster phrase of its damage grade, of a size up to its own, in
    a cell its outline's box may touch, is blocked.
    """
    low, high = shares.min(axis=0), shares.max(axis=0)
    corners = np.array([low, high, [low[0], high[1]], [high[0], low[1]]])
    cells = [list(Cell)[i] for i in np.flatnonzero(grid_masks(corners, 3).any(axis=0))]
    sizes = [size for size in _CLUSTER_SIZES if size <= len(shares)]
    for cell, rank, size in product([None, *cells], Rank, sizes):
        found.seen[Phrase(damage, cell, rank, size, clustered=True)] = 0


def unique_phrases(
    targets: Sequence[Target],
    frame: Frame,
    sure: Sequence[bool] | None = None,
    max_anchors: int | None = _MAX_ANCHORS,
    nearby: Nearby | None = None,
) -> dict[int, list[Phrase]]:
    """Every phrase that denotes one object of a frame alone, per object (by index).

    Parameters
    ----------
    targets
        The objects that may lie in the frame.
    frame
        The extent the grid, ranks and margins are laid over.
    sure
        Whether each object surely lies in the frame (default: all do); one that may not
        (near the edge of a scene's cell) is borderline in every phrase: it blocks the phrases
        it may fit for others and uses none itself.
    max_anchors
        Most anchors tried per round of relations, the simplest first (None: every one).
    nearby
        Each anchor's candidates for its relations (`geovlm.refer.denotations.Nearby`); default:
        every object.

    Returns
    -------
    dict of int to list of Phrase
        The unique phrases of each object that has any.
    """
    certain = np.ones(len(targets), dtype=bool) if sure is None else np.asarray(sure, dtype=bool)
    found = _denotations(targets, frame, certain)
    unique = found.unique()
    tried: set[int] = set()
    for _ in range(_RELATION_ROUNDS):
        if len(unique) == len(targets):
            break
        anchors = sorted(
            ((i, simplest(phrases, targets[i].damage)) for i, phrases in unique.items()
             if i not in tried),
            key=lambda pair: (pair[1].complexity, -targets[pair[0]].area, pair[0]),
        )[:max_anchors]
        tried.update(i for i, _ in anchors)
        add_relations(found, targets, anchors, [None, *named_damages(targets)], certain, nearby)
        unique = found.unique()
    return unique


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
    unique = unique_phrases(targets, frame)
    references = []
    for index, target in enumerate(targets):
        if index in unique:
            references.append(Reference(target.object_id, simplest(unique[index], target.damage),
                                        False))
            continue
        fallback = Phrase(target.damage, cell_at(frame, target))
        references.append(Reference(target.object_id, fallback, True))
    return references


def cell_at(frame: Frame, target: Target) -> Cell:
    """The one cell of the frame's grid a target lies in, grid lines and bands aside.

    Examples
    --------
    >>> cell_at(Frame(0, 0, 90, 90), Target("a", 45, 45, 1.0)).value
    'centre'
    """
    east, south = frame.position(target)
    return CELL_GRID[min(int(south * 3), 2), min(int(east * 3), 2)]
