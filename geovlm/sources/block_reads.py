"""Regions of a raster assembled from its decoded blocks, the recently used ones kept.

Crops around neighbouring buildings overlap and share the scene's blocks: reading each crop
with its own windowed read would decode the same compressed blocks many times over. A
`BlockCache` decodes each read tile (the file's blocks, grouped to at least `MIN_TILE` pixels a
side, so striped files are not read one strip at a time) once, keeps the most recently used
within a byte budget, and copies any region out of them, padding what lies outside the raster
as invalid. Callers visit the scene in block order (`geovlm.sources.building_crops` sorts its
buildings so), so each tile is decoded about once.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioError
from rasterio.windows import Window

from geovlm.errors import InputError

__all__ = ["MIN_TILE", "BlockCache", "Region"]

#: Smallest side of a read tile in pixels: blocks are grouped up to it.
MIN_TILE = 256
#: Decoded bytes a cache keeps by default.
DEFAULT_BUDGET = 96 * 2**20


@dataclass(frozen=True, slots=True)
class Region:
    """Pixels of a raster window: band-first data and where they hold data."""

    #: ``(bands, rows, cols)``, the raster's dtype; zero where `valid` is False.
    data: np.ndarray
    #: ``(rows, cols)``, False for nodata, masked pixels and padding beyond the raster.
    valid: np.ndarray


def _tile_side(block: int, extent: int) -> int:
    """A multiple of the block side of at least `MIN_TILE` pixels (at most the whole axis)."""
    return min(max(block, block * math.ceil(MIN_TILE / block)), max(extent, 1))


class BlockCache:
    """Reads regions of one open dataset through its decoded tiles; not thread-safe.

    Parameters
    ----------
    dataset
        The open raster (kept open by the caller).
    bands
        1-based bands read.
    nodata
        The value that marks invalid pixels (overrides the dataset's), or None.
    budget
        Bytes of decoded tiles kept.
    """

    def __init__(self, dataset: rasterio.DatasetReader, bands: tuple[int, ...],
                 nodata: float | None = None, budget: int = DEFAULT_BUDGET) -> None:
        self.dataset = dataset
        self.bands = list(bands)
        self.nodata = nodata if nodata is not None else dataset.nodata
        block_h, block_w = dataset.block_shapes[0]
        self.tile = (_tile_side(block_h, dataset.height), _tile_side(block_w, dataset.width))
        itemsize = np.dtype(dataset.dtypes[0]).itemsize
        tile_bytes = self.tile[0] * self.tile[1] * (len(self.bands) * itemsize + 1)
        self.capacity = max(4, budget // tile_bytes)
        self._tiles: OrderedDict[tuple[int, int], Region] = OrderedDict()
        #: Tiles decoded so far (a tile dropped and read again counts twice).
        self.decoded = 0

    def region(self, row: int, col: int, height: int, width: int) -> Region:
        """The pixels of the window at `row`, `col`, padded as invalid beyond the raster.

        Raises
        ------
        InputError
            A block of the raster cannot be read (truncated or corrupt file).
        """
        data = np.zeros((len(self.bands), height, width), dtype=self.dataset.dtypes[0])
        valid = np.zeros((height, width), dtype=bool)
        tile_h, tile_w = self.tile
        top, left = max(row, 0), max(col, 0)
        bottom = min(row + height, self.dataset.height)
        right = min(col + width, self.dataset.width)
        for tile_row in range(top // tile_h, (bottom - 1) // tile_h + 1 if bottom > top else 0):
            for tile_col in range(left // tile_w,
                                  (right - 1) // tile_w + 1 if right > left else 0):
                tile = self._tile(tile_row, tile_col)
                y0, x0 = tile_row * tile_h, tile_col * tile_w
                ys = slice(max(top, y0), min(bottom, y0 + tile.valid.shape[0]))
                xs = slice(max(left, x0), min(right, x0 + tile.valid.shape[1]))
                src = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
                dst = (slice(ys.start - row, ys.stop - row), slice(xs.start - col, xs.stop - col))
                data[(slice(None), *dst)] = tile.data[(slice(None), *src)]
                valid[dst] = tile.valid[src]
        return Region(data, valid)

    def _tile(self, tile_row: int, tile_col: int) -> Region:
        key = (tile_row, tile_col)
        tile = self._tiles.get(key)
        if tile is not None:
            self._tiles.move_to_end(key)
            return tile
        tile_h, tile_w = self.tile
        window = Window(tile_col * tile_w, tile_row * tile_h,
                        min(tile_w, self.dataset.width - tile_col * tile_w),
                        min(tile_h, self.dataset.height - tile_row * tile_h))
        try:
            data = self.dataset.read(self.bands, window=window)
            valid = self._valid(data, window)
        except RasterioError as exc:
            raise InputError(
                f"{self.dataset.name} is truncated or corrupt: GDAL could not read"
                f" {window!r} ({exc})."
            ) from exc
        if not valid.all():
            data[:, ~valid] = 0
        tile = Region(data, valid)
        self._tiles[key] = tile
        self.decoded += 1
        if len(self._tiles) > self.capacity:
            self._tiles.popitem(last=False)
        return tile

    def _valid(self, data: np.ndarray, window: Window) -> np.ndarray:
        """Where the tile's pixels hold data: not nodata (any band), else the band's mask."""
        if self.nodata is not None:
            invalid = np.isnan(data) if math.isnan(self.nodata) else data == self.nodata
            return ~invalid.all(axis=0)
        valid = np.ones(data.shape[1:], dtype=bool)
        if np.issubdtype(data.dtype, np.floating):
            valid &= np.isfinite(data).all(axis=0)
        if MaskFlags.all_valid in self.dataset.mask_flag_enums[self.bands[0] - 1]:
            return valid
        return valid & (self.dataset.read_masks(self.bands[0], window=window) > 0)
