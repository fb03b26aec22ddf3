"""Referring expressions unique among all of a scene's objects: a part of the scene first.

A chip's expressions (`geovlm.refer.rules.refer_chip`) single an object out among its chip's
objects only, so on the map of a scene the same text labels several buildings. Here the frame is
the whole scene:

1. **In a part of the scene.** The scene gets the chip rules' 3 x 3 grid; an object within
   `geovlm.refer.denotations.BAND` of a grid line may lie in either cell. Each cell's objects,
   with those that may lie in it, are described by the chip rules in the cell's own frame
   (`geovlm.refer.rules.unique_phrases`), the ones that may lie outside counted as borderline
   in every phrase; an object surely in the cell with a phrase that denotes it alone there gets
   the cell as its first phrase (``in the north-western part of the image, the easternmost
   destroyed building``). No object outside the cell can fit it, so it is unique in the scene.
   Objects on the grid's lines are described the same way in the scene's quarters (its 2 x 2
   grid, whose lines lie far from the 3 x 3 grid's): ``in the north-western quarter of the
   image, ...``. A part holding more than `PART_OBJECTS` objects (a dense chip's) is split the
   same way for the objects it leaves without a unique phrase, down to `MAX_DEPTH` pieces
   (``in the south of the northern part of the north-western part of the image, ...``).
2. **Across the scene,** for the objects left: phrases without a part among all the scene's
   objects (``the largest destroyed building``, clusters), and relations to an object with a
   unique phrase (``the building just east of the largest building in the western part of the
   image``), at most two hops as in a chip.
3. An object with neither keeps its cell's description (``in the centre of the north-western
   part of the image, the destroyed building``), flagged ambiguous.

Relations look for an anchor's nearest object in a direction among its `NEIGHBOURS` nearest (a
k-d tree): where a close second might lie beyond them, or an object outside the part is as near,
the nearest is borderline, so a relation within a part reads the same across the whole scene.
Each object is described in a few parts of about `PART_OBJECTS` objects each, so the work grows
with the scene's objects times the depth of its parts, not with their square.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from scipy.spatial import cKDTree

from geovlm.refer.denotations import (
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
from geovlm.refer.phrases import Cell, Frame, Phrase, Quarter, Reference, Target
from geovlm.refer.rules import cell_at, unique_phrases

__all__ = ["MAX_DEPTH", "NEIGHBOURS", "PART_OBJECTS", "refer_scene_objects"]

#: An anchor's nearest objects searched for its relations.
NEIGHBOURS = 16
#: A part of the scene holding more objects than this (about a dense chip's) is split again
#: into its own 3 x 3 grid for the objects it leaves without a unique phrase.
PART_OBJECTS = 100
#: The most nested cells in a region (3 ** 4 = 81 parts a side).
MAX_DEPTH = 4
#: Relations chain at most this many hops, as in a chip.
_MAX_HOPS = 2
#: Rounds of relations across the scene: objects described in one anchor the next.
_RELATION_ROUNDS = 2


def _nearby(points: np.ndarray, tree: cKDTree, members: np.ndarray) -> Nearby:
    """An anchor's nearest members (of `NEIGHBOURS` nearest objects) and how far they are all.

    Indexes count among `members`. The reach ends at the `NEIGHBOURS`-th nearest object, and at
    the nearest that is no member: a relation is firm only where no object outside the scope
    is as near as a close second, so it reads the same within its cell and across the scene.
    """
    local = np.full(len(points), -1)
    local[members] = np.arange(len(members))
    count = min(NEIGHBOURS + 1, len(points))

    def nearby(anchor: int) -> tuple[np.ndarray, float]:
        distances, indexes = tree.query(points[members[anchor]], k=count)
        distances, indexes = np.atleast_1d(distances), np.atleast_1d(indexes)
        inside = local[indexes] >= 0
        reach = math.inf if count == len(points) else float(distances[-1])
        if not inside.all():
            reach = min(reach, float(distances[~inside][0]))
        return np.sort(local[indexes[inside]]), reach

    return nearby


def _points(targets: Sequence[Target]) -> np.ndarray:
    return np.array([(t.x, t.y) for t in targets], dtype=float).reshape(-1, 2)


def _in_parts(targets: Sequence[Target], frame: Frame) -> dict[int, Phrase]:
    """Objects surely in a part of the scene with a phrase unique there, and that phrase."""
    points = _points(targets)
    tree = cKDTree(points)
    chosen: dict[int, Phrase] = {}
    # Parts to describe, coarsest first: the path of pieces (empty: the scene, only split), the
    # part's frame, the objects that may lie in it (scene indexes) and whether each surely does.
    todo: list[tuple[tuple[Cell | Quarter, ...], Frame, np.ndarray, np.ndarray]] = [
        ((), frame, np.arange(len(targets)), np.ones(len(targets), dtype=bool))]
    while todo:
        path, part, members, sure = todo.pop(0)
        if path:
            unique = unique_phrases([targets[i] for i in members], part, sure.tolist(),
                                    max_anchors=None, nearby=_nearby(points, tree, members))
            for position, phrases in unique.items():
                index = int(members[position])
                chosen.setdefault(index, replace(simplest(phrases, targets[index].damage),
                                                 region=path))
            if len(members) <= PART_OBJECTS or len(path) == MAX_DEPTH:
                continue
        left = sure & np.array([int(i) not in chosen for i in members], dtype=bool)
        todo += [((*path, piece), part.part(piece), members[inside], inner_sure[inside])
                 for piece, inside, inner_sure in _split(targets, part, members, sure)
                 if (left & inner_sure)[inside].any()]
    return chosen


def _split(
    targets: Sequence[Target], frame: Frame, members: np.ndarray, sure: np.ndarray
) -> list[tuple[Cell | Quarter, np.ndarray, np.ndarray]]:
    """The pieces of a part: its cells, then its quarters for the objects on the cells' lines.

    Each comes with the members that may lie in it and whether each surely does; an object
    surely in a cell is left out of the quarters' sure objects (its cell describes it).
    """
    shares = positions([targets[i] for i in members], frame)
    cells, quarters = grid_masks(shares, 3), grid_masks(shares, 2)
    in_one_cell, in_one_quarter = cells.sum(axis=1) == 1, quarters.sum(axis=1) == 1
    pieces: list[tuple[Cell | Quarter, np.ndarray, np.ndarray]] = []
    for column, cell in enumerate(Cell):
        pieces.append((cell, cells[:, column], sure & in_one_cell))
    for column, quarter in enumerate(Quarter):
        pieces.append((quarter, quarters[:, column], sure & in_one_quarter & ~in_one_cell))
    return pieces


def _across(targets: Sequence[Target], frame: Frame, chosen: dict[int, Phrase]) -> Denotations:
    """Phrases without a cell among all the scene's objects, and relations to unique anchors."""
    found = Denotations()
    shares = positions(targets, frame)
    values = rank_values(shares, targets)
    damages = named_damages(targets)
    for damage in [None, *damages]:
        indexes = np.flatnonzero(damage_mask(targets, damage))
        scope = Phrase(damage)
        every = np.ones(len(indexes), dtype=bool)
        found.add_all(scope, indexes, every)
        add_ranks(found, scope, indexes, every, values)
        for group in clusters(shares[indexes]):
            cluster = indexes[group]
            add_ranks(found, Phrase(damage, group=len(cluster), clustered=True), cluster,
                      np.ones(len(cluster), dtype=bool), values)
    points = _points(targets)
    nearby = _nearby(points, cKDTree(points), np.arange(len(targets)))
    left = np.array([i not in chosen for i in range(len(targets))])
    tried: set[int] = set()
    for _ in range(_RELATION_ROUNDS):
        unique = found.unique()
        if all(i in unique for i in np.flatnonzero(left)):
            break
        best = {**{i: simplest(p, targets[i].damage) for i, p in unique.items()}, **chosen}
        anchors = [
            (i, phrase) for i, phrase in sorted(best.items(), key=lambda pair: pair[0])
            if i not in tried and phrase.hops < _MAX_HOPS and left[nearby(i)[0]].any()
        ]
        tried.update(i for i, _ in anchors)
        add_relations(found, targets, anchors, [None, *damages], nearby=nearby)
    return found


def refer_scene_objects(targets: Sequence[Target], frame: Frame) -> list[Reference]:
    """Choose a referring expression for every object of a scene, unique among them all.

    Parameters
    ----------
    targets
        Every object of the scene.
    frame
        The scene's extent in map coordinates (its grid is the first phrase's).

    Returns
    -------
    list of Reference
        One per target, in order; a phrase with `Phrase.region` places its object in a cell of
        the scene first.

    Examples
    --------
    Two chips of a scene, each with "the only destroyed building" of its own:

    >>> from geovlm.labels.damage import Damage
    >>> from geovlm.labels.prompts import Language
    >>> from geovlm.refer.text import render
    >>> targets = [Target("a", 20, 70, 4.0, Damage.DESTROYED),
    ...            Target("b", 120, 70, 4.0, Damage.DESTROYED)]
    >>> for reference in refer_scene_objects(targets, Frame(0, 0, 200, 100)):
    ...     print(render(reference.phrase, Language.EN))
    in the north-western part of the image, the only destroyed building
    in the northern part of the image, the only destroyed building
    """
    chosen = _in_parts(targets, frame)
    across = _across(targets, frame, chosen).unique() if len(chosen) < len(targets) else {}
    references = []
    for index, target in enumerate(targets):
        if index in chosen:
            references.append(Reference(target.object_id, chosen[index], False))
        elif index in across:
            references.append(Reference(target.object_id,
                                        simplest(across[index], target.damage), False))
        else:
            region = cell_at(frame, target)
            fallback = Phrase(target.damage, cell_at(frame.part(region), target),
                              region=(region,))
            references.append(Reference(target.object_id, fallback, True))
    return references
