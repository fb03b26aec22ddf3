"""Scenes and footprints for ``geovlm damage``: a real post raster, its pre twin in another CRS.

The post scene is rasterio's ``cogeo.tif`` (Web Mercator, 0.6 m nominal pixels, an internal
mask); the pre scene is the same raster warped to UTM 54N at 0.8 m (another CRS, resolution and
pixel grid, so no pixel of one lies on a pixel of the other); the footprints are a grid of
rectangles written in WGS 84 (another CRS again).
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject
from shapely.geometry import box

POST = "rasterio/cogeo.tif"
PRE_CRS = "EPSG:32654"


def warp_scene(source: Path, target: Path, crs: str = PRE_CRS, resolution: float = 0.8,
               block: int = 256) -> Path:
    """Write `source` warped to `crs` at `resolution` (the pre-disaster twin of a scene)."""
    with rasterio.open(source) as src:
        transform, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds, resolution=resolution)
        profile = {"driver": "GTiff", "width": width, "height": height, "count": src.count,
                   "dtype": src.dtypes[0], "crs": crs, "transform": transform, "tiled": True,
                   "blockxsize": block, "blockysize": block, "compress": "deflate",
                   "nodata": 0}
        with rasterio.open(target, "w", **profile) as dst:
            for band in range(1, src.count + 1):
                reproject(rasterio.band(src, band), rasterio.band(dst, band),
                          resampling=Resampling.bilinear, dst_nodata=0)
    return target


def footprint_grid(scene: Path, target: Path, per_side: int, size_m: tuple[float, float] = (
        10.0, 8.0), crs: str = "EPSG:4326", inset: float = 0.0) -> Path:
    """Write a `per_side` x `per_side` grid of rectangles over `scene`, in `crs`."""
    with rasterio.open(scene) as src:
        left, bottom, right, top = src.bounds
        scene_crs = src.crs
    left, bottom, right, top = left + inset, bottom + inset, right - inset, top - inset
    # Web Mercator units are ground metres times 1/cos(latitude): size the boxes in metres.
    lat = np.radians(gpd.GeoSeries.from_xy([0], [(top + bottom) / 2], crs=scene_crs)
                     .to_crs(4326).y[0])
    units = 1 / np.cos(lat) if scene_crs.to_epsg() == 3857 else 1.0
    half_w, half_h = size_m[0] * units / 2, size_m[1] * units / 2
    boxes = [box(x - half_w, y - half_h, x + half_w, y + half_h)
             for y in np.linspace(top, bottom, per_side + 2)[1:-1]
             for x in np.linspace(left, right, per_side + 2)[1:-1]]
    gpd.GeoDataFrame({"name": [f"b{i}" for i in range(len(boxes))]}, geometry=boxes,
                     crs=scene_crs).to_crs(crs).to_file(target)
    return target
