"""``geovlm refer`` end to end: real xBD tiles, SpaceNet, reprojection, rotation, models."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
from affine import Affine
from click.testing import CliRunner
from shapely.geometry import box

from geovlm.cli import cli
from tests.helpers import assert_valid_geopackage

SPACENET = "solaris/sample_geotiff.tif"
SPACENET_LABELS = "vector/solaris/geotiff_labels.geojson"


def _refer(*args: object) -> object:
    return CliRunner().invoke(cli, ["refer", *map(str, args)])


def _objects(path: Path) -> gpd.GeoDataFrame:
    return pyogrio.read_dataframe(path, layer="objects")


def test_real_xbd_tiles_are_referred_uniquely(real_xbd, real_xbd_georef, tmp_path):
    frames = []
    for image in sorted((real_xbd_georef / "images").glob("*.tif")):
        out = tmp_path / f"{image.stem}.gpkg"
        label = real_xbd / "labels" / f"{image.stem}.json"
        result = _refer(image, "--xbd-labels", label, "-o", out)
        assert result.exit_code == 0, result.output
        frames.append(_objects(out))
    objects = gpd.pd.concat(frames)
    assert len(objects) == 133
    assert (objects["ambiguous"] == 0).mean() >= 0.99
    assert set(objects["damage"]) <= {"no-damage", "minor-damage", "major-damage", "destroyed",
                                      "un-classified"}
    assert (objects["expression"] == objects["expression_rule"]).all()
    assert objects["rewrite_rejected"].isna().all() and (objects["language"] == "en").all()
    # Within a chip, no two unambiguous objects share an expression.
    unique = objects[objects["ambiguous"] == 0]
    assert not unique.duplicated(["run_id", "chip_id", "expression"]).any()
    assert_valid_geopackage(out)
    with closing(sqlite3.connect(out)) as db:
        styles = dict(db.execute("SELECT f_table_name, styleQML FROM layer_styles"))
        runs = db.execute("SELECT command, layer, status, written FROM runs").fetchall()
    assert 'attr="damage"' in styles["objects"] and 'fieldName="expression"' in styles["objects"]
    assert "215,25,28" in styles["objects"]  # destroyed in red
    assert runs == [("refer", "objects", "complete", len(frames[-1]))]


def test_spacenet_footprints_in_chinese_resume_and_chips(geotiff_dir, tmp_path):
    out = tmp_path / "spacenet.gpkg"
    args = (geotiff_dir / SPACENET, "--footprints", geotiff_dir.parent / SPACENET_LABELS,
            "-o", out, "--size", "256", "--language", "zh")
    first = _refer(*args)
    assert first.exit_code == 0, first.output
    assert "Wrote 43 objects" in first.output
    objects = _objects(out)
    assert len(objects) == 43 and objects["object_id"].is_unique
    assert (objects["language"] == "zh").all() and objects["damage"].isna().all()
    assert objects["expression"].str.contains("建筑").all()
    assert 0 < objects["cut"].sum() < 43
    chips = pyogrio.read_dataframe(out, layer="chips")
    assert chips["objects"].sum() == 43 and chips["caption"].isna().all()
    again = _refer(*args)
    assert again.exit_code == 0 and "Wrote 0 objects" in again.output
    assert "43 already done" in again.output
    assert len(_objects(out)) == 43
    assert_valid_geopackage(out)
    refused = _refer(*args[:-1], "ja")
    assert refused.exit_code == 2 and "different command or parameters" in refused.output


def test_wgs84_footprints_over_a_utm_raster(geotiff_dir, tmp_path):
    out = tmp_path / "dsm.gpkg"
    result = _refer(geotiff_dir / "opengeos/dsm.tif", "--footprints",
                    geotiff_dir.parent / "vector/opengeos/buildings.shp", "-o", out,
                    "--size", "128", "--min-valid", "0", "--progress", "json")
    assert result.exit_code == 0, result.output
    done = json.loads(result.output.strip().splitlines()[-1])
    assert done["event"] == "done" and done["written"] == 84
    assert done["source"]["outside"] == 0
    objects = _objects(out)
    assert objects.crs.to_epsg() == 26918
    assert objects.total_bounds[0] > 300000  # metres, not degrees


def test_north_is_map_north_on_a_rotated_raster(tmp_path):
    # Columns run north and rows east: the image's top edge is the west side of the map.
    scene = tmp_path / "rotated.tif"
    transform = Affine(0, 1, 500000, 1, 0, 4000000)
    with rasterio.open(scene, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
                       crs="EPSG:32616", transform=transform) as dataset:
        dataset.write(np.full((3, 64, 64), 120, dtype=np.uint8))
    north = box(500030, 4000055, 500034, 4000059)
    south = box(500030, 4000005, 500034, 4000009)
    labels = tmp_path / "two.gpkg"
    gpd.GeoDataFrame(geometry=[north, south], crs="EPSG:32616").to_file(labels)
    out = tmp_path / "rotated.gpkg"
    result = _refer(scene, "--footprints", labels, "-o", out, "--size", "64")
    assert result.exit_code == 0, result.output
    texts = list(_objects(out).sort_values("object_id")["expression"])
    assert texts == ["the building in the north", "the building in the south"]


def test_empty_footprints_and_refusals(geotiff_dir, tmp_path):
    scene = geotiff_dir / SPACENET
    empty = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame(geometry=[], crs="EPSG:32616").to_file(empty)
    out = tmp_path / "out.gpkg"
    result = _refer(scene, "--footprints", empty, "-o", out)
    assert result.exit_code == 0 and "Wrote 0 objects" in result.output
    far = tmp_path / "far.gpkg"
    gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs="EPSG:32616").to_file(far)
    cases = [
        ((scene, "-o", tmp_path / "a.gpkg"), "give exactly one of --footprints"),
        ((scene, "--detect", "--footprints", far, "-o", tmp_path / "a.gpkg"),
         "(got --footprints, --detect)"),
        ((scene, "--footprints", tmp_path / "missing.gpkg", "-o", tmp_path / "a.gpkg"),
         "does not exist; check the path."),
        ((scene, "--footprints", far, "-o", tmp_path / "a.gpkg"), "lies on"),
        ((scene, "--footprints", empty, "-o", tmp_path / "a.txt"), "not a GeoPackage path"),
        ((scene, "--footprints", empty, "-o", tmp_path / "a.gpkg", "--language", "fr"),
         "Invalid value for '--language'"),
        ((scene, "--xbd-labels", far, "-o", tmp_path / "a.gpkg"), "not named"),
        ((scene, "--footprints", far, "--footprints-layer", "nope", "-o", tmp_path / "a.gpkg"),
         "has no layer 'nope'; choose one of far."),
        ((scene, "--detect", "--footprints-layer", "far", "-o", tmp_path / "a.gpkg"),
         "--footprints-layer names a layer of --footprints"),
        ((scene, "--footprints", far, "--rewrite-model", tmp_path / "nomodel", "-o",
          tmp_path / "a.gpkg"), "nomodel is not a folder"),
        ((scene, "--footprints", far, "--caption-model", "gemma-aerial", "-o",
          tmp_path / "a.gpkg"), "reads text only"),
    ]
    for args, message in cases:
        result = _refer(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
        assert result.output.count("Error:") == 1
        assert not (tmp_path / "a.gpkg").exists()


def test_help_lists_the_sources():
    result = _refer("--help")
    assert result.exit_code == 0
    for option in ("--footprints", "--xbd-labels", "--detect", "--rewrite-model",
                   "--caption-model", "--language", "--size", "--overlap", "--batch-size"):
        assert option in result.output


def test_rewrite_model_keeps_only_faithful_rewrites(geotiff_dir, gemma_text_dir, tmp_path):
    out = tmp_path / "rewritten.gpkg"
    result = _refer(geotiff_dir / SPACENET, "--footprints", geotiff_dir.parent / SPACENET_LABELS,
                    "-o", out, "--size", "256", "--rewrite-model", gemma_text_dir,
                    "--quantize", "none", "--device", "cpu", "--progress", "json")
    assert result.exit_code == 0, result.output
    done = json.loads(result.output.strip().splitlines()[-1])
    objects = _objects(out)
    assert done["rewrites_kept"] + done["rewrites_rejected"] == len(objects) == 43
    assert set(objects["rewrite_rejected"]) <= {0, 1}
    rejected = objects[objects["rewrite_rejected"] == 1]
    assert (rejected["expression"] == rejected["expression_rule"]).all()
    assert_valid_geopackage(out)


def test_captions_and_detection_with_a_vision_model(geotiff_dir, qwen3_vl_dir, tmp_path):
    out = tmp_path / "detected.gpkg"
    result = _refer(geotiff_dir / SPACENET, "--detect", "--caption-model", qwen3_vl_dir,
                    "-o", out, "--size", "448", "--quantize", "none", "--device", "cpu",
                    "--progress", "json")
    assert result.exit_code == 0, result.output
    done = json.loads(result.output.strip().splitlines()[-1])
    chips = pyogrio.read_dataframe(out, layer="chips")
    assert len(chips) == 9 and chips["caption"].map(lambda c: isinstance(c, str)).all()
    objects = _objects(out)
    assert done["written"] == len(objects) == chips["objects"].sum()
    assert done["detect_skipped"] >= 0
    assert_valid_geopackage(out)
    captioned = tmp_path / "captioned.gpkg"
    result = _refer(geotiff_dir / SPACENET, "--footprints", geotiff_dir.parent / SPACENET_LABELS,
                    "--caption-model", qwen3_vl_dir, "-o", captioned, "--size", "448",
                    "--quantize", "none", "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    assert len(pyogrio.read_dataframe(captioned, layer="chips")) == 9
    assert len(_objects(captioned)) == 43


def test_a_run_killed_inside_a_chip_resumes_with_the_same_expressions(geotiff_dir, tmp_path):
    out = tmp_path / "killed.gpkg"
    args = (geotiff_dir / SPACENET, "--footprints", geotiff_dir.parent / SPACENET_LABELS,
            "-o", out, "--size", "256")
    assert _refer(*args).exit_code == 0
    before = _objects(out).set_index("object_id")["expression"]
    chip = _objects(out)["chip_id"].value_counts().index[0]  # the busiest chip
    with closing(sqlite3.connect(out)) as db, db:
        # As if killed after some of the chip's objects were written, before the chip's row.
        db.execute("DELETE FROM chips WHERE chip_id = ?", (chip,))
        gone = db.execute("SELECT fid, ambiguous FROM objects WHERE chip_id = ? LIMIT 2",
                          (chip,)).fetchall()
        db.executemany("DELETE FROM objects WHERE fid = ?", [(fid,) for fid, _ in gone])
    resumed = _refer(*args, "--progress", "json")
    assert resumed.exit_code == 0, resumed.output
    events = [json.loads(line) for line in resumed.output.strip().splitlines()]
    start, done = events[0], events[-1]
    assert start["layers"] == ["objects", "chips"] and start["total"] == done["total"]
    assert done["written"] == 2 and done["already_done"] == 41
    # Counts cover the objects written, not the chip's others described again.
    assert done["unambiguous"] == sum(not ambiguous for _, ambiguous in gone)
    assert events[-2]["done"] == done["total"] == len(pyogrio.read_dataframe(out, layer="chips"))
    after = _objects(out).set_index("object_id")["expression"]
    assert after.sort_index().equals(before.sort_index())
    assert_valid_geopackage(out)


def test_objects_on_chips_under_min_valid_are_counted(geotiff_dir, tmp_path):
    # dsm.tif (283 x 259 px) is one padded 512 px chip, 28 % valid: skipped under 0.5.
    result = _refer(geotiff_dir / "opengeos/dsm.tif", "--footprints",
                    geotiff_dir.parent / "vector/opengeos/buildings.shp", "-o",
                    tmp_path / "skipped.gpkg", "--progress", "json")
    assert result.exit_code == 0, result.output
    done = json.loads(result.output.strip().splitlines()[-1])
    assert done["written"] == 0 and done["objects_skipped"] == 84 and done["skipped_invalid"] == 1


def test_detect_defaults_to_qwen3_vl_without_an_adapter(geotiff_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    result = _refer(geotiff_dir / SPACENET, "--detect", "-o", tmp_path / "d.gpkg")
    assert result.exit_code == 2 and result.output.count("Error:") == 1
    # The base model, which answers Qwen3-VL's 0-1000 grounding boxes; no disaster adapter.
    assert "Qwen/Qwen3-VL-8B-Instruct" in result.output and "QLora" not in result.output
    assert "--caption-model PATH" in result.output
    assert not (tmp_path / "d.gpkg").exists()
