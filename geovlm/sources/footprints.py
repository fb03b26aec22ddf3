"""Objects over a scene: polygons from any GDAL vector layer or xBD label, in the scene's CRS.

Every source ends as `SceneObjects`: polygons reprojected to the scene's CRS, invalid ones
repaired with ``shapely.make_valid`` (multi-part results split into parts), each object given to
the chip of ``classify``'s grid (`geovlm.scenes.tiling.SceneTiler`) that holds its centroid (with
overlapping chips, the one whose centre is nearest), and marked ``cut`` when the chip's edge cuts
it. What was left out is counted: empty or non-polygonal features, and objects whose centroid
lies outside every chip.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from geovlm.errors import InputError
from geovlm.labels.damage import Damage
from geovlm.scenes.tiling import SceneTiler, cell_footprints
from geovlm.sources.outlines import (
    DAMAGE_FIELD,
    check_vector,
    polygon_parts,
    vector_polygons,
    xbd_polygons,
)

__all__ = [
    "DAMAGE_FIELD",
    "SceneObject",
    "SceneObjects",
    "check_vector",
    "log_left_out",
    "objects_from_polygons",
    "read_vector_objects",
    "read_xbd_objects",
]

logger = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class SceneObject:
    """One object (e.g. a building) placed on the chip grid of a scene.

    Attributes
    ----------
    object_id
        Stable id: the feature id (with ``.<part>`` for parts of a multi-part feature) or the
        xBD uid.
    polygon
        The outline in the scene's CRS.
    damage
        xBD damage grade, or None.
    chip_id
        The chip holding the centroid.
    cut
        Whether the chip's edge cuts the outline.
    """

    object_id: str
    polygon: Polygon
    damage: Damage | None
    chip_id: str
    cut: bool


@dataclass(frozen=True, slots=True)
class SceneObjects:
    """The objects of a source over one scene, with what was repaired or left out."""

    objects: tuple[SceneObject, ...]
    #: The source, for messages.
    source: str
    #: Features read (before any was left out or split).
    read: int
    #: Invalid outlines repaired with ``make_valid``.
    repaired: int
    #: Features without a polygonal outline (empty, points, lines), left out.
    not_polygonal: int
    #: Objects whose centroid lies outside every chip, left out.
    outside: int

    def by_chip(self) -> dict[str, list[SceneObject]]:
        """The objects grouped by chip id, in the order read."""
        groups: dict[str, list[SceneObject]] = {}
        for item in self.objects:
            groups.setdefault(item.chip_id, []).append(item)
        return groups

    def counts(self) -> dict[str, int]:
        """The counts, JSON-ready, for the run record and the summary."""
        return {
            "read": self.read, "objects": len(self.objects), "repaired": self.repaired,
            "not_polygonal": self.not_polygonal, "outside": self.outside,
        }


def log_left_out(source: str, scene: str, repaired: int, not_polygonal: int,
                 outside: int) -> None:
    """Warn about the outlines of a source that were repaired or left out."""
    if repaired:
        logger.warning("%s: repaired %d invalid outline(s) with make_valid", source, repaired)
    if not_polygonal:
        logger.warning("%s: left out %d feature(s) without a polygon", source, not_polygonal)
    if outside:
        logger.warning("%s: left out %d object(s) whose centre lies outside %s", source, outside,
                       scene)


def objects_from_polygons(
    ids: Sequence[str],
    geometries: Sequence[BaseGeometry | None],
    damages: Sequence[Damage | None],
    tiler: SceneTiler,
    source: str,
) -> SceneObjects:
    """Repair polygons already in the scene's CRS and give each to the chip of its centroid.

    Parameters
    ----------
    ids
        One id per feature.
    geometries
        One outline per feature, in the scene's CRS (None or empty ones are left out).
    damages
        One damage grade (or None) per feature.
    tiler
        The scene's chip grid.
    source
        The source's name, for messages.

    Returns
    -------
    SceneObjects
        The placed objects and counts.

    Raises
    ------
    InputError
        No object of the source lies on the scene.
    """
    found_parts = polygon_parts(ids, geometries, damages)
    found_parts.check_polygonal(source)
    parts = found_parts.parts
    cells = cell_footprints(tiler)
    chip_ids = list(cells)
    outlines = np.array([cells[chip_id] for chip_id in chip_ids], dtype=object)
    centres = shapely.centroid(outlines)
    tree = shapely.STRtree(outlines)
    centroids = shapely.centroid(np.array([part[1] for part in parts], dtype=object))
    pairs = tree.query(centroids, predicate="intersects") if parts else np.empty((2, 0), int)
    best: dict[int, int] = {}
    for item, cell in zip(pairs[0], pairs[1], strict=True):
        previous = best.get(int(item))
        if previous is None or shapely.distance(centroids[item], centres[cell]) < shapely.distance(
            centroids[item], centres[previous]
        ):
            best[int(item)] = int(cell)
    objects = tuple(
        SceneObject(object_id, polygon, damage, chip_ids[best[index]],
                    not outlines[best[index]].covers(polygon))
        for index, (object_id, polygon, damage) in enumerate(parts)
        if index in best
    )
    outside = len(parts) - len(objects) + found_parts.off_crs
    found = SceneObjects(objects, source, len(ids), found_parts.repaired,
                         found_parts.not_polygonal, outside)
    if ids and not objects:
        raise InputError(
            f"none of the {len(ids)} features of {source} lies on {tiler.info.path}; check that"
            " the footprints cover the scene (and that their CRS is declared correctly)."
        )
    log_left_out(source, tiler.info.path, found.repaired, found.not_polygonal, outside)
    return found


def read_vector_objects(
    path: str | os.PathLike[str], tiler: SceneTiler, layer: str | None = None
) -> SceneObjects:
    """The polygons of a vector layer, in any CRS, as objects of the scene (`vector_polygons`).

    Parameters
    ----------
    path
        Any vector dataset GDAL reads.
    tiler
        The scene's chip grid.
    layer
        The layer; default: the first polygon layer (see `check_vector`).

    Returns
    -------
    SceneObjects
        The placed objects and counts (an empty layer gives none).

    Raises
    ------
    InputError
        As `check_vector`, or no feature lies on the scene.
    """
    found = vector_polygons(path, tiler.info.crs, layer)
    if not found.ids:
        return SceneObjects((), str(path), 0, 0, 0, 0)
    return objects_from_polygons(found.ids, found.geometries, found.damages, tiler, found.source)


def read_xbd_objects(label: str | os.PathLike[str], tiler: SceneTiler) -> SceneObjects:
    """The buildings of an xBD label (with damage grades) as objects of its georeferenced tile.

    The buildings' longitude/latitude outlines are reprojected to the scene's CRS, so the scene
    is the tile as ``geovlm xbd georef`` wrote it (or any raster covering it).

    Parameters
    ----------
    label
        ``labels/<tile>_{pre,post}_disaster.json``.
    tiler
        The scene's chip grid.

    Returns
    -------
    SceneObjects
        The placed buildings; ids are xBD uids.

    Raises
    ------
    XbdError
        The label is malformed (see `geovlm.sources.xbd.XbdTile.from_label`).
    InputError
        No building lies on the scene.
    """
    found = xbd_polygons(label, tiler.info.path, tiler.info.crs)
    return objects_from_polygons(found.ids, found.geometries, found.damages, tiler, found.source)
