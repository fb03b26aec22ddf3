"""A chip resampled to a coarser --gsd is read from the scene's overview, not full resolution."""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.windows import Window

from geovlm.scenes.scene import open_scene
from geovlm.scenes.tiling import SceneTiler, TilingOptions


def _noise_scene(path, side: int, overviews: list[int]) -> None:
    rng = np.random.default_rng(3)
    with rasterio.open(
        path, "w", driver="GTiff", width=side, height=side, count=3, dtype="uint8",
        crs="EPSG:32618", transform=from_origin(500000, 4500000, 0.5, 0.5),
        tiled=True, blockxsize=256, blockysize=256,
    ) as dst:
        dst.write(rng.integers(0, 256, (3, side, side), dtype=np.uint8))
    if overviews:
        with rasterio.open(path, "r+") as dst:
            # Nearest: the overview's pixels differ from an average over full resolution.
            dst.build_overviews(overviews, Resampling.nearest)


def _first_chip(path, size: int, factor: int) -> np.ndarray:
    gsd = factor * open_scene(path).resolution_m[0]  # exactly `factor` source pixels per pixel
    with SceneTiler(path, TilingOptions(size, 0, gsd=gsd)) as tiler:
        chip = next(iter(tiler.chips()))
    assert chip.window.width == size * factor
    return np.asarray(chip.image)


def test_a_4x_coarser_gsd_reads_the_4x_overview(tmp_path):
    path = tmp_path / "noise.tif"
    _noise_scene(path, 1024, [2, 4])
    pixels = _first_chip(path, 128, 4)
    with rasterio.open(path, overview_level=1) as overview:  # level 1 = factor 4
        expected = overview.read(window=Window(0, 0, 128, 128))
    np.testing.assert_array_equal(pixels, expected.transpose(1, 2, 0))


def test_without_overviews_the_chip_averages_full_resolution(tmp_path):
    path = tmp_path / "noise.tif"
    _noise_scene(path, 1024, [])
    pixels = _first_chip(path, 128, 4)
    with rasterio.open(path) as ds:
        full = ds.read(window=Window(0, 0, 512, 512)).astype(np.float64)
    average = full.reshape(3, 128, 4, 128, 4).mean(axis=(2, 4)).transpose(1, 2, 0)
    assert np.abs(pixels - average).max() <= 1.0  # GDAL's average, rounded to uint8
