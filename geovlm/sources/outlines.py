"""Outlines from any GDAL vector layer or xBD label, in a scene's CRS, repaired and split.

What every per-building source shares before it places its objects: `vector_polygons` and
`xbd_polygons` read features reprojected to the scene's CRS; `polygon_parts` repairs invalid
outlines with ``shapely.make_valid`` and splits multi-part results into their polygons,
counting what was repaired or left out (features without a polygon, outlines that did not
reproject). `geovlm.sources.footprints` gives them to chips, `geovlm.sources.building_crops`
cuts a crop around each.
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
from rasterio.crs import CRS
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from geovlm.errors import InputError, first_line
from geovlm.labels.damage import Damage
from geovlm.sources.xbd import XbdTile

__all__ = [
    "DAMAGE_FIELD", "PolygonParts", "SourcePolygons", "check_vector", "polygon_parts",
    "vector_polygons", "xbd_polygons",
]

logger = logging.getLogger(__name__)

#: A vector layer's field read as each object's damage grade (xBD's values), when present.
DAMAGE_FIELD = "damage"


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


@dataclass(frozen=True, slots=True)
class SourcePolygons:
    """A source's features in a scene's CRS as read, before any repair."""

    ids: list[str]
    geometries: list[BaseGeometry | None]
    damages: list[Damage | None]
    #: The source's name, for messages.
    source: str


@dataclass(frozen=True, slots=True)
class PolygonParts:
    """A source's outlines repaired and split into polygons, with what was repaired or left out.

    Attributes
    ----------
    parts
        ``(object_id, polygon, damage)`` per polygon, in the order read (a part of a
        multi-part feature is ``<id>.<part>``).
    repaired, not_polygonal
        Outlines repaired with ``make_valid``; features without a polygon, left out.
    off_crs
        Outlines that did not reproject (beyond the scene CRS's area of use), left out.
    """

    parts: list[tuple[str, Polygon, Damage | None]]
    repaired: int
    not_polygonal: int
    off_crs: int

    def check_polygonal(self, source: str) -> None:
        """Refuse a source of points or lines, which no scene check would explain.

        Raises
        ------
        InputError
            No feature of `source` holds a polygon.
        """
        if not self.parts and self.not_polygonal:
            raise InputError(
                f"{source} holds no polygons, only points, lines or empty geometries"
                f" ({self.not_polygonal}); give a layer of building outlines."
            )


def polygon_parts(
    ids: Sequence[str], geometries: Sequence[BaseGeometry | None],
    damages: Sequence[Damage | None],
) -> PolygonParts:
    """Repair outlines (``make_valid``) and split them into their non-empty polygons.

    Examples
    --------
    >>> from shapely.geometry import MultiPolygon, Point, box
    >>> found = polygon_parts(["a", "b"], [MultiPolygon([box(0, 0, 1, 1), box(2, 0, 3, 1)]),
    ...                                    Point(0, 0)], [None, None])
    >>> [part[0] for part in found.parts], found.not_polygonal
    (['a.0', 'a.1'], 1)
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
    return PolygonParts(parts, repaired, not_polygonal, off_crs)


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
        raise InputError(f"{path} is no vector layer GDAL can read ({first_line(exc)}).") from None
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
        raise InputError(f"{path} is no vector layer GDAL can read ({first_line(exc)}).") from None
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


def vector_polygons(
    path: str | os.PathLike[str], crs: CRS, layer: str | None = None
) -> SourcePolygons:
    """The features of a vector layer, in any CRS, reprojected to `crs`; ids are feature ids.

    GeoJSON's legacy ``crs`` member, Shapefile ``.prj`` files and GeoPackage CRSs are read by
    GDAL. A field named `DAMAGE_FIELD` holding xBD grades (as ``geovlm xbd georef`` or
    ``geovlm damage`` write) gives each its damage; other values (e.g. ``uncertain``) give none.

    Raises
    ------
    InputError
        As `check_vector`.
    """
    layer = check_vector(path, layer)
    info = pyogrio.read_info(path, layer=layer)
    columns = [DAMAGE_FIELD] if DAMAGE_FIELD in list(info["fields"]) else []
    frame = pyogrio.read_dataframe(path, layer=layer, columns=columns, fid_as_index=True)
    if frame.empty:
        logger.warning("%s holds no features", path)
        return SourcePolygons([], [], [], str(path))
    frame = frame.to_crs(crs)
    damages: list[Damage | None] = (
        [_damage(v) for v in frame[DAMAGE_FIELD]] if columns else [None] * len(frame)
    )
    return SourcePolygons([str(fid) for fid in frame.index], list(frame.geometry), damages,
                          str(path))


def xbd_polygons(label: str | os.PathLike[str], scene: str, crs: CRS) -> SourcePolygons:
    """The buildings of an xBD label (uids, damage grades), reprojected to `crs`.

    Raises
    ------
    XbdError
        The label is malformed (see `geovlm.sources.xbd.XbdTile.from_label`).
    InputError
        The label does not exist.
    """
    label = Path(label)
    if not label.is_file():
        raise InputError(f"{label} does not exist; give an xBD label file (labels/*.json).")
    tile = XbdTile.from_label(label, scene)
    to_scene = Transformer.from_crs(
        ProjCRS.from_epsg(4326), ProjCRS.from_user_input(crs), always_xy=True
    )
    outlines: list[BaseGeometry | None] = [
        shapely.transform(b.lonlat, lambda xy: np.column_stack(to_scene.transform(*xy.T)))
        for b in tile.buildings
    ]
    return SourcePolygons([b.uid for b in tile.buildings], outlines,
                          [b.damage for b in tile.buildings], str(label))
