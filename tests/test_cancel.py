"""Refusals before the model loads, one writer per output, clean stops on signals and errors."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from geovlm.backends.base import ModelRun
from geovlm.cli import cli
from geovlm.errors import OutputError
from geovlm.events.progress import ProgressMode
from geovlm.output.locking import OutputLock
from geovlm.output.styles import outline_style
from geovlm.pipeline.driver import run_over_chips
from geovlm.pipeline.plan import ChipTask, RunOptions
from geovlm.pipeline.run_scenes import one_scene
from geovlm.pipeline.work_items import ChipRecords, ChipSteps
from geovlm.scenes.tiling import SceneTiler, TilingOptions
from geovlm.tasks.classify import ClassifySettings, classify_scenes
from geovlm.tasks.tile import CHIP_FIELDS, chip_record
from tests.helpers import SignalledRun, count_rows

COGEO = "rasterio/cogeo.tif"
#: A model load that would take far longer than any refusal may.
LOAD_SECONDS = 30.0


def write_random_scene(path, size):
    data = np.random.default_rng(0).integers(0, 255, (3, size, size), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3,
                       dtype="uint8", crs="EPSG:32618", tiled=True,
                       transform=Affine(0.5, 0, 500000, 0, -0.5, 4000000)) as dst:
        dst.write(data)
    return path


def _status(path):
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT status FROM runs").fetchone()[0]


def _prepare(kind, out, scene):
    """Make `out` something classify must refuse; returns what keeps it refused (a lock)."""
    if kind == "other parameters":
        assert CliRunner().invoke(cli, ["tile", str(scene), "-o", str(out), "-q"]).exit_code == 0
    elif kind == "not a GeoPackage":
        out.write_text("my notes")
    elif kind == "unwritable":
        out.parent.chmod(0o500)
    elif kind == "locked":
        lock = OutputLock(out)
        lock.acquire()
        return lock
    return None


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        pytest.param(kind, message, id=kind)  # no pid in an id: the same in every process
        for kind, message in [
            ("other parameters", "different command or parameters"),
            ("not a GeoPackage", "not a GeoPackage"),
            ("unwritable", "not writable|choose another output path"),
            ("locked", re.escape(f"being written by another geovlm process (pid {os.getpid()})")),
        ]
    ],
)
def test_a_refused_output_never_waits_for_the_model(geotiff_dir, tmp_path, kind, message):
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "o.gpkg"
    if kind == "unwritable" and os.geteuid() == 0:
        out = Path("/proc/geovlm-test.gpkg")  # root writes into read-only folders, not here
    lock = _prepare(kind, out, geotiff_dir / COGEO)
    loads = []

    def slow_load():
        loads.append(time.monotonic())
        time.sleep(LOAD_SECONDS)
        raise AssertionError("the model must not load for a refused output")

    start = time.monotonic()
    try:
        with pytest.raises(OutputError, match=message):
            classify_scenes(
                one_scene(geotiff_dir / COGEO, TilingOptions(512)), RunOptions(out),
                ModelRun(slow_load, {"model": "example-org/never-loaded"}), ClassifySettings(),
            )
    finally:
        folder.chmod(0o700)
        if lock is not None:
            lock.release()
    assert time.monotonic() - start < 5.0
    assert loads == []


def test_a_refusal_changes_nothing_and_a_failed_load_keeps_the_old_output(geotiff_dir, tmp_path):
    out = tmp_path / "o.gpkg"
    tiled = CliRunner().invoke(cli, ["tile", str(geotiff_dir / COGEO), "-o", str(out)])
    assert tiled.exit_code == 0
    before = out.read_bytes()

    def failing_load():
        raise OutputError("stand-in for a model that fails to load")

    for overwrite in (False, True):
        with pytest.raises(OutputError):
            classify_scenes(
                one_scene(geotiff_dir / COGEO, TilingOptions(512)),
                RunOptions(out, overwrite=overwrite), ModelRun(failing_load), ClassifySettings(),
            )
        assert out.read_bytes() == before
        assert not (tmp_path / "o.gpkg.lock").exists()


def _tile_run(scene, out, stop):
    """``geovlm tile`` at 16 px in a process of its own, sent `stop` once its first chips land."""
    return SignalledRun(["tile", scene, "-o", out, "--size", "16"], stop)


def test_a_second_writer_is_refused_while_the_first_completes(tmp_path):
    scene = write_random_scene(tmp_path / "scene.tif", 800)
    out = tmp_path / "o.gpkg"
    # Stopped (SIGSTOP) once its first chips are written: it holds the output, mid-run, for as
    # long as the second takes to be refused, however fast this machine is.
    first = _tile_run(scene, out, signal.SIGSTOP)
    first.signalled()
    try:
        reader = sqlite3.connect(out)  # a reader (e.g. QGIS showing the layer) must not hurt
        assert reader.execute("SELECT count(*) FROM chips").fetchone()[0] > 0
        second = subprocess.run(
            [sys.executable, "-m", "geovlm.cli", "tile", str(scene), "-o", str(out), "-q",
             "--size", "16"], capture_output=True, text=True, timeout=60,
        )
        assert first.process.poll() is None, "the first run must outlast the second's refusal"
    finally:
        first.process.send_signal(signal.SIGCONT)
    assert second.returncode == 2
    assert second.stderr.strip() == (
        f"Error: {out} is being written by another geovlm process (pid {first.process.pid});"
        " wait for it or choose another output."
    )
    first.wait(timeout=120)
    assert first.process.returncode == 0, first.stderr
    assert first.events[-1]["event"] == "done" and first.events[-1]["status"] == "complete"
    reader.close()  # the last to close folds the write-ahead log back in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.gpkg", "scene.tif"]
    assert count_rows(out) == (800 // 16) ** 2
    assert _status(out) == "complete"


def test_kill_9_leaves_no_stuck_lock(tmp_path):
    scene = write_random_scene(tmp_path / "scene.tif", 800)
    out = tmp_path / "o.gpkg"
    first = _tile_run(scene, out, signal.SIGKILL)
    killed_at = first.wait()
    assert first.process.returncode == -signal.SIGKILL
    partial = count_rows(out)
    assert partial >= killed_at["done"] > 0
    # left behind, not held
    assert (tmp_path / "o.gpkg.lock").read_text() == str(first.process.pid)
    resumed = CliRunner().invoke(cli, ["tile", str(scene), "-o", str(out), "--size", "16",
                                       "--progress", "json"])
    assert resumed.exit_code == 0, resumed.output
    done = json.loads(resumed.output.splitlines()[-1])
    assert done["already_done"] == partial > 0
    assert _status(out) == "complete"
    assert not (tmp_path / "o.gpkg.lock").exists()


def _geovlm_threads():
    """The pipeline's threads still alive (a backend's own long-lived pools aside)."""
    prefixes = ("geovlm-read", "geovlm-prepare", "geovlm-write")
    return [t.name for t in threading.enumerate() if t.name.startswith(prefixes)]


def test_closing_the_tiler_stops_its_reads_before_closing_their_datasets(geotiff_dir):
    tiler = SceneTiler(geotiff_dir / "rasterio/RGB.byte.tif", TilingOptions(64))
    chips = tiler.chips()
    next(chips)  # the next reads are queued and running on the reader threads
    assert _geovlm_threads()
    tiler.close()  # e.g. an error in the caller's loop left `chips` open
    assert _geovlm_threads() == []
    chips.close()


def test_an_error_in_the_model_step_joins_every_thread_and_marks_the_run(
    geotiff_dir, tmp_path, caplog
):
    caplog.set_level(logging.WARNING)
    for attempt in range(20):  # the old race showed only now and then
        out = tmp_path / f"o{attempt}.gpkg"
        batches = []

        def process(batch, prepared, batches=batches):
            batches.append(batch)
            if len(batches) == 2:
                raise RuntimeError("the model step failed")
            return ChipRecords([chip_record(chip) for chip in batch])

        with pytest.raises(RuntimeError, match="the model step failed"):
            run_over_chips(
                one_scene(geotiff_dir / "rasterio/RGB.byte.tif", TilingOptions(64)),
                ChipTask(command="test", parameters={}, layer="chips", fields=CHIP_FIELDS,
                         style_qml=outline_style(),
                         setup=lambda: ChipSteps(lambda batch: None, process)),
                RunOptions(out, batch_size=4, progress=ProgressMode.NONE),
            )
        assert _geovlm_threads() == []
        assert _status(out) == "interrupted"
        assert count_rows(out) == 4
    assert {p.name for p in tmp_path.iterdir()} == {f"o{i}.gpkg" for i in range(20)}
    assert caplog.records == []


def _journal_mode(path):
    with closing(sqlite3.connect(path)) as db:
        return db.execute("PRAGMA journal_mode").fetchone()[0]


def _stop_and_resume(command, out, stop, exit_code, min_rows):
    """Stop a running command with a signal once `min_rows` are written, then resume it."""
    run = SignalledRun(command, stop, when=lambda event: event["done"] >= min_rows)
    signalled_at = run.wait()
    assert run.process.returncode == exit_code
    # The last line: library warnings above it are the warnings filter's business.
    assert run.stderr.strip().splitlines()[-1] == (
        f"Interrupted by {stop.name}; run the same command again to resume."
    )
    assert run.events[-1]["event"] == "done" and run.events[-1]["status"] == "interrupted"
    partial = count_rows(out)
    assert partial >= signalled_at["done"] >= min_rows
    assert _status(out) == "interrupted"
    assert _journal_mode(out) == "delete"
    assert sorted(p.name for p in out.parent.glob(f"{out.name}*")) == [out.name]

    resumed = CliRunner().invoke(cli, [*command, "--progress", "json"])
    assert resumed.exit_code == 0, resumed.output
    done = json.loads(resumed.output.splitlines()[-1])
    assert done["already_done"] == partial and done["written"] > 0
    assert _status(out) == "complete"
    with closing(sqlite3.connect(out)) as db:
        ids = [row[0] for row in db.execute("SELECT chip_id FROM chips")]
    assert len(ids) == len(set(ids)) == partial + done["written"]


def test_ctrl_c_stops_tile_cleanly_and_a_rerun_resumes(tmp_path):
    scene = write_random_scene(tmp_path / "scene.tif", 1200)
    out = tmp_path / "o.gpkg"
    command = ["tile", str(scene), "-o", str(out), "--size", "16"]
    _stop_and_resume(command, out, signal.SIGINT, 130, min_rows=512)
    assert count_rows(out) == (1200 // 16) ** 2


def test_sigterm_stops_classify_cleanly_and_a_rerun_resumes(qwen3_vl_dir, geotiff_dir, tmp_path):
    out = tmp_path / "o.gpkg"
    command = ["classify", str(geotiff_dir / "solaris/sample_geotiff.tif"), "-o", str(out),
               "--model", str(qwen3_vl_dir), "--quantize", "none", "--device", "cpu",
               "--size", "100", "--batch-size", "4"]  # 81 chips; stopped once 4 are written
    _stop_and_resume(command, out, signal.SIGTERM, 143, min_rows=4)
    assert count_rows(out) == 81


def test_a_symlinked_output_meets_the_same_lock(tmp_path):
    real, link = tmp_path / "real.gpkg", tmp_path / "link.gpkg"
    link.symlink_to(real)
    with OutputLock(real), pytest.raises(OutputError, match=r"link\.gpkg is being written"):
        OutputLock(link).acquire()
    assert list(tmp_path.iterdir()) == [link]
