"""An event's scenes in three CRSs, opened before the model, with a broken one left out."""

import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.warp import Resampling, calculate_default_transform, reproject
from shapely.ops import unary_union

from geovlm.errors import InputError
from geovlm.pipeline.run_scenes import survey_scenes
from geovlm.scenes.entry import scene_entries
from geovlm.scenes.reprojection import reproject_polygon
from geovlm.scenes.tiling import TilingOptions

WGS84 = CRS.from_epsg(4326)
TILING = TilingOptions(size=256, min_valid=0.0)


def _warped(source: Path, target: Path, crs: CRS) -> Path:
    with rasterio.open(source) as src:
        transform, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds)
        profile = {**src.profile, "crs": crs, "transform": transform, "width": width,
                   "height": height, "driver": "GTiff"}
        for key in ("blockxsize", "blockysize", "tiled", "compress", "interleave", "photometric"):
            profile.pop(key, None)
        with rasterio.open(target, "w", **profile) as dst:
            for band in range(1, src.count + 1):
                reproject(rasterio.band(src, band), rasterio.band(dst, band),
                          resampling=Resampling.nearest)
    return target


@pytest.fixture()
def event(tmp_path: Path, geotiff_dir: Path) -> list[str]:
    """NAIP in UTM 14N, a Web Mercator COG, that COG warped to EPSG:4326, and a broken file."""
    cogeo = geotiff_dir / "rasterio" / "cogeo.tif"
    broken = tmp_path / "broken.tif"
    broken.write_text("not a raster")
    return [
        str(geotiff_dir / "opengeos" / "m_4709963_se_14_1_20200831.tif"),
        str(cogeo),
        str(broken),
        str(_warped(cogeo, tmp_path / "cogeo_4326.tif", WGS84)),
    ]


def test_broken_scene_listed_and_warned_the_rest_opened(
    event: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        scenes = survey_scenes(scene_entries(event), TILING)
    assert [entry.path for entry, _ in scenes.opened] == [event[0], event[1], event[3]]
    assert [failed.scene for failed in scenes.failed] == [event[2]]
    assert "GDAL" in scenes.failed[0].reason
    assert "scene 3 of 4" in caplog.text and event[2] in caplog.text
    assert [tiler.info.crs.to_epsg() for _, tiler in scenes.opened] == [26914, 3857, 4326]
    assert scenes.crs == WGS84  # the scenes differ in CRS


def test_shared_crs_kept_and_dst_crs_obeyed(event: list[str]) -> None:
    assert survey_scenes(scene_entries([event[1]]), TILING).crs == CRS.from_epsg(3857)
    assert (survey_scenes(scene_entries(event[:2]), TILING, dst_crs="EPSG:32614").crs
            == CRS.from_epsg(32614))


def test_all_broken_refused_in_one_sentence(event: list[str]) -> None:
    with pytest.raises(InputError, match="None of the 2 scenes opens") as caught:
        survey_scenes(scene_entries([event[2], event[2] + ".missing"]), TILING)
    assert "\n" not in str(caught.value)


def test_chip_polygons_tile_each_scenes_reprojected_footprint(event: list[str]) -> None:
    """Every scene's chips, reprojected into the event's CRS, cover exactly its footprint there."""
    scenes = survey_scenes(scene_entries(event), TILING)
    for _, tiler in scenes.opened:
        info = tiler.info
        footprint = scenes.footprint(info)
        with tiler:
            chips = [reproject_polygon(chip.footprint, info.crs, scenes.crs)
                     for chip in tiler.chips()]
        assert len(chips) == len(tiler.cells) > 1
        covered = unary_union(chips)
        assert covered.symmetric_difference(footprint).area < 1e-6 * footprint.area
        # No chip straddles out of its scene: each lies within the footprint to a tiny margin.
        margin = np.sqrt(footprint.area) * 1e-6
        assert all(chip.within(footprint.buffer(margin)) for chip in chips)
