"""Buildings per grade per area: each building counted once, in the area holding its centre."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import shapely

from geovlm.errors import InputError
from geovlm.reporting.areas import Areas
from geovlm.reporting.layers import CATEGORIES, UNCERTAIN

__all__ = ["AreaCounts", "count_buildings", "shares"]

#: The grades that mean a building is damaged (all but no-damage).
_DAMAGED = CATEGORIES[1:-1]


@dataclass(frozen=True, slots=True)
class AreaCounts:
    """Counts per area and per `CATEGORIES` value.

    Attributes
    ----------
    areas
        The areas counted in (a grid keeps only its cells with a building).
    counts
        One row per area, one column per category, in `CATEGORIES` order.
    outside
        The buildings in no area, per category.
    """

    areas: Areas
    counts: np.ndarray
    outside: np.ndarray

    @property
    def totals(self) -> np.ndarray:
        """Buildings per category over the whole layer, those outside the areas included."""
        return self.counts.sum(axis=0) + self.outside

    def rows(self) -> list[dict[str, Any]]:
        """One table row per area: its name, counts, total and damaged share of graded ones."""
        return [_row(name, counts) for name, counts in zip(self.areas.names, self.counts,
                                                           strict=True)]

    def total_row(self) -> dict[str, Any]:
        """The row of the whole layer."""
        return _row("all", self.totals)


def _row(name: str, counts: np.ndarray) -> dict[str, Any]:
    by_category = dict(zip(CATEGORIES, (int(n) for n in counts), strict=True))
    graded = sum(by_category[c] for c in CATEGORIES if c != UNCERTAIN)
    damaged = sum(by_category[c] for c in _DAMAGED)
    return {"name": name, **by_category, "total": graded + by_category[UNCERTAIN],
            "damaged_share": damaged / graded if graded else None}


def shares(counts: np.ndarray) -> np.ndarray:
    """Each count's share of their sum (zeros when the sum is zero).

    Examples
    --------
    >>> shares(np.array([1, 3])).tolist(), shares(np.array([0, 0])).tolist()
    ([0.25, 0.75], [0.0, 0.0])
    """
    total = counts.sum()
    return counts / total if total else np.zeros(len(counts))


def count_buildings(
    centres: np.ndarray, damage: np.ndarray, areas: Areas, *, keep_empty: bool
) -> AreaCounts:
    """Count buildings per area and category; a building in two areas counts in the first.

    Parameters
    ----------
    centres
        One point inside each building (its representative point), in ``areas.crs``.
    damage
        Each building's category, one of `CATEGORIES`.
    areas
        The areas.
    keep_empty
        Keep areas with no building (admin areas) or leave them out (grid cells).

    Returns
    -------
    AreaCounts

    Raises
    ------
    InputError
        No building lies in any area.

    Examples
    --------
    >>> from pyproj import CRS
    >>> areas = Areas(("a", "b"), np.array([shapely.box(0, 0, 1, 1), shapely.box(5, 5, 6, 6)]),
    ...               CRS.from_epsg(32616))
    >>> counted = count_buildings(shapely.points([(0.5, 0.5), (9, 9)]),
    ...                           np.array(["destroyed", "uncertain"]), areas, keep_empty=False)
    >>> counted.areas.names, counted.counts.tolist(), counted.outside.tolist()
    (('a',), [[0, 0, 0, 1, 0]], [0, 0, 0, 0, 1])
    """
    index = {name: i for i, name in enumerate(CATEGORIES)}
    category = np.array([index[str(value)] for value in damage], dtype=np.int64)
    point_index, area_index = shapely.STRtree(areas.geometries).query(
        centres, predicate="within")
    first = np.full(len(centres), len(areas.names))
    np.minimum.at(first, point_index, area_index)
    inside = first < len(areas.names)
    if not inside.any():
        raise InputError("No building lies in any of the areas; pass areas that overlap the"
                         " buildings (any CRS is reprojected).")
    counts = np.zeros((len(areas.names), len(CATEGORIES)), dtype=np.int64)
    np.add.at(counts, (first[inside], category[inside]), 1)
    outside = np.bincount(category[~inside], minlength=len(CATEGORIES))
    kept = np.arange(len(areas.names)) if keep_empty else np.flatnonzero(counts.sum(axis=1))
    chosen = replace(areas, names=tuple(areas.names[i] for i in kept),
                     geometries=areas.geometries[kept])
    return AreaCounts(chosen, counts[kept], outside)
