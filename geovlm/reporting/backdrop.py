"""The scene under the report's map: a decimated read, warped to the map's CRS, stretched."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from geovlm.errors import InputError
from geovlm.scenes.scene import GDAL_OPTIONS, open_scene, pixel_stretch

__all__ = ["Backdrop", "scene_backdrop"]

logger = logging.getLogger(__name__)

#: Long side, in pixels, of the scene as drawn under the map.
_SIDE = 1200


@dataclass(frozen=True, slots=True)
class Backdrop:
    """A scene as an RGBA picture and the ground it covers.

    Attributes
    ----------
    rgba
        Pixels, shape ``(rows, cols, 4)``, uint8; outside the scene transparent.
    extent
        (left, right, bottom, top) in the map's CRS, as matplotlib's ``imshow`` takes it.
    """

    rgba: np.ndarray
    extent: tuple[float, float, float, float]


def scene_backdrop(path: str | Path, crs: CRS) -> Backdrop | None:
    """The scene at `path` warped to `crs`, its long side about 1200 px; None if unreadable.

    A report is still worth having when the imagery has moved, so a scene that does not open
    is logged and left out rather than refused.

    Parameters
    ----------
    path
        A raster GDAL opens (the run's recorded scene, or ``--scene``).
    crs
        The map's CRS.
    """
    try:
        info = open_scene(path)
    except InputError as exc:
        logger.warning("the map is drawn without its imagery: %s", exc)
        return None
    stretch = pixel_stretch(info)
    with (rasterio.Env(**GDAL_OPTIONS), rasterio.open(info.path) as dataset,
          WarpedVRT(dataset, crs=crs.to_wkt()) as warped):
        scale = max(1.0, max(warped.width, warped.height) / _SIDE)
        shape = (max(1, round(warped.height / scale)), max(1, round(warped.width / scale)))
        data = warped.read(list(info.bands), out_shape=(len(info.bands), *shape),
                           resampling=Resampling.average)
        valid = warped.read_masks(1, out_shape=shape, resampling=Resampling.nearest) > 0
        bounds = warped.bounds
    rgb = stretch.to_rgb(data, valid)
    alpha = np.where(valid, 255, 0).astype(np.uint8)[..., None]
    return Backdrop(np.concatenate([rgb, alpha], axis=-1),
                    (bounds.left, bounds.right, bounds.bottom, bounds.top))
