"""Ground scale in true metres at the scene centre, whatever the CRS (issue 6 §1).

Every expected figure is computed here by another route than geovlm's: a geodesic across the
whole scene, PROJ's analytic scale factors (`Proj.get_factors`), or closed-form ellipsoid arcs.
"""

from __future__ import annotations

import json
import math
import sqlite3
from contextlib import closing

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Geod, Proj, Transformer
from rasterio.crs import CRS
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform

from geovlm.errors import InputError
from geovlm.scenes.scene import open_scene

WGS84 = Geod(ellps="WGS84")
#: WGS84 semi-major axis and first eccentricity squared.
A, E2 = WGS84.a, WGS84.es


def _write(path, transform_: Affine, crs: str | CRS, width: int = 64, height: int = 48) -> None:
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
        crs=crs, transform=transform_,
    ) as dst:
        dst.write(np.full((1, height, width), 100, np.uint8))


def _centre_lonlat(path) -> tuple[float, float]:
    with rasterio.open(path) as src:
        x, y = src.transform @ (src.width / 2, src.height / 2)
        lon, lat = transform(src.crs, "EPSG:4326", [x], [y])
    return lon[0], lat[0]


def _conformal_scale(crs: str, lon: float, lat: float) -> float:
    """PROJ's point scale factor of a conformal projection (equal in every direction)."""
    factors = Proj(crs).get_factors(lon, lat)
    assert factors.meridional_scale == pytest.approx(factors.parallel_scale, rel=1e-9)
    return factors.parallel_scale


def test_web_mercator_pixels_are_measured_on_the_ground(geotiff_dir):
    path = geotiff_dir / "rasterio/cogeo.tif"  # EPSG:3857 at 37.7 deg N, 0.597 m nominal
    info = open_scene(path)
    # Independent figure: the geodesic across the whole scene through its centre, per pixel.
    w, h, t = info.width, info.height, info.transform
    ends = [t @ (0, h / 2), t @ (w, h / 2), t @ (w / 2, 0), t @ (w / 2, h)]
    lon, lat = transform(info.crs, "EPSG:4326", *zip(*ends, strict=True))
    _, _, across = WGS84.inv(lon[0::2], lat[0::2], lon[1::2], lat[1::2])
    assert info.resolution_m == pytest.approx((across[0] / w, across[1] / h), rel=1e-5)
    # The nominal 0.597 m is ~cos(37.7 deg) too large; EPSG:3857 is not conformal on the
    # ellipsoid, so x and y differ by a few per mille.
    assert t.a == pytest.approx(0.5972, abs=1e-4)
    assert info.resolution_m == pytest.approx((0.4733, 0.4713), abs=1e-4)


def test_utm_scene_has_a_scale_factor_near_one(geotiff_dir):
    path = geotiff_dir / "solaris/sample_geotiff.tif"  # EPSG:32616, 0.5 m, Atlanta
    info = open_scene(path)
    k = _conformal_scale("EPSG:32616", *_centre_lonlat(path))
    assert abs(k - 1) < 1e-3
    assert info.resolution_m == pytest.approx((0.5 / k, 0.5 / k), rel=1e-6)


def test_geographic_scene_at_the_equator(geotiff_dir):
    info = open_scene(geotiff_dir / "rasterio/world.rgb.tif")  # 0.703125 deg, centred at 0, 0
    step = math.radians(0.703125)
    # Along the equator: an arc of radius a; along the meridian: radius a (1 - e^2) there.
    assert info.resolution_m == pytest.approx((A * step, A * (1 - E2) * step), rel=1e-6)


def test_geographic_scene_at_60_degrees_north(tmp_path):
    path = tmp_path / "north.tif"
    _write(path, Affine(0.001, 0, 10.0, 0, -0.001, 60.024), "EPSG:4326")  # centre at 60 deg N
    info = open_scene(path)
    phi, step = math.radians(60.0), math.radians(0.001)
    n = A / math.sqrt(1 - E2 * math.sin(phi) ** 2)  # radius of the parallel: N cos(phi)
    m = A * (1 - E2) / (1 - E2 * math.sin(phi) ** 2) ** 1.5  # meridian's radius of curvature
    assert info.resolution_m == pytest.approx((n * math.cos(phi) * step, m * step), rel=1e-6)


def test_polar_stereographic_warp(geotiff_dir, tmp_path):
    crs = "EPSG:3413"  # NSIDC sea ice north, true scale at 70 deg N
    source = geotiff_dir / "rasterio/cogeo.tif"
    path = tmp_path / "polar.tif"
    with rasterio.open(source) as src:
        dst_transform, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds
        )
        data = np.zeros((1, height, width), np.uint8)
        reproject(
            rasterio.band(src, 1), data, dst_transform=dst_transform, dst_crs=crs,
            resampling=Resampling.nearest,
        )
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
        crs=crs, transform=dst_transform,
    ) as dst:
        dst.write(data)
    info = open_scene(path)
    k = _conformal_scale(crs, *_centre_lonlat(path))
    assert k > 1.15  # 37.7 deg N is far from the true-scale latitude
    nominal = dst_transform.a, -dst_transform.e
    assert info.resolution_m == pytest.approx((nominal[0] / k, nominal[1] / k), rel=1e-5)


def test_polar_stereographic_scene_centred_on_the_pole(tmp_path):
    path = tmp_path / "antarctica.tif"
    _write(path, Affine(1000, 0, -32_000, 0, -1000, 24_000), "EPSG:3031")  # centre at 0, 0
    k = _conformal_scale("EPSG:3031", 0.0, -90.0)
    assert k == pytest.approx(0.972, abs=1e-3)
    assert open_scene(path).resolution_m == pytest.approx((1000 / k, 1000 / k), rel=1e-5)


def test_rotated_geotransform_with_non_square_pixels(tmp_path):
    # 2 m x 3 m grid cells turned by 30 deg, centred at 10 E 40 N in polar stereographic.
    width, height = 64, 48
    x0, y0 = Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True).transform(10, 40)
    grid = (
        Affine.translation(x0, y0) @ Affine.rotation(30) @ Affine.scale(2, -3)
        @ Affine.translation(-width / 2, -height / 2)
    )
    path = tmp_path / "rotated.tif"
    _write(path, grid, "EPSG:3413", width, height)
    k = _conformal_scale("EPSG:3413", 10, 40)
    assert k > 1.15
    assert open_scene(path).resolution_m == pytest.approx((2 / k, 3 / k), rel=1e-5)


def test_local_engineering_grid_uses_its_axis_units(tmp_path):
    feet = CRS.from_wkt(
        'LOCAL_CS["site grid",UNIT["US survey foot",0.304800609601219],'
        'AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    )
    path = tmp_path / "local.tif"
    _write(path, Affine(2, 0, 0, 0, -4, 0), feet)
    assert open_scene(path).resolution_m == pytest.approx((0.6096012, 1.2192024), rel=1e-7)


def test_centre_off_the_earth_is_refused(tmp_path):
    path = tmp_path / "beyond_the_pole.tif"
    _write(path, Affine(1, 0, 0, 0, -1, 140), "EPSG:4326")  # rows from 140 to 92 deg N
    with pytest.raises(InputError, match="does not lie on the Earth"):
        open_scene(path)


def test_runs_record_the_measured_ground_scale(geotiff_dir, tmp_path):
    """Chips are cut by ground distance, so the scene's measured scale is part of the signature."""
    from geovlm.events.progress import ProgressMode
    from geovlm.pipeline.plan import RunOptions
    from geovlm.pipeline.run_scenes import one_scene
    from geovlm.scenes.tiling import TilingOptions
    from geovlm.tasks.tile import tile_scene

    out = tmp_path / "o.gpkg"
    tile_scene(one_scene(geotiff_dir / "rasterio/cogeo.tif", TilingOptions(256)),
               RunOptions(out, progress=ProgressMode.NONE))
    with closing(sqlite3.connect(out)) as db:
        (parameters,) = db.execute("SELECT parameters FROM runs").fetchone()
    res_x, res_y = json.loads(parameters)["scene_resolution_m"]
    assert res_x == pytest.approx(0.4733, abs=1e-4) and res_y == pytest.approx(0.4713, abs=1e-4)
