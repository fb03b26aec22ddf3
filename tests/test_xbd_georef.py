"""Georeferencing xBD tiles: the affine fit, `geovlm xbd georef` outputs, and its refusals."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from click.testing import CliRunner
from PIL import Image

from geovlm.cli import cli
from geovlm.errors import GeoreferenceError, OutputError
from geovlm.sources.georef import AffineFit
from geovlm.sources.xbd import Phase, read_xbd
from geovlm.tasks.xbd_georef import fit_tile, georeference_xbd
from tests.helpers import assert_valid_geopackage
from tests.synthetic_xbd import write_synthetic_xbd


def test_real_tiles_fit_within_two_hundredths_of_a_pixel(real_xbd):
    tiles = read_xbd(real_xbd)
    fits = {(t.name, t.phase): fit_tile(t) for t in tiles}
    for tile in tiles:
        fit = fits[tile.name, tile.phase]
        assert fit.points == len(tile.control_points()[0])
        assert fit.rms_px < 0.01 and fit.max_px < 0.02, (tile.stem, fit)
        # About half-metre pixels on a north-up grid (xBD's imagery, not the label's gsd).
        t = fit.transform
        lat = math.radians((t @ (512, 512))[1])
        assert 0.4 < t.a * 111_320 * math.cos(lat) < 0.55 and 0.4 < -t.e * 111_320 < 0.55
        assert abs(t.b) < 0.05 * t.a and abs(t.d) < 0.05 * -t.e
    for name in {t.name for t in tiles}:
        # Pre and post labels place their images at the same spot, within a pixel.
        pre, post = fits[name, Phase.PRE].transform, fits[name, Phase.POST].transform
        for corner in [(0, 0), (1024, 1024)]:
            col, row = ~pre @ (post @ corner)
            assert math.hypot(col - corner[0], row - corner[1]) < 1


def test_an_exact_affine_is_recovered():
    rng = np.random.default_rng(1)
    truth = Affine(4.5e-6, 3e-8, -90.84, 4e-8, -4.4e-6, 14.44)
    pixels = rng.uniform(0, 1024, (20, 2))
    lonlat = np.column_stack(truth @ (pixels[:, 0], pixels[:, 1]))
    fit = AffineFit.from_points(pixels, lonlat, source="test")
    assert fit.transform.almost_equals(truth, precision=1e-12)
    assert fit.rms_px < 1e-6 and fit.points == 20
    lonlat[0] += (10 * truth.a, 0)  # one point 10 pixels off
    off = AffineFit.from_points(pixels, lonlat, source="test")
    assert 1 < off.rms_px < off.max_px < 10


@pytest.mark.parametrize(
    ("pixels", "lonlat", "message"),
    [
        ([[0, 0], [5, 5], [0, 0]], [[0, 0], [1, 1], [0, 0]], "has 2 distinct control point(s)"),
        ([[0, 0], [1, 1], [2, 2], [3, 3]], [[0, 0], [1, 0], [2, 1], [3, 2]], "on one line"),
        ([[0, 0], [1, 0], [0, 1]], [[5, 5], [5, 5], [5, 5]], "longitude/latitude points"),
    ],
)
def test_too_few_or_collinear_points_are_refused(pixels, lonlat, message):
    with pytest.raises(GeoreferenceError) as caught:
        AffineFit.from_points(pixels, lonlat, source="labels/x.json")
    assert str(caught.value).startswith("labels/x.json has ") and message in str(caught.value)


def test_synthetic_tiles_fit_exactly(synthetic_xbd):
    for tile in read_xbd(synthetic_xbd):
        fit = fit_tile(tile)
        assert fit.rms_px < 1e-6 and fit.max_px < 1e-6
        lat = math.radians(fit.transform.f)
        assert fit.transform.a * 111_320 * math.cos(lat) == pytest.approx(0.5)


def _one_event(tmp_path, tiles=2):
    return write_synthetic_xbd(tmp_path / "xbd", tiles, {"synthfire-a": "fire"})


def _drop_buildings(folder, stem):
    label = folder / "labels" / f"{stem}.json"
    data = json.loads(label.read_text())
    data["features"] = {"lng_lat": [], "xy": []}
    label.write_text(json.dumps(data))


def test_a_tile_without_buildings_cannot_be_georeferenced(tmp_path):
    folder = _one_event(tmp_path, tiles=1)
    _drop_buildings(folder, "synthfire-a_00000000_post_disaster")
    [_, post] = read_xbd(folder)
    with pytest.raises(GeoreferenceError, match="lists no buildings, so nothing ties"):
        fit_tile(post)


def _georef(*args):
    return CliRunner().invoke(cli, ["xbd", "georef", *map(str, args)])


def test_georef_real_post_tiles(real_xbd, tmp_path):
    out = tmp_path / "out"
    result = _georef(real_xbd, "-o", out, "--phase", "post")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0].split() == ["tile", "phase", "buildings", "points", "rms", "px", "max", "px"]
    assert lines[3].split()[:4] == ["hurricane-florence_00000480", "post", "14", "95"]
    assert lines[-1].startswith("Wrote 6 GeoTIFFs and 133 buildings to")
    tiles = read_xbd(real_xbd, "post")
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{t.stem}.tif" for t in tiles]
    for tile in tiles:
        with rasterio.open(out / "images" / f"{tile.stem}.tif") as dataset:
            assert dataset.crs.to_epsg() == 4326
            assert dataset.transform == fit_tile(tile).transform
            assert dataset.profile["tiled"] and dataset.compression.value == "DEFLATE"
            assert dataset.block_shapes == [(256, 256)] * 3
            assert [c.name for c in dataset.colorinterp] == ["red", "green", "blue"]
            with Image.open(tile.image) as image:
                assert np.array_equal(dataset.read(), np.moveaxis(np.asarray(image), -1, 0))
            # Each building's lon/lat outline falls on its pixel outline in the GeoTIFF.
            for building in tile.buildings[:5]:
                lon, lat = building.lonlat.centroid.coords[0]
                col, row = ~dataset.transform @ (lon, lat)
                x, y = building.pixels.centroid.coords[0]
                assert math.hypot(col - x, row - y) < 0.02
    buildings = pyogrio.read_dataframe(out / "buildings.gpkg", layer="buildings")
    assert list(buildings.columns) == [
        "tile", "phase", "uid", "damage", "disaster", "disaster_type", "geometry"
    ]
    assert buildings.crs.to_epsg() == 4326 and len(buildings) == 133
    counts = buildings.groupby(["tile", "damage"]).size().to_dict()
    assert counts[("hurricane-florence_00000480", "major-damage")] == 14
    assert counts[("santa-rosa-wildfire_00000242", "destroyed")] == 60
    florence = buildings[buildings.tile == "hurricane-florence_00000480"]
    assert set(florence.disaster_type) == {"flood"} and set(florence.phase) == {"post"}
    layer = pyogrio.read_dataframe(out / "buildings.gpkg", layer="tiles")
    assert list(layer.columns) == [
        "tile", "phase", "image", "disaster", "disaster_type", "sensor", "gsd", "capture_date",
        "buildings", "points", "rms_px", "max_px", "geometry",
    ]
    assert layer.image.tolist() == [f"images/{t.stem}.tif" for t in tiles]
    assert (layer.rms_px < 0.01).all() and layer.buildings.sum() == 133
    assert buildings.geometry.within(layer.geometry.union_all()).all()
    assert_valid_geopackage(out / "buildings.gpkg")
    chips = tmp_path / "chips.gpkg"
    scene = out / "images" / "hurricane-florence_00000480_post_disaster.tif"
    tiled = CliRunner().invoke(cli, ["tile", str(scene), "-o", str(chips)])
    assert tiled.exit_code == 0 and "Wrote 4 chips" in tiled.output, tiled.output
    assert_valid_geopackage(chips)


def test_georef_both_phases_and_tile_the_result(synthetic_xbd, tmp_path):
    out = tmp_path / "out"
    result = _georef(synthetic_xbd, "-o", out, "-q")
    assert result.exit_code == 0 and result.output == ""
    buildings = pyogrio.read_dataframe(out / "buildings.gpkg", layer="buildings")
    tiles = read_xbd(synthetic_xbd)
    assert len(buildings) == sum(len(t.buildings) for t in tiles)
    assert buildings.damage.isna().sum() == sum(len(t.buildings) for t in tiles
                                                if t.phase is Phase.PRE)
    assert len(list((out / "images").glob("*.tif"))) == len(tiles) == 48
    assert_valid_geopackage(out / "buildings.gpkg")
    # Every other command takes the GeoTIFFs: `tile` cuts one into chips in EPSG:4326.
    scene = out / "images" / "synthvolcano-b_00000001_post_disaster.tif"
    chips = tmp_path / "chips.gpkg"
    tiled = CliRunner().invoke(cli, ["tile", str(scene), "-o", str(chips), "--size", "32"])
    assert tiled.exit_code == 0, tiled.output
    frame = pyogrio.read_dataframe(chips, layer="chips")
    footprint = pyogrio.read_dataframe(out / "buildings.gpkg", layer="tiles", where=(
        "tile = 'synthvolcano-b_00000001' AND phase = 'post'")).geometry[0]
    assert len(frame) == 4 and frame.crs.to_epsg() == 4326
    assert shapely.union_all(frame.geometry).symmetric_difference(footprint).area < 1e-15


def test_tiles_without_buildings_are_skipped_with_a_warning(tmp_path, caplog):
    folder = _one_event(tmp_path)
    _drop_buildings(folder, "synthfire-a_00000001_pre_disaster")
    out = tmp_path / "out"
    result = _georef(folder, "-o", out)
    assert result.exit_code == 0, result.output
    assert "Wrote 3 GeoTIFFs" in result.stderr and "1 tiles skipped" in result.stderr
    assert "skipped synthfire-a_00000001_pre_disaster: " in caplog.text
    assert not (out / "images" / "synthfire-a_00000001_pre_disaster.tif").exists()
    assert_valid_geopackage(out / "buildings.gpkg")
    for stem in ("synthfire-a_00000000_pre_disaster", "synthfire-a_00000000_post_disaster",
                 "synthfire-a_00000001_post_disaster"):
        _drop_buildings(folder, stem)
    result = _georef(folder, "-o", tmp_path / "none")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1].startswith(
        f"Error: no tile of {folder} can be georeferenced, the first because "
    )
    assert not (tmp_path / "none").exists()


def test_progress_json_lines(tmp_path):
    folder = _one_event(tmp_path)
    result = _georef(folder, "-o", tmp_path / "out", "--progress", "json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == ["start"] + ["progress"] * 4 + ["done"]
    done = events[-1]
    assert done["written"] == 4 and done["skipped"] == [] and done["max_rms_px"] < 1e-6
    assert result.stderr == ""


def test_existing_output_is_refused_unless_overwritten(tmp_path):
    folder = _one_event(tmp_path)
    out = tmp_path / "out"
    assert _georef(folder, "-o", out, "--phase", "pre").exit_code == 0
    refused = _georef(folder, "-o", out)
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (
        f"Error: {out} already holds georeferenced xBD tiles; pass --overwrite to replace them,"
        " or choose another folder."
    )
    assert _georef(folder, "-o", out, "--phase", "post", "--overwrite").exit_code == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "synthfire-a_00000000_post_disaster.tif", "synthfire-a_00000001_post_disaster.tif"
    ]
    assert set(pyogrio.read_dataframe(out / "buildings.gpkg", layer="tiles").phase) == {"post"}


def _one_error_line(result, message, usage=False):
    """Exit 2 with one ``Error:`` line (after click's two usage lines for a usage mistake)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    if usage:
        assert lines[0].startswith("Usage: ") and len(lines) == 3, result.stderr
        lines = lines[2:]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
    assert "Traceback" not in result.output


def test_bad_arguments_and_inputs_exit_2_in_one_line(real_xbd, tmp_path):
    folder = _one_event(tmp_path)
    _one_error_line(_georef(real_xbd), "Missing option '-o' / '--output'", usage=True)
    _one_error_line(_georef(real_xbd, "-o", tmp_path / "o", "--phase", "during"),
                    "Invalid value for '--phase': 'during' is not one of 'both', 'pre', 'post'",
                    usage=True)
    _one_error_line(_georef(real_xbd.parent, "-o", tmp_path / "o"),
                    f"Error: {real_xbd.parent} is not an xBD folder (it lacks images/ or labels/)")
    (tmp_path / "file").write_text("")
    _one_error_line(_georef(folder, "-o", tmp_path / "file"), "file' is a file.", usage=True)
    with pytest.raises(OutputError, match="is a file; give a folder for the output"):
        georeference_xbd(folder, tmp_path / "file")
    image = folder / "images" / "synthfire-a_00000001_post_disaster.png"
    Image.new("RGB", (32, 64)).save(image)
    _one_error_line(_georef(folder, "-o", tmp_path / "o"),
                    f"Error: {image} is 32x64 pixels but synthfire-a_00000001_post_disaster.json"
                    " describes 64x64; use the image the label was made for.")
    image.write_bytes(b"not a png")
    _one_error_line(_georef(folder, "-o", tmp_path / "o"),
                    f"Error: {image} is not a readable image")
    assert not (tmp_path / "o").exists()


def test_help_describes_the_command():
    result = CliRunner().invoke(cli, ["xbd", "georef", "--help"])
    assert result.exit_code == 0
    for text in ("XBD_DIR", "--phase [both|pre|post]", "--overwrite", "--progress",
                 "buildings.gpkg"):
        assert text in result.output
    assert "georef" in CliRunner().invoke(cli, ["xbd", "--help"]).output


def test_copy_of_real_tile_without_image_is_refused(real_xbd, tmp_path):
    shutil.copytree(real_xbd / "labels", tmp_path / "labels")
    (tmp_path / "images").mkdir()
    _one_error_line(_georef(tmp_path, "-o", tmp_path / "o"), "has no image")
