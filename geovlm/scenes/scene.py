"""Open and check a scene once: georeferencing, band choice, resolution and the pixel stretch.

Everything here is computed once per scene, never per chip: the stretch of uint16/float scenes
uses scene-wide percentiles from a decimated read (which GDAL serves from overviews when present).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from pyproj.crs import GeographicCRS
from rasterio import dtypes
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError

from geovlm.errors import InputError, ParameterError

__all__ = ["GDAL_OPTIONS", "PixelStretch", "SceneInfo", "open_scene", "pixel_stretch"]

#: GDAL settings for every read: a capped block cache keeps memory flat whatever the scene size,
#: and remote datasets are opened without listing their folder. rasterio hands GDAL_CACHEMAX to
#: GDALSetCacheMax64, which counts bytes: a bare 64 would mean 64 bytes, not 64 MB.
GDAL_OPTIONS: dict[str, object] = {
    "GDAL_CACHEMAX": 64 * 2**20,
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "VSI_CACHE": True,
}

#: Long side, in pixels, of the decimated read used for scene-wide percentiles.
_STATS_SIDE = 1024
_PERCENTILES = (2.0, 98.0)
_REMOTE = re.compile(r"^(/vsi|[a-z][a-z0-9+.-]*://)", re.IGNORECASE)
#: GDAL's complex pixel types (SAR single-look complex data), which no stretch turns into RGB.
_COMPLEX_DTYPES = frozenset({dtypes.complex_int16, dtypes.complex64, dtypes.complex128})


@dataclass(frozen=True, slots=True)
class SceneInfo:
    """What the tiler needs to know about a scene, read once when it is opened."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs: CRS
    transform: Affine
    nodata: float | None
    #: 1-based bands that become the chip's R, G, B (one band: grey).
    bands: tuple[int, ...]
    #: Ground length in metres of one pixel step along the grid's x (columns) and y (rows),
    #: measured on the ellipsoid at the scene centre: true metres whatever the CRS's units and
    #: scale factor (Web Mercator's 0.597 m nominal pixels at 37.7 deg N are 0.472 m).
    resolution_m: tuple[float, float]

    @property
    def gdal_options(self) -> dict[str, object]:
        """GDAL configuration for reads of this scene.

        Local files leave out VSI_CACHE: the OS page cache already holds their bytes, and the VSI
        cache would add up to 25 MB per reader thread (less for smaller files, so memory would
        grow with the scene).
        """
        if _REMOTE.match(self.path):
            return GDAL_OPTIONS
        return {key: value for key, value in GDAL_OPTIONS.items() if key != "VSI_CACHE"}


def _check_exists(path: str) -> None:
    if not _REMOTE.match(path) and not Path(path).exists():
        raise InputError(f"{path} does not exist; check the path.")


def _default_bands(count: int) -> tuple[int, ...]:
    return (1, 2, 3) if count >= 3 else (1,)


def _checked_bands(bands: tuple[int, ...] | None, count: int, path: str) -> tuple[int, ...]:
    chosen = bands or _default_bands(count)
    bad = [b for b in chosen if not 1 <= b <= count]
    if bad:
        raise ParameterError(
            f"--bands {','.join(map(str, chosen))} asks for band {bad[0]} but {path} has"
            f" {count} band(s); use numbers from 1 to {count}."
        )
    return tuple(chosen)


def _ground_resolution(
    crs: CRS, transform: Affine, width: int, height: int, path: str
) -> tuple[float, float]:
    """Ground length in metres of one pixel step along the grid's x and y, at the scene centre.

    A projected CRS's units are not ground metres: Web Mercator stretches by 1/cos(lat) and a
    polar stereographic grid by up to tens of percent. So the step is taken through the full
    affine (rotated and non-square pixels included), from the midpoint of the centre pixel's one
    side to the opposite side's, both carried to longitude/latitude on the CRS's own datum, and
    measured as a geodesic on its ellipsoid. A CRS with no ellipsoid (a local engineering grid)
    has only its axis units to go by.
    """
    source = ProjCRS.from_user_input(crs)
    geod = source.get_geod()
    if geod is None:
        unit = source.axis_info[0].unit_conversion_factor
        return (
            math.hypot(transform.a, transform.d) * unit,
            math.hypot(transform.b, transform.e) * unit,
        )
    to_lonlat = Transformer.from_crs(source, GeographicCRS(datum=source.datum), always_xy=True)
    col, row = width / 2, height / 2
    # Start and end of the x step, then of the y step.
    steps = ((col - 0.5, row), (col + 0.5, row), (col, row - 0.5), (col, row + 0.5))
    xs, ys = zip(*(transform @ step for step in steps), strict=True)
    lon, lat = to_lonlat.transform(np.array(xs), np.array(ys))
    _, _, metres = geod.inv(lon[0::2], lat[0::2], lon[1::2], lat[1::2])
    if not np.all(np.isfinite(metres) & (metres > 0)):
        raise InputError(
            f"The centre of {path} does not lie on the Earth in its CRS ({crs}); check its"
            " georeferencing."
        )
    return float(metres[0]), float(metres[1])


def open_scene(path: str | Path, bands: tuple[int, ...] | None = None) -> SceneInfo:
    """Open a scene, check it can be tiled and describe it.

    Parameters
    ----------
    path
        Any path or URL rasterio opens.
    bands
        1-based bands to use, or None for 1,2,3 (grey for fewer than three bands).

    Returns
    -------
    SceneInfo
        The scene's size, georeferencing and chosen bands.

    Raises
    ------
    InputError
        Missing, not a raster, without a CRS or geotransform, or with complex-valued pixels.
    ParameterError
        A requested band is out of range.
    """
    path = str(path)
    _check_exists(path)
    try:
        with rasterio.Env(**GDAL_OPTIONS), rasterio.open(path) as dataset:
            if dataset.crs is None:
                raise InputError(
                    f"{path} has no coordinate reference system; assign one first, e.g."
                    " `gdal_edit.py -a_srs EPSG:32618 FILE`."
                )
            if dataset.transform.is_identity:
                raise InputError(
                    f"{path} has no geotransform, so chips cannot be placed on the map;"
                    " georeference it first (e.g. with gdalwarp or the QGIS Georeferencer)."
                )
            complex_ = [dtype for dtype in dataset.dtypes if dtype in _COMPLEX_DTYPES]
            if complex_:
                raise InputError(
                    f"{path} has complex-valued pixels ({complex_[0]}); geovlm reads real-valued"
                    f" imagery: convert it first, e.g. to amplitude with `gdal_calc.py -A {path}"
                    " --calc='absolute(A)' --type Float32 --outfile amplitude.tif`."
                )
            return SceneInfo(
                path=path,
                width=dataset.width,
                height=dataset.height,
                count=dataset.count,
                dtype=dataset.dtypes[0],
                crs=dataset.crs,
                transform=dataset.transform,
                nodata=dataset.nodata,
                bands=_checked_bands(bands, dataset.count, path),
                resolution_m=_ground_resolution(
                    dataset.crs, dataset.transform, dataset.width, dataset.height, path
                ),
            )
    except RasterioError as exc:
        raise InputError(f"{path} is not a raster GDAL can read ({exc}).") from exc


@dataclass(frozen=True, slots=True)
class PixelStretch:
    """Maps a scene's band values to uint8 with one linear stretch per band.

    `low` and `high` are None for uint8 scenes, which pass through unchanged.
    """

    low: np.ndarray | None = None
    high: np.ndarray | None = None

    def to_rgb(self, data: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        """Turn band-first pixels into a pixel-interleaved uint8 RGB array.

        Parameters
        ----------
        data
            Pixels, shape ``(bands, rows, cols)`` with one or three bands.
        valid
            Boolean validity ``(rows, cols)``; invalid pixels become black. None: all valid.

        Returns
        -------
        numpy.ndarray
            Shape ``(rows, cols, 3)``, uint8.
        """
        if self.low is None or self.high is None:
            out = data.astype(np.uint8, copy=False)
        else:
            scale = (255.0 / np.maximum(self.high - self.low, 1e-12)).astype(np.float32)
            scaled = (data.astype(np.float32) - self.low[:, None, None].astype(np.float32)) * (
                scale[:, None, None]
            )
            out = np.nan_to_num(scaled, nan=0.0).clip(0, 255).astype(np.uint8)
        rgb = np.repeat(out, 3, axis=0) if out.shape[0] == 1 else out
        rgb = np.ascontiguousarray(np.moveaxis(rgb, 0, -1))
        if valid is not None:
            rgb[~valid] = 0
        return rgb


def pixel_stretch(info: SceneInfo, nodata: float | None = None) -> PixelStretch:
    """Compute the scene-wide 2-98 percentile stretch of the chosen bands.

    Parameters
    ----------
    info
        The opened scene.
    nodata
        A fill value to leave out of the statistics (overrides the declared one).

    Returns
    -------
    PixelStretch
        Pass-through for uint8 scenes, else per-band low and high values.
    """
    if info.dtype == "uint8":
        return PixelStretch()
    scale = max(1.0, max(info.width, info.height) / _STATS_SIDE)
    shape = (len(info.bands), max(1, round(info.height / scale)), max(1, round(info.width / scale)))
    fill = nodata if nodata is not None else info.nodata
    with rasterio.Env(**GDAL_OPTIONS), rasterio.open(info.path) as dataset:
        data = dataset.read(info.bands, out_shape=shape, resampling=Resampling.nearest)
    data = data.astype(np.float64)
    invalid = ~np.isfinite(data)
    if fill is not None:
        invalid |= np.isnan(data) if math.isnan(fill) else data == fill
    low, high = [], []
    for band, bad in zip(data, invalid, strict=True):
        values = band[~bad]
        lo, hi = np.percentile(values, _PERCENTILES) if values.size else (0.0, 1.0)
        low.append(lo)
        high.append(hi if hi > lo else lo + 1.0)
    return PixelStretch(np.asarray(low), np.asarray(high))
