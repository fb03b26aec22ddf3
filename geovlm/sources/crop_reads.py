"""One scene read in a building crop's grid: straight from its pixels, or warped from another CRS.

`CropRaster` holds a scene's handle, its `geovlm.sources.block_reads.BlockCache` and its
stretch, and cuts the squares of `geovlm.sources.building_crops.BuildingCrops`: resampled
straight from the pixels of a north-up scene, carried into another scene's grid (a pre scene in
its own CRS and resolution), or cut as a whole-pixel box of the scene's own grid (an xBD tile,
as the training set cuts it). Not thread-safe: its owner reads one crop at a time.
"""

from __future__ import annotations

import math

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.warp import reproject

from geovlm.scenes.scene import SceneInfo, pixel_stretch
from geovlm.sources.block_reads import BlockCache
from geovlm.sources.crops import Bounds

__all__ = ["CropRaster", "PixelBox", "north_up"]

#: A whole-pixel box ``(col0, row0, col1, row1)`` of a scene's grid, as PIL's ``crop`` takes it.
PixelBox = tuple[int, int, int, int]

#: Largest miss, in source pixels, of a crop's corner or edge midpoints by the affine map of
#: its other corners, before a crop is warped by GDAL instead.
_MAX_AFFINE_ERROR_PX = 0.1
#: Source pixels read around a pre crop's outline, for the resampling kernel.
_PRE_MARGIN_PX = 2


def north_up(transform: Affine) -> bool:
    """Whether a grid's rows run west to east and its columns north to south, unrotated."""
    return transform.b == 0 and transform.d == 0 and transform.a > 0 and transform.e < 0


class CropRaster:
    """One scene's handle, block cache and stretch, read in the crops' grid."""

    def __init__(self, info: SceneInfo, nodata: float | None) -> None:
        self.info = info
        self.dataset = rasterio.open(info.path)
        self.cache = BlockCache(self.dataset, info.bands, nodata)
        self.stretch = pixel_stretch(info, nodata)

    def rgb(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The window's pixels as ``(rows, cols, 3)`` uint8 and its validity."""
        region = self.cache.region(row, col, height, width)
        return self.stretch.to_rgb(region.data, region.valid), region.valid

    def resized(self, bounds: Bounds, pixels: int) -> tuple[Image.Image, float]:
        """A square of a north-up scene resampled straight from its pixels (no warp)."""
        xmin, ymin, xmax, ymax = bounds
        inverse = ~self.info.transform
        c0, r0 = inverse @ (xmin, ymax)
        c1, r1 = inverse @ (xmax, ymin)
        col, row = math.floor(c0), math.floor(r0)
        rgb, valid = self.rgb(row, col, math.ceil(r1) - row, math.ceil(c1) - col)
        box = (c0 - col, r0 - row, c1 - col, r1 - row)
        kernel = Image.Resampling.BOX if c1 - c0 > pixels else Image.Resampling.BILINEAR
        image = Image.fromarray(rgb).resize((pixels, pixels), kernel, box=box)
        mask = Image.fromarray(valid.view(np.uint8)).resize(
            (pixels, pixels), Image.Resampling.NEAREST, box=box)
        return image, float(np.count_nonzero(np.asarray(mask))) / pixels**2

    def warped(self, bounds: Bounds, pixels: int, crs: rasterio.crs.CRS,
               to_here: Transformer) -> tuple[Image.Image, float]:
        """A square given in another CRS, read with a margin and warped onto its grid.

        The square's corners and edge midpoints are carried exactly into this scene's pixels.
        Over a building's crop (tens of metres) the map between two grids is affine to far
        under a pixel: the read pixels are upsampled by PIL's bilinear resize to about the
        crop's scale, then mapped onto the crop's grid by that affine map (nearest, so off by
        at most half a crop pixel, a fraction of a source pixel). Where the map is not affine
        (a corner or midpoint off by more than `_MAX_AFFINE_ERROR_PX`), or where the crop
        shrinks the source (which wants averaging), ``rasterio.warp.reproject`` warps it.
        """
        xmin, ymin, xmax, ymax = bounds
        xm, ym = (xmin + xmax) / 2, (ymin + ymax) / 2
        # Upper-left, upper-right, lower-left, then the lower-right corner and the midpoints.
        xs = np.array([xmin, xmax, xmin, xmax, xm, xmin, xm, xmax])
        ys = np.array([ymax, ymax, ymin, ymin, ymax, ym, ymin, ym])
        cols, rows = ~self.info.transform @ to_here.transform(xs, ys)
        if not (np.isfinite(cols).all() and np.isfinite(rows).all()):
            return Image.new("RGB", (pixels, pixels)), 0.0
        col = math.floor(float(np.min(cols))) - _PRE_MARGIN_PX
        row = math.floor(float(np.min(rows))) - _PRE_MARGIN_PX
        width = math.ceil(float(np.max(cols))) + _PRE_MARGIN_PX - col
        height = math.ceil(float(np.max(rows))) + _PRE_MARGIN_PX - row
        rgb, valid = self.rgb(row, col, height, width)
        points = np.column_stack([cols - col, rows - row])
        origin, along_u, along_v = points[0], (points[1] - points[0]), (points[2] - points[0])
        # Where the affine map of the first three corners puts the others (u, v in 0..1).
        uv = np.array([(1, 1), (0.5, 0), (0, 0.5), (0.5, 1), (1, 0.5)])
        predicted = origin + uv[:, :1] * along_u + uv[:, 1:] * along_v
        error = float(np.hypot(*(predicted - points[3:]).T).max())
        scale = pixels / max(float(np.hypot(*along_u)), float(np.hypot(*along_v)))
        if error > _MAX_AFFINE_ERROR_PX or scale < 1:
            return self._reprojected(rgb, valid, (row, col), bounds, pixels, crs)
        step_u, step_v = along_u / pixels, along_v / pixels
        up_w, up_h = math.ceil(width * scale), math.ceil(height * scale)
        fx, fy = up_w / width, up_h / height
        upsampled = Image.fromarray(rgb).resize((up_w, up_h), Image.Resampling.BILINEAR)
        image = upsampled.transform(
            (pixels, pixels), Image.Transform.AFFINE,
            (fx * step_u[0], fx * step_v[0], fx * origin[0],
             fy * step_u[1], fy * step_v[1], fy * origin[1]), Image.Resampling.NEAREST)
        mask = Image.fromarray(valid.view(np.uint8)).transform(
            (pixels, pixels), Image.Transform.AFFINE,
            (step_u[0], step_v[0], origin[0], step_u[1], step_v[1], origin[1]),
            Image.Resampling.NEAREST)
        return image, float(np.count_nonzero(np.asarray(mask))) / pixels**2

    def _reprojected(self, rgb: np.ndarray, valid: np.ndarray, offset: tuple[int, int],
                     bounds: Bounds, pixels: int,
                     crs: rasterio.crs.CRS) -> tuple[Image.Image, float]:
        """Pixels read at `offset` warped onto the square's grid by GDAL (averaging)."""
        row, col = offset
        xmin, _, xmax, ymax = bounds
        source = np.concatenate([np.moveaxis(rgb, -1, 0), valid[None].view(np.uint8) * 255])
        target = np.zeros((4, pixels, pixels), dtype=np.uint8)
        side = (xmax - xmin) / pixels
        reproject(source, target,
                  src_transform=self.info.transform @ Affine.translation(col, row),
                  src_crs=self.info.crs, dst_transform=Affine(side, 0, xmin, 0, -side, ymax),
                  dst_crs=crs, resampling=Resampling.average)
        image = Image.fromarray(np.ascontiguousarray(np.moveaxis(target[:3], 0, -1)))
        return image, float(np.count_nonzero(target[3] > 127)) / pixels**2

    def pixel_box(self, box: PixelBox, pixels: int) -> tuple[Image.Image, float]:
        """A box of this scene's own pixels, black beyond its edges, resized bilinearly.

        As the building-damage training set cuts an xBD tile (PIL's ``crop``, then ``resize``).
        """
        col0, row0, col1, row1 = box
        rgb, valid = self.rgb(row0, col0, row1 - row0, col1 - col0)
        image = Image.fromarray(rgb).resize((pixels, pixels), Image.Resampling.BILINEAR)
        mask = Image.fromarray(valid.view(np.uint8)).resize((pixels, pixels),
                                                            Image.Resampling.NEAREST)
        return image, float(np.count_nonzero(np.asarray(mask))) / pixels**2

    def close(self) -> None:
        """Close the scene's handle."""
        self.dataset.close()
