"""``geovlm damage`` end to end: tiny Qwen3-VL, a real post raster, its pre twin, refer after."""

from __future__ import annotations

import json
import signal
import sqlite3
from contextlib import closing

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
from click.testing import CliRunner

from geovlm.cli import cli
from geovlm.labels.building_damage import GRADES
from geovlm.scenes.scene import open_scene
from geovlm.sources.building_crops import Footprints
from tests.damage_fixtures import POST, footprint_grid, warp_scene
from tests.helpers import SignalledRun, assert_valid_geopackage, count_rows

GRADE_NAMES = [grade.value for grade in GRADES]


@pytest.fixture(scope="module")
def inputs(geotiff_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("damage")
    post = geotiff_dir / POST
    return post, warp_scene(post, folder / "pre.tif"), footprint_grid(post, folder / "fp.gpkg", 5)


def _damage(post, out, model, *extra):
    args = ["damage", str(post), "-o", str(out), "--model", str(model), "--quantize", "none",
            "--device", "cpu", *map(str, extra)]
    return CliRunner().invoke(cli, args)


@pytest.fixture(scope="module")
def graded(inputs, qwen3_vl_dir, tmp_path_factory):
    post, pre, vector = inputs
    out = tmp_path_factory.mktemp("graded") / "out.gpkg"
    result = _damage(post, out, qwen3_vl_dir, "--footprints", vector, "--pre", pre,
                     "--min-confidence", "0.3", "--progress", "json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.output.strip().splitlines()[-1])


def test_buildings_layer_holds_grades_and_probabilities(graded, inputs):
    out, done = graded
    post = inputs[0]
    assert done["event"] == "done" and done["written"] + done["skipped_invalid"] == 25
    assert done["footprints"]["buildings"] == 25
    frame = pyogrio.read_dataframe(out, layer="buildings")
    assert len(frame) == done["written"] > 10 and frame["object_id"].is_unique
    assert frame.crs.to_epsg() == 3857  # the post scene's, not the footprints' WGS 84
    assert list(done["grades"]) == [*GRADE_NAMES, "uncertain"]
    assert done["grades"] == {grade: int((frame["damage"] == grade).sum())
                              for grade in done["grades"]}
    for _, row in frame.iterrows():
        probs = json.loads(row["probs"])
        assert list(probs) == GRADE_NAMES
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
        best = max(probs, key=probs.get)
        assert row["confidence"] == pytest.approx(probs[best], abs=1e-6)
        assert row["damage"] == (best if row["confidence"] >= 0.3 else "uncertain")
        assert row["runner_up"] != best
        assert row["runner_up_confidence"] == pytest.approx(sorted(probs.values())[-2], abs=1e-6)
        assert row["valid_fraction"] >= 0.5 and row["pre_valid_fraction"] > 0
        assert row["language"] == "en" and row["scene"] == str(post)
    with closing(sqlite3.connect(out)) as db:
        command, layer, status, parameters, run_id = db.execute(
            "SELECT command, layer, status, parameters, run_id FROM runs").fetchone()
        qml = db.execute("SELECT styleQML FROM layer_styles").fetchone()[0]
    assert (command, layer, status) == ("damage", "buildings", "complete")
    assert set(frame["run_id"]) == {run_id}
    parameters = json.loads(parameters)
    assert parameters["crops"]["margin_m"] == 10.0 and parameters["min_confidence"] == 0.3
    for value, rgb in (("destroyed", "215,25,28"), ("no-damage", "26,150,65"),
                       ("uncertain", "189,189,189")):
        assert f'value="{value}"' in qml and rgb in qml
    assert_valid_geopackage(out)


def test_min_confidence_makes_every_building_uncertain(inputs, qwen3_vl_dir, tmp_path):
    post, _, vector = inputs
    out = tmp_path / "sure.gpkg"
    result = _damage(post, out, qwen3_vl_dir, "--footprints", vector, "--min-confidence", "1",
                     "--progress", "bar")
    assert result.exit_code == 0, result.output
    assert "Wrote" in result.output and "buildings" in result.output
    written = count_rows(out, "buildings")
    assert (f"In the layer: 0 no-damage, 0 minor-damage, 0 major-damage, 0 destroyed,"
            f" {written} uncertain.") in result.output
    assert "buildings/s" in result.output and "chips" not in result.output  # the bar's unit
    frame = pyogrio.read_dataframe(out, layer="buildings")
    assert (frame["damage"] == "uncertain").all() and frame["pre_valid_fraction"].isna().all()


def test_refer_takes_the_predicted_grades(graded, inputs, tmp_path):
    out, _ = graded
    post, _, _ = inputs
    referred = tmp_path / "refer.gpkg"
    result = CliRunner().invoke(cli, ["refer", str(post), "--footprints", str(out), "-o",
                                      str(referred), "--size", "512", "--min-valid", "0"])
    assert result.exit_code == 0, result.output
    objects = pyogrio.read_dataframe(referred, layer="objects")
    buildings = pyogrio.read_dataframe(out, layer="buildings", fid_as_index=True)
    assert len(objects) == len(buildings)
    # refer names objects by feature id; "uncertain" is no grade, so refer reads none.
    predicted = dict(zip(buildings.index.astype(str), buildings["damage"], strict=True))
    graded = 0
    for _, row in objects.iterrows():
        grade = predicted[row["object_id"]]
        expected = grade if grade in GRADE_NAMES else None
        assert (row["damage"] if isinstance(row["damage"], str) else None) == expected
        if expected == "destroyed":
            assert "destroyed" in row["expression_rule"], row["expression_rule"]
        graded += expected is not None
    assert graded > 0


def test_killed_run_resumes_building_by_building(inputs, qwen3_vl_dir, tmp_path):
    post, pre, vector = inputs
    extra = ["--footprints", vector, "--pre", pre, "--batch-size", "2"]
    out = tmp_path / "killed.gpkg"
    run = SignalledRun(["damage", post, "-o", out, "--model", qwen3_vl_dir, "--quantize", "none",
                        "--device", "cpu", *extra], signal.SIGKILL)
    reference = tmp_path / "reference.gpkg"
    assert _damage(post, reference, qwen3_vl_dir, *extra).exit_code == 0
    killed_at = run.wait()
    assert run.process.returncode == -signal.SIGKILL
    partial = count_rows(out, "buildings")
    total = count_rows(reference, "buildings")
    assert 0 < killed_at["done"] <= partial < total, "the run must be killed part-way"
    resumed = _damage(post, out, qwen3_vl_dir, *extra, "--progress", "json")
    assert resumed.exit_code == 0, resumed.output
    done = json.loads(resumed.output.strip().splitlines()[-1])
    assert done["already_done"] == partial and done["written"] == total - partial
    a = pyogrio.read_dataframe(reference, layer="buildings").sort_values("object_id")
    b = pyogrio.read_dataframe(out, layer="buildings").sort_values("object_id")
    assert list(a["object_id"]) == list(b["object_id"]) and list(a["damage"]) == list(
        b["damage"])
    assert np.allclose(a["confidence"], b["confidence"], atol=1e-5)
    assert_valid_geopackage(out)


def test_bad_inputs_are_refused_in_one_line(inputs, geotiff_dir, tmp_path):
    post, _, vector = inputs
    far = footprint_grid(geotiff_dir / "opengeos/dsm.tif", tmp_path / "far.gpkg", 2)
    (tmp_path / "notes.txt").write_text("no vector layer")
    pins = tmp_path / "pins.gpkg"  # the footprints' centres: points on the scene
    outlines = gpd.read_file(vector)
    outlines.set_geometry(outlines.geometry.representative_point()).to_file(pins)
    nomodel = tmp_path / "no-model"  # refused before any model would load
    cases = [
        ((tmp_path / "missing.tif", "--footprints", vector), "does not exist"),
        ((post, "--footprints", tmp_path / "missing.gpkg"), "does not exist"),
        ((post, "--footprints", far), "none of the 4 footprints"),
        ((post, "--footprints", pins), "holds no polygons, only points, lines or empty"),
        ((post, "--footprints", tmp_path / "notes.txt"), "in a supported file format)."),
        ((post, "--footprints", vector, "--pre", tmp_path / "nopre.tif"), "does not exist"),
        ((post, "--footprints", vector, "--pre", geotiff_dir / "opengeos/dsm.tif"),
         "does not overlap"),
        ((post, "--footprints", vector, "--margin", "-3"), "--margin -3.0 must be 0 or more"),
        ((post,), "give exactly one of --footprints and --xbd-labels"),
        ((geotiff_dir / "rasterio/world.rgb.tif", "--footprints", vector), "geographic CRS"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(cli, ["damage", *map(str, args), "-o",
                                          str(tmp_path / "x.gpkg"), "--model", str(nomodel)])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output and "It might help" not in result.output
        assert not (tmp_path / "x.gpkg").exists()


def test_points_among_the_footprints_are_left_out_with_a_warning(inputs, tmp_path, caplog):
    post, _, vector = inputs
    outlines = gpd.read_file(vector)
    mixed = tmp_path / "mixed.gpkg"
    points = outlines.set_geometry(outlines.geometry.representative_point())
    pd.concat([outlines, points]).to_file(mixed)
    found = Footprints.from_vector(mixed, open_scene(post))
    assert len(found.ids) == 25 and found.counts["not_polygonal"] == 25
    assert "left out 25 feature(s) without a polygon" in caplog.text
