"""`geovlm tile` end to end: the GeoPackage it writes, resume after kill -9, and bad input."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from geovlm.cli import cli
from tests.helpers import assert_valid_geopackage, count_rows

RGB = "rasterio/RGB.byte.tif"


def _rows(path):
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT chip_id, row, col, valid_fraction, hex(geom) FROM chips ORDER BY chip_id"
        ).fetchall()


def _runs(path):
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM runs")]


def test_tile_writes_a_styled_layer_in_the_scene_crs(geotiff_dir, tmp_path):
    out = tmp_path / "out.gpkg"
    result = CliRunner().invoke(cli, ["tile", str(geotiff_dir / RGB), "-o", str(out),
                                      "--size", "256"])
    assert result.exit_code == 0, result.output
    assert "Wrote 10 chips" in result.output
    frame = pyogrio.read_dataframe(out, layer="chips")
    assert list(frame.columns) == ["chip_id", "row", "col", "valid_fraction", "geometry"]
    assert len(frame) == 10
    with rasterio.open(geotiff_dir / RGB) as src:
        assert frame.crs == src.crs
    [run] = _runs(out)
    assert run["status"] == "complete" and run["command"] == "tile"
    assert run["written"] == 10 and run["skipped"] == 2
    assert json.loads(run["parameters"])["tiling"]["size"] == 256
    assert "gdal" in json.loads(run["versions"])
    with sqlite3.connect(out) as db:
        qml, default = db.execute(
            "SELECT styleQML, useAsDefault FROM layer_styles WHERE f_table_name = 'chips'"
        ).fetchone()
        kinds = dict(db.execute("SELECT table_name, data_type FROM gpkg_contents"))
    assert default == 1
    assert ET.fromstring(qml.split("\n", 1)[1]).find("renderer-v2") is not None
    assert kinds == {"chips": "features", "runs": "attributes", "layer_styles": "attributes"}
    assert_valid_geopackage(out)


def test_the_validator_catches_a_text_primary_key(geotiff_dir, tmp_path):
    # What every output had before the runs table got its integer key: the check must see it.
    out = tmp_path / "out.gpkg"
    assert CliRunner().invoke(cli, ["tile", str(geotiff_dir / RGB), "-o", str(out)]).exit_code == 0
    with sqlite3.connect(out) as db:
        db.execute("CREATE TABLE notes (name TEXT PRIMARY KEY)")
        db.execute("INSERT INTO gpkg_contents (table_name, data_type)"
                   " VALUES ('notes', 'attributes')")
    with pytest.raises(pytest.fail.Exception, match="Req 119: table notes"):
        assert_valid_geopackage(out)


def test_progress_json_lines_and_quiet(geotiff_dir, tmp_path):
    out = tmp_path / "out.gpkg"
    result = CliRunner().invoke(cli, ["tile", str(geotiff_dir / RGB), "-o", str(out),
                                      "--size", "256", "--progress", "json"])
    events = [json.loads(line) for line in result.output.splitlines()]
    assert events[0] == {"protocol": 1, "event": "start", "total": 12, "output": str(out),
                         "run_id": events[-1]["run_id"], "layers": ["chips"]}
    assert events[-1]["event"] == "done" and events[-1]["written"] == 10
    assert events[-2]["done"] == 12
    quiet = CliRunner().invoke(cli, ["tile", str(geotiff_dir / RGB), "-o",
                                     str(tmp_path / "q.gpkg"), "-q"])
    assert quiet.exit_code == 0 and quiet.output == ""


def test_rerun_resumes_and_other_parameters_need_overwrite(geotiff_dir, tmp_path):
    out = tmp_path / "out.gpkg"
    args = ["tile", str(geotiff_dir / RGB), "-o", str(out), "--size", "256"]
    runner = CliRunner()
    assert runner.invoke(cli, args).exit_code == 0
    first = _rows(out)
    again = runner.invoke(cli, args)
    assert again.exit_code == 0 and "Wrote 0 chips" in again.output
    assert _rows(out) == first
    assert_valid_geopackage(out)
    other = runner.invoke(cli, [*args[:-1], "128"])
    assert other.exit_code == 2
    assert "different command or parameters" in other.output
    assert _rows(out) == first
    replaced = runner.invoke(cli, [*args[:-1], "128", "--overwrite"])
    assert replaced.exit_code == 0
    assert len(_rows(out)) > len(first) and len(_runs(out)) == 1
    assert_valid_geopackage(out)
    run_id = _runs(out)[0]["run_id"]
    fresh = runner.invoke(cli, [*args[:-1], "128", "--overwrite"])
    assert fresh.exit_code == 0 and "0 already done" in fresh.output
    assert _runs(out)[0]["run_id"] != run_id


def test_save_chips_writes_georeferenced_tiffs(geotiff_dir, tmp_path):
    folder = tmp_path / "chips"
    result = CliRunner().invoke(cli, ["tile", str(geotiff_dir / "rasterio/cogeo.tif"), "-o",
                                      str(tmp_path / "o.gpkg"), "--save-chips", str(folder)])
    assert result.exit_code == 0, result.output
    files = sorted(folder.glob("*.tif"))
    assert [f.stem for f in files] == ["r0000_c0000", "r0000_c0001", "r0001_c0000",
                                       "r0001_c0001"]
    with rasterio.open(files[1]) as chip, rasterio.open(geotiff_dir / "rasterio/cogeo.tif") as src:
        assert chip.crs == src.crs and chip.count == 3 and chip.width == 512
        assert chip.transform == src.transform @ Affine.translation(512, 0)
        assert (chip.read() == src.read(window=((0, 512), (512, 1024)))).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}", "-o", "{tmp}/o.gpkg"], "does not exist"),
        (["{notraster}", "-o", "{tmp}/o.gpkg"], "not a raster"),
        (["{rgb}", "-o", "{tmp}/o.shp"], "not a GeoPackage path"),
        (["{rgb}", "-o", "{tmp}/no/such/dir/o.gpkg"], "does not exist; create it"),
        (["{rgb}", "-o", "{tmp}/o.gpkg", "--size", "9000"], "outside the allowed"),
        (["{rgb}", "-o", "{tmp}/o.gpkg", "--overlap", "512"], "smaller than the chip size"),
        (["{rgb}", "-o", "{tmp}/o.gpkg", "--bands", "4,2,1"], "has 3 band"),
        (["{rgb}", "-o", "{tmp}/o.gpkg", "--bands", "red"], "band numbers"),
        (["{rgb}", "-o", "{notraster}"], "not a GeoPackage path"),
        (["{rgb}", "-o", "{tmp}/text.gpkg"], "not a GeoPackage; pass --overwrite"),
    ],
)
def test_bad_input_exits_2_with_one_line(geotiff_dir, tmp_path, args, message):
    (tmp_path / "notes.txt").write_text("not a raster")
    (tmp_path / "text.gpkg").write_text("not a geopackage")
    values = {"missing": tmp_path / "nope.tif", "notraster": tmp_path / "notes.txt",
              "rgb": geotiff_dir / RGB, "tmp": tmp_path}
    result = CliRunner().invoke(cli, ["tile", *[a.format(**values) for a in args]])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.gpkg").exists()


def test_unwritable_output_exits_2(geotiff_dir, tmp_path):
    if os.geteuid() == 0:
        target = "/proc/geovlm-test.gpkg"  # even root cannot create files here
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = str(locked / "o.gpkg")
    result = CliRunner().invoke(cli, ["tile", str(geotiff_dir / RGB), "-o", target])
    assert result.exit_code == 2
    assert "choose another output path" in result.output or "not writable" in result.output


def test_truncated_scene_exits_2_and_leaves_the_run_interrupted(geotiff_dir, tmp_path):
    # A COG keeps its header first, so the scene opens and the read fails part-way.
    data = (geotiff_dir / "rasterio/cogeo.tif").read_bytes()
    scene = tmp_path / "truncated.tif"
    scene.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "o.gpkg"
    result = CliRunner().invoke(cli, ["tile", str(scene), "-o", str(out), "--size", "128"])
    assert result.exit_code == 2
    assert "truncated or corrupt" in result.output
    assert [run["status"] for run in _runs(out)] == ["interrupted"]
    assert_valid_geopackage(out)


def test_resume_after_kill_9_equals_an_uninterrupted_run(tmp_path):
    scene = tmp_path / "scene.tif"
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (3, 800, 800), dtype=np.uint8)
    with rasterio.open(scene, "w", driver="GTiff", width=800, height=800, count=3,
                       dtype="uint8", crs="EPSG:32618", tiled=True,
                       transform=Affine(0.5, 0, 500000, 0, -0.5, 4000000)) as dst:
        dst.write(data)
    args = [str(scene), "--size", "16"]
    reference = tmp_path / "reference.gpkg"
    assert CliRunner().invoke(cli, ["tile", *args, "-q", "-o", str(reference)]).exit_code == 0
    total = len(_rows(reference))

    out = tmp_path / "killed.gpkg"
    command = [sys.executable, "-m", "geovlm.cli", "tile", *args, "-q", "-o", str(out)]
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 60
    while count_rows(out) < total // 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = count_rows(out)
    assert 0 < partial < total, "the run must be killed part-way"
    assert _runs(out)[0]["status"] == "running"
    assert_valid_geopackage(out)

    resumed = CliRunner().invoke(cli, ["tile", *args, "-o", str(out), "--progress", "json"])
    assert resumed.exit_code == 0, resumed.output
    done = json.loads(resumed.output.splitlines()[-1])
    assert done["already_done"] == partial and done["written"] == total - partial
    assert _rows(out) == _rows(reference)
    assert _runs(out)[0]["status"] == "complete"
    assert_valid_geopackage(out)


def test_scene_smaller_than_one_chip_is_warned_before_any_work(geotiff_dir, tmp_path, caplog):
    from geovlm.events.progress import ProgressMode
    from geovlm.pipeline.plan import RunOptions
    from geovlm.pipeline.run_scenes import one_scene
    from geovlm.scenes.tiling import TilingOptions
    from geovlm.tasks.tile import tile_scene

    scene = geotiff_dir / "rasterio/cogeo.tif"  # 1024 px of ~0.47 m: ~485 m across
    with caplog.at_level("WARNING", logger="geovlm.pipeline.driver"):
        coarse = tile_scene(one_scene(scene, TilingOptions(512, gsd=3.5)),
                            RunOptions(tmp_path / "coarse.gpkg", progress=ProgressMode.NONE))
    assert coarse.written == 0 and coarse.skipped_invalid == 1
    assert "7% of one 512 px chip" in caplog.text and "--native-gsd" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="geovlm.pipeline.driver"):
        native = tile_scene(one_scene(scene, TilingOptions(512)),
                            RunOptions(tmp_path / "native.gpkg", progress=ProgressMode.NONE))
    assert native.written == 4 and not caplog.text
