"""The ground size of an xBD tile's pixels, measured from its own label, for margins in metres.

A label's ``metadata.gsd`` is the sensor's multispectral ground sample distance (1.4 to 2.1 m
on the shared tiles), not the size of the PNG's pan-sharpened pixels (about 0.45 to 0.5 m): a
10 m margin divided by it would be a quarter of the context asked for. The label carries the
true scale: every building vertex in pixels and in longitude/latitude. `pixel_metres` fits the
affine transform between them (`geovlm.sources.georef.AffineFit`) and measures one pixel's
steps along the rows and columns on the WGS 84 ellipsoid. A tile whose points fit no transform
(no buildings, or all on one line) falls back to ``metadata.gsd`` divided by 4, WorldView's
multispectral to panchromatic ratio (the shared tiles' ``gsd / pan_resolution`` is 4.0).
"""

from __future__ import annotations

import math

from pyproj import Geod

from geovlm.errors import GeoreferenceError
from geovlm.sources.georef import AffineFit
from geovlm.sources.xbd import XbdTile

__all__ = ["pixel_metres"]

_WGS84 = Geod(ellps="WGS84")
#: WorldView's multispectral to panchromatic pixel ratio: the fallback's divisor of ``gsd``.
_PAN_SHARPENING = 4.0


def pixel_metres(tile: XbdTile) -> float:
    """Return the mean ground size of one pixel of `tile`'s image, in metres.

    Parameters
    ----------
    tile
        A tile as read by `geovlm.sources.xbd.read_xbd`.

    Returns
    -------
    float
        The geometric mean of a pixel's width and height on the ground; where the label's
        points fit no transform, ``metadata.gsd`` over the pan-sharpening ratio (4).
    """
    pixels, lonlat = tile.control_points()
    try:
        fit = AffineFit.from_points(pixels, lonlat, source=str(tile.label))
    except GeoreferenceError:
        return tile.gsd / _PAN_SHARPENING
    lon, lat = fit.transform @ (tile.width / 2, tile.height / 2)
    steps = []
    for dx, dy in ((1, 0), (0, 1)):
        lon2, lat2 = fit.transform @ (tile.width / 2 + dx, tile.height / 2 + dy)
        steps.append(_WGS84.inv(lon, lat, lon2, lat2)[2])
    return math.sqrt(steps[0] * steps[1])
