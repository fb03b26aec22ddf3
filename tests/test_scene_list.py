"""Expanding an event's scene arguments, and the one CRS of its layer with exact footprints."""

from pathlib import Path

import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.warp import transform_bounds
from shapely.geometry import Point, box

from geovlm.errors import InputError, ParameterError
from geovlm.scenes.listing import expand_scenes
from geovlm.scenes.reprojection import EVENT_DEFAULT_CRS, event_crs, reproject_polygon


@pytest.fixture()
def event_dir(tmp_path: Path, geotiff_dir: Path) -> Path:
    folder = tmp_path / "event"
    folder.mkdir()
    for name in ("b.tif", "a.TIF", "c.vrt", "notes.md"):
        (folder / name).write_bytes(b"")
    (folder / "sub").mkdir()
    (folder / "sub" / "d.tif").write_bytes(b"")
    return folder


def test_folder_gives_its_rasters_sorted_not_recursive(event_dir: Path) -> None:
    assert [Path(p).name for p in expand_scenes([str(event_dir)])] == ["a.TIF", "b.tif", "c.vrt"]


def test_glob_and_recursive_glob(event_dir: Path) -> None:
    assert [Path(p).name for p in expand_scenes([f"{event_dir}/*.tif"])] == ["b.tif"]
    found = expand_scenes([f"{event_dir}/**/*.tif"])
    assert [Path(p).name for p in found] == ["b.tif", "d.tif"]


def test_text_file_of_paths_relative_to_itself(event_dir: Path) -> None:
    listing = event_dir / "scenes.txt"
    listing.write_text("# the event\nb.tif\n\nsub/d.tif\n/vsicurl/https://example.org/x.tif\n")
    assert expand_scenes([str(listing)]) == [
        str(event_dir / "b.tif"), str(event_dir / "sub" / "d.tif"),
        "/vsicurl/https://example.org/x.tif",
    ]


def test_each_scene_once_in_first_order(event_dir: Path) -> None:
    b = str(event_dir / "b.tif")
    scenes = expand_scenes([b, str(event_dir), "https://example.org/x.tif", b])
    assert [Path(p).name for p in scenes] == ["b.tif", "a.TIF", "c.vrt", "x.tif"]


@pytest.mark.parametrize("name", ["missing.tif", "nothing/*.tif"])
def test_missing_scene_refused_in_one_sentence(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError) as caught:
        expand_scenes([str(tmp_path / name)])
    assert "\n" not in str(caught.value) and str(tmp_path) in str(caught.value)


def test_empty_folder_and_empty_list_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no \.tif"):
        expand_scenes([str(tmp_path)])
    (tmp_path / "scenes.txt").write_text("# nothing yet\n\n")
    with pytest.raises(InputError, match="lists no scenes"):
        expand_scenes([str(tmp_path / "scenes.txt")])
    with pytest.raises(InputError, match="No scene given"):
        expand_scenes([])


def test_event_crs_choice() -> None:
    utm14, mercator = CRS.from_epsg(26914), CRS.from_epsg(3857)
    assert event_crs([utm14, utm14]) == utm14
    assert event_crs([utm14, mercator]) == EVENT_DEFAULT_CRS
    assert event_crs([utm14, mercator], "EPSG:32614") == CRS.from_epsg(32614)
    with pytest.raises(ParameterError, match="--dst-crs"):
        event_crs([utm14], "EPSG:not-a-code")


def test_reprojected_footprint_matches_the_scene_bounds(geotiff_dir: Path) -> None:
    """A scene's whole footprint, reprojected, has the bounds GDAL's densified transform gives."""
    with rasterio.open(geotiff_dir / "opengeos" / "m_4709963_se_14_1_20200831.tif") as scene:
        crs, bounds = scene.crs, scene.bounds
    footprint = box(*bounds)
    for dst in (CRS.from_epsg(4326), CRS.from_epsg(3857)):
        reprojected = reproject_polygon(footprint, crs, dst)
        expected = transform_bounds(crs, dst, *bounds, densify_pts=101)
        span = expected[2] - expected[0]
        assert reprojected.bounds == pytest.approx(expected, abs=span * 1e-6)
        assert len(reprojected.exterior.coords) > 100  # the edges are curves, densified
    assert reproject_polygon(footprint, crs, crs) is footprint


def test_densified_edges_follow_the_curve() -> None:
    """Over a wide UTM square, the edge's midpoint lies off the straight line between corners."""
    utm = CRS.from_epsg(32614)
    square = box(200_000, 5_000_000, 800_000, 5_600_000)
    dense = reproject_polygon(square, utm, EVENT_DEFAULT_CRS)
    corners = reproject_polygon(square, utm, EVENT_DEFAULT_CRS, edge_points=1)
    assert len(corners.exterior.coords) == 5
    assert dense.symmetric_difference(corners).area > 1e-3 * dense.area
    # Every densified point lies on the square's edges: transformed exactly, not interpolated.
    back = reproject_polygon(dense, EVENT_DEFAULT_CRS, utm, edge_points=1)
    assert max(square.exterior.distance(Point(xy)) for xy in back.exterior.coords) < 1e-3
