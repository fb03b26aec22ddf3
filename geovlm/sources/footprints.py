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
from pathlib import Path

import numpy as np
import pyogrio
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from geovlm.errors import InputError
from geovlm.labels.damage import Damage
from geovlm.scenes.tiling import SceneTiler, cell_footprints
from geovlm.sources.xbd import XbdTile

__all__ = [
    "DAMAGE_FIELD",
    "SceneObject",
    "SceneObjects",
    "check_vector",
    "objects_from_polygons",
    "read_vector_objects",
    "read_xbd_objects",
]

logger = logging.getLogger(__name__)

#: A vector layer's field read as each object's damage grade (xBD's values), when present.
DAMAGE_FIELD = "damage"


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


def _polygon_parts(geometry: BaseGeometry | None) -> list[Polygon]:
    """The non-empty polygons of a geometry (collections and multi-parts unpacked)."""
    if geometry is None or geometry.is_empty:
        return []
    parts = shapely.get_parts(geometry)
    found: list[Polygon] = []
    for part in parts:
        if isinstance(part, Polygon):
            if not part.is_empty and part.area > 0:
                found.append(part)
        elif part.geom_type in ("MultiPolygon", "GeometryCollection"):
            found += _polygon_parts(part)
    return found


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
    repaired = not_polygonal = off_crs = 0
    parts: list[tuple[str, Polygon, Damage | None]] = []
    for object_id, geometry, damage in zip(ids, geometries, damages, strict=True):
        if geometry is not None and not geometry.is_empty and not np.isfinite(
            shapely.bounds(geometry)
        ).all():
            off_crs += 1  # reprojected from beyond the scene CRS's area of use
            continue
        if geometry is not None and not geometry.is_empty and not geometry.is_valid:
            geometry = shapely.make_valid(geometry)
            repaired += 1
        pieces = _polygon_parts(geometry)
        if not pieces:
            not_polygonal += 1
        for index, piece in enumerate(pieces):
            parts.append((object_id if len(pieces) == 1 else f"{object_id}.{index}", piece,
                          damage))
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
    outside = len(parts) - len(objects) + off_crs
    found = SceneObjects(objects, source, len(ids), repaired, not_polygonal, outside)
    if ids and not objects:
        raise InputError(
            f"none of the {len(ids)} features of {source} lies on {tiler.info.path}; check that"
            " the footprints cover the scene (and that their CRS is declared correctly)."
        )
    if repaired:
        logger.warning("%s: repaired %d invalid outline(s) with make_valid", source, repaired)
    if not_polygonal:
        logger.warning("%s: left out %d feature(s) without a polygon", source, not_polygonal)
    if outside:
        logger.warning("%s: left out %d object(s) whose centre lies outside %s", source, outside,
                       tiler.info.path)
    return found


def check_vector(path: str | os.PathLike[str], layer: str | None = None) -> str:
    """Check that a vector layer opens and declares a CRS, before any work; name the layer.

    Parameters
    ----------
    path
        Any vector dataset GDAL reads.
    layer
        The layer; default: the first polygon layer (else the first layer).

    Returns
    -------
    str
        The layer's name.

    Raises
    ------
    InputError
        The file is missing, no vector dataset GDAL reads, lacks the layer, or has no CRS.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path.")
    try:
        layers = [(str(name), str(kind)) for name, kind in pyogrio.list_layers(path)]
    except DataSourceError as exc:
        raise InputError(f"{path} is no vector layer GDAL can read ({exc}).") from None
    names = [name for name, _ in layers]
    if layer is None and layers:
        polygonal = [name for name, kind in layers if "Polygon" in kind]
        layer = (polygonal or names)[0]
        if len(layers) > 1:
            logger.info("%s: reading layer %r of %s", path, layer, ", ".join(names))
    elif layer not in names:
        raise InputError(f"{path} has no layer {layer!r}; choose one of {', '.join(names)}.")
    try:
        info = pyogrio.read_info(path, layer=layer)
    except (DataSourceError, DataLayerError) as exc:
        raise InputError(f"{path} is no vector layer GDAL can read ({exc}).") from None
    if info["crs"] is None and info["features"]:
        raise InputError(
            f"{path} has no coordinate reference system; assign one, e.g. with"
            " `ogr2ogr -a_srs EPSG:4326 OUT IN` or in QGIS (Layer Properties > Source)."
        )
    return str(layer)


def _damage(value: object) -> Damage | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    try:
        return Damage(str(value))
    except ValueError:
        return None


def read_vector_objects(
    path: str | os.PathLike[str], tiler: SceneTiler, layer: str | None = None
) -> SceneObjects:
    """The polygons of a vector layer, in any CRS, as objects of the scene.

    GeoJSON's legacy ``crs`` member, Shapefile ``.prj`` files and GeoPackage CRSs are read by
    GDAL. A field named `DAMAGE_FIELD` holding xBD grades (as ``geovlm xbd georef`` writes)
    gives each object its damage. Object ids are the feature ids.

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
    layer = check_vector(path, layer)
    info = pyogrio.read_info(path, layer=layer)
    columns = [DAMAGE_FIELD] if DAMAGE_FIELD in list(info["fields"]) else []
    frame = pyogrio.read_dataframe(path, layer=layer, columns=columns, fid_as_index=True)
    if frame.empty:
        logger.warning("%s holds no features", path)
        return SceneObjects((), str(path), 0, 0, 0, 0)
    frame = frame.to_crs(tiler.info.crs)
    damages = [_damage(v) for v in frame[DAMAGE_FIELD]] if columns else [None] * len(frame)
    return objects_from_polygons(
        [str(fid) for fid in frame.index], list(frame.geometry), damages, tiler, str(path)
    )


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
    label = Path(label)
    if not label.is_file():
        raise InputError(f"{label} does not exist; give an xBD label file (labels/*.json).")
    tile = XbdTile.from_label(label, tiler.info.path)
    to_scene = Transformer.from_crs(
        ProjCRS.from_epsg(4326), ProjCRS.from_user_input(tiler.info.crs), always_xy=True
    )
    outlines = [
        shapely.transform(b.lonlat, lambda xy: np.column_stack(to_scene.transform(*xy.T)))
        for b in tile.buildings
    ]
    return objects_from_polygons(
        [b.uid for b in tile.buildings], outlines, [b.damage for b in tile.buildings], tiler,
        str(label),
    )
