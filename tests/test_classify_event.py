"""`geovlm classify` over an event: several scenes in three CRSs, one run, one layer."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from geovlm.cli import cli
from tests.helpers import SignalledRun, assert_valid_geopackage, count_rows
from tests.test_event_scenes import _warped

EXTRA = ["--size", "256", "--native-gsd", "--batch-size", "4", "--quantize", "none",
         "--device", "cpu"]


@pytest.fixture()
def event(tmp_path: Path, geotiff_dir: Path) -> dict[str, Path]:
    """NAIP (UTM 14N), a Web Mercator COG, a broken file and the COG warped to EPSG:4326."""
    cogeo = geotiff_dir / "rasterio" / "cogeo.tif"
    broken = tmp_path / "broken.tif"
    broken.write_text("not a raster")
    return {
        "naip": geotiff_dir / "opengeos" / "m_4709963_se_14_1_20200831.tif",
        "cogeo": cogeo,
        "broken": broken,
        "warped": _warped(cogeo, tmp_path / "cogeo_4326.tif", CRS.from_epsg(4326)),
    }


def _classify(model: Path, out: Path, *scenes: object, extra: tuple[str, ...] = ()):
    args = ["classify", *map(str, scenes), "-o", str(out), "--model", str(model), *EXTRA,
            *extra]
    return CliRunner().invoke(cli, args)


def test_event_in_one_run_one_layer(qwen3_vl_dir, event, tmp_path):
    listing = tmp_path / "more.txt"
    listing.write_text(f"{event['cogeo']}\nbroken.tif\ncogeo_4326.tif\n")
    out = tmp_path / "event.gpkg"
    result = _classify(qwen3_vl_dir, out, event["naip"], listing, extra=("--progress", "json"))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    warnings = [line["message"] for line in lines if line["event"] == "warning"]
    assert any(str(event["broken"]) in message for message in warnings)
    (start,) = [line for line in lines if line["event"] == "start"]
    assert start["scenes"] == 3
    numbers = [line["scene"] for line in lines if line["event"] == "progress" and "scene" in line]
    assert numbers == sorted(numbers) and numbers[-1] == 3
    done = lines[-1]
    assert done["event"] == "done" and done["scenes"] == 3
    assert [f["scene"] for f in done["failed_scenes"]] == [str(event["broken"])]
    assert_valid_geopackage(out)

    layer = pyogrio.read_dataframe(out, layer="chips")
    assert pyogrio.read_info(out, layer="chips")["crs"] == "EPSG:4326"
    scenes = [str(event[name].resolve()) for name in ("naip", "cogeo", "warped")]
    assert list(dict.fromkeys(layer["scene"])) == scenes  # in order, the broken one left out
    assert layer["scene_chip_id"].is_unique
    assert (layer["scene_chip_id"] == layer["scene"] + "|" + layer["chip_id"]).all()
    assert layer["confidence"].between(0, 1).all()
    for scene in scenes:
        chips = layer[layer["scene"] == scene]
        with rasterio.open(scene) as src:
            west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds,
                                                        densify_pts=101)
        eps = (east - west) * 1e-6
        bounds = chips.geometry.bounds
        assert (bounds.minx >= west - eps).all() and (bounds.maxx <= east + eps).all()
        assert (bounds.miny >= south - eps).all() and (bounds.maxy <= north + eps).all()
        assert len(chips) > 1
    naip = layer[layer["scene"] == scenes[0]].geometry.union_all()
    assert naip.bounds == pytest.approx(
        transform_bounds(CRS.from_epsg(26914), "EPSG:4326",
                         *rasterio.open(scenes[0]).bounds, densify_pts=101), abs=1e-7)

    with sqlite3.connect(out) as db:
        (parameters,) = db.execute("SELECT parameters FROM runs").fetchone()
    parameters = json.loads(parameters)
    assert parameters["notes"]["failed_scenes"][0]["scene"] == str(event["broken"])
    assert len(parameters["scenes"]) == 4

    again = _classify(qwen3_vl_dir, out, event["naip"], listing, extra=("--progress", "json"))
    assert again.exit_code == 0, again.output
    done = json.loads(again.output.strip().splitlines()[-1])
    assert done["written"] == 0 and done["already_done"] == len(layer)

    # The broken scene mended: a re-run resumes, does it, and the ledger forgets the failure.
    event["broken"].write_bytes(event["cogeo"].read_bytes())
    mended = _classify(qwen3_vl_dir, out, event["naip"], listing, extra=("--progress", "json"))
    assert mended.exit_code == 0, mended.output
    done = json.loads(mended.output.strip().splitlines()[-1])
    cogeo_chips = int((layer["scene"] == scenes[1]).sum())
    assert done["written"] == cogeo_chips and done["failed_scenes"] == []
    with sqlite3.connect(out) as db:
        rows = db.execute("SELECT parameters, status FROM runs").fetchall()
    assert len(rows) == 1 and rows[0][1] == "complete"
    assert "notes" not in json.loads(rows[0][0])


def test_scenes_sharing_a_crs_keep_it_and_dst_crs_is_obeyed(qwen3_vl_dir, event, tmp_path):
    out = tmp_path / "same.gpkg"
    result = _classify(qwen3_vl_dir, out, event["cogeo"], event["cogeo"], "-q")
    assert result.exit_code == 0, result.output
    assert pyogrio.read_info(out, layer="chips")["crs"] == "EPSG:3857"
    utm = tmp_path / "utm.gpkg"
    result = _classify(qwen3_vl_dir, utm, event["naip"], extra=("-q", "--dst-crs", "EPSG:32614"))
    assert result.exit_code == 0, result.output
    assert pyogrio.read_info(utm, layer="chips")["crs"] == "EPSG:32614"


@pytest.mark.parametrize(("scenes", "extra", "message"), [
    (("broken", "broken"), (), "None of the 1 scenes opens"),
    (("naip", "cogeo"), ("--dst-crs", "EPSG:nope"), "--dst-crs"),
])
def test_bad_scenes_and_crs_refused_in_one_line(qwen3_vl_dir, event, tmp_path, scenes, extra,
                                                message):
    out = tmp_path / "x.gpkg"
    result = _classify(qwen3_vl_dir, out, *(event[s] for s in scenes), extra=extra)
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("\n") == 1
    assert not out.exists()


def _chips_of(scene: Path, size: int) -> int:
    """Chips of `scene` at its own resolution (``--native-gsd``)."""
    from geovlm.scenes.tiling import SceneTiler, TilingOptions

    with SceneTiler(scene, TilingOptions(size)) as tiler:
        return len(tiler.cells)


def test_resume_after_kill_in_the_second_scene(qwen3_vl_dir, event, tmp_path):
    scenes = [str(event["naip"]), str(event["cogeo"])]
    extra = ["--size", "64", "--native-gsd", "--batch-size", "4", "--quantize", "none",
             "--device", "cpu"]
    first = _chips_of(event["naip"], 64)
    out = tmp_path / "killed.gpkg"
    # Killed at the first progress event that counts chips of the second scene written; it
    # starts first, and loads its model while this process classifies the reference.
    run = SignalledRun(["classify", *scenes, "-o", out, "--model", qwen3_vl_dir, *extra],
                       signal.SIGKILL, when=lambda progress: progress["done"] > first)
    reference = tmp_path / "reference.gpkg"
    args = ["classify", *scenes, "-o", str(reference), "--model", str(qwen3_vl_dir), *extra]
    assert CliRunner().invoke(cli, args).exit_code == 0
    expected = pyogrio.read_dataframe(reference, layer="chips")
    assert int((expected["scene"] == str(event["naip"].resolve())).sum()) == first
    killed_at = run.wait()
    assert run.process.returncode == -signal.SIGKILL
    partial = count_rows(out)
    assert first < killed_at["done"] <= partial < len(expected), (
        "the run must be killed in the second scene")

    args[args.index(str(reference))] = str(out)
    resumed = CliRunner().invoke(cli, [*args, "--progress", "json"])
    assert resumed.exit_code == 0, resumed.output
    done = json.loads(resumed.output.strip().splitlines()[-1])
    assert done["already_done"] == partial and done["written"] == len(expected) - partial
    a = expected.sort_values("scene_chip_id").reset_index(drop=True)
    b = pyogrio.read_dataframe(out, layer="chips").sort_values("scene_chip_id")
    b = b.reset_index(drop=True)
    assert list(a["scene_chip_id"]) == list(b["scene_chip_id"])
    assert list(a["label"]) == list(b["label"])
    assert np.allclose(a["confidence"], b["confidence"], atol=1e-5)
    assert a.geometry.geom_equals(b.geometry).all()
    assert_valid_geopackage(out)
