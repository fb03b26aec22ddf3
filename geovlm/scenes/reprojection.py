"""One CRS for an event's layer: choosing it and reprojecting chip polygons exactly.

A chip's footprint is a rectangle in its scene's CRS; in another CRS its edges are curves. Each
edge is densified before the corners are transformed, so the reprojected polygon follows the
curve to well under a pixel instead of cutting across it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import shapely
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import Polygon, shape

from geovlm.errors import ParameterError

__all__ = ["EDGE_POINTS", "EVENT_DEFAULT_CRS", "event_crs", "reproject_polygon"]

#: The layer's CRS for an event whose scenes differ in CRS, unless ``--dst-crs`` says otherwise.
EVENT_DEFAULT_CRS = CRS.from_epsg(4326)

#: Points per edge of a reprojected rectangle (each edge cut into this many segments).
EDGE_POINTS = 32


def event_crs(scene_crss: Sequence[CRS], dst_crs: str | None = None) -> CRS:
    """The CRS of an event's layer.

    Parameters
    ----------
    scene_crss
        The CRS of every scene of the event.
    dst_crs
        The user's choice (``--dst-crs``: ``EPSG:32614``, WKT, PROJ string), or None.

    Returns
    -------
    CRS
        `dst_crs` when given; else the scenes' CRS when they share one; else EPSG:4326.

    Raises
    ------
    ParameterError
        `dst_crs` is not a CRS.
    """
    if dst_crs is not None:
        try:
            return CRS.from_user_input(dst_crs)
        except Exception as exc:  # rasterio raises CRSError, a ValueError, or a pyproj error
            raise ParameterError(
                f"--dst-crs {dst_crs!r} is not a CRS; pass e.g. EPSG:4326 or EPSG:32614."
            ) from exc
    first = scene_crss[0] if scene_crss else EVENT_DEFAULT_CRS
    return first if all(crs == first for crs in scene_crss) else EVENT_DEFAULT_CRS


def reproject_polygon(
    polygon: Polygon, src_crs: CRS, dst_crs: CRS, edge_points: int = EDGE_POINTS
) -> Polygon:
    """Reproject a polygon with densified edges (unchanged when both CRSs are equal).

    Parameters
    ----------
    polygon
        In `src_crs`.
    src_crs, dst_crs
        From and to.
    edge_points
        Segments of the longest edge; shorter edges are cut at the same spacing.

    Returns
    -------
    Polygon
        In `dst_crs`.
    """
    if src_crs == dst_crs:
        return polygon
    coords = shapely.get_coordinates(polygon.exterior)
    edges = [shapely.LineString(coords[i:i + 2]).length for i in range(len(coords) - 1)]
    longest = max(edges)
    dense = shapely.segmentize(polygon, longest / edge_points) if longest > 0 else polygon
    return cast(Polygon, shape(transform_geom(src_crs, dst_crs, dense.__geo_interface__)))
