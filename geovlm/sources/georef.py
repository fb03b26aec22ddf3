"""Fit an affine pixel -> longitude/latitude transform to control points, with its residuals.

xBD's PNGs carry no georeferencing, but every building vertex is given twice, in pixels and in
longitude/latitude: enough control points for a least-squares affine transform. The real tiles
lie on north-up UTM grids, so an affine in degrees is exact up to the curvature of the UTM to
longitude/latitude conversion over one tile: under 0.02 pixels on 1024-pixel tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from numpy.typing import ArrayLike
from shapely.geometry import Polygon

from geovlm.errors import GeoreferenceError

__all__ = ["AffineFit"]

#: Below this ratio of the smallest to the largest spread of the pixel points (singular values
#: of the centred points), the points count as lying on one line.
_COLLINEAR = 1e-6


@dataclass(frozen=True, slots=True)
class AffineFit:
    """A least-squares affine transform from pixels to longitude/latitude, and how well it fits.

    Residuals are measured in pixels: each longitude/latitude point is carried back through the
    inverse transform and compared with its pixel point.
    """

    #: Pixel (column, row; GDAL's corner convention) to (longitude, latitude): a geotransform.
    transform: Affine
    #: Root mean square residual in pixels.
    rms_px: float
    #: Largest residual in pixels.
    max_px: float
    #: Control points used.
    points: int

    @classmethod
    def from_points(cls, pixels: ArrayLike, lonlat: ArrayLike, *, source: str) -> AffineFit:
        """Fit the transform to matching point arrays of shape (n, 2).

        Parameters
        ----------
        pixels
            Column and row of each point.
        lonlat
            Longitude and latitude of each point.
        source
            What the points belong to (e.g. a label file), named in errors.

        Returns
        -------
        AffineFit
            The transform and its residuals.

        Raises
        ------
        GeoreferenceError
            Fewer than 3 distinct points, pixel points on one line, or longitude/latitude
            points that collapse the image to a line or a point.

        Examples
        --------
        >>> fit = AffineFit.from_points([[0, 0], [10, 0], [0, 10]], [[5, 1], [6, 1], [5, 0]],
        ...                             source="example")
        >>> lon, lat = fit.transform @ (10, 10)
        >>> round(lon, 9), round(lat, 9), round(fit.rms_px, 9)
        (6.0, 0.0, 0.0)
        """
        px, ll = np.asarray(pixels, dtype=float), np.asarray(lonlat, dtype=float)
        distinct = len(np.unique(px, axis=0))
        if distinct < 3:
            raise GeoreferenceError(
                f"{source} has {distinct} distinct control point(s), too few to georeference;"
                " it needs at least 3 not on one line (building vertices, for xBD)."
            )
        # Centred coordinates keep the least squares well conditioned: degrees of longitude
        # vary in their fifth decimal across a tile.
        px0, ll0 = px.mean(axis=0), ll.mean(axis=0)
        spread = np.linalg.svd(px - px0, compute_uv=False)
        if spread[-1] <= _COLLINEAR * spread[0]:
            raise GeoreferenceError(
                f"{source} has all its control points on one line, which cannot fix an affine"
                " transform; it needs points spread in both directions."
            )
        design = np.column_stack([px - px0, np.ones(len(px))])
        (a, d), (b, e), (c, f) = np.linalg.lstsq(design, ll - ll0, rcond=None)[0]
        if abs(a * e - b * d) <= _COLLINEAR * np.hypot(a, b) * np.hypot(d, e):
            raise GeoreferenceError(
                f"{source} has longitude/latitude points on one line or at one place; its"
                " lng_lat polygons do not match its pixel polygons."
            )
        transform = (
            Affine.translation(*ll0) @ Affine(a, b, c, d, e, f) @ Affine.translation(*-px0)
        )
        back = np.column_stack(~transform @ (ll[:, 0], ll[:, 1]))
        residuals = np.hypot(*(back - px).T)
        return cls(
            transform, float(np.sqrt(np.mean(residuals**2))), float(residuals.max()), len(px)
        )

    def footprint(self, width: int, height: int) -> Polygon:
        """The longitude/latitude outline of an image of `width` x `height` pixels.

        Examples
        --------
        >>> fit = AffineFit(Affine(1, 0, 10, 0, -1, 50), 0.0, 0.0, 3)
        >>> fit.footprint(2, 3).bounds
        (10.0, 47.0, 12.0, 50.0)
        """
        corners = [(0, 0), (width, 0), (width, height), (0, height)]
        return Polygon([self.transform @ corner for corner in corners])
