"""The JSON-lines event protocol of ``--progress json`` and the plugin's checks (--json)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from geovlm.cli import cli
from geovlm.events.protocol import PROTOCOL
from tests.helpers import count_rows
from tests.test_cancel import write_random_scene

COGEO = "rasterio/cogeo.tif"


def _events(output: str) -> list[dict]:
    events = [json.loads(line) for line in output.splitlines()]
    assert all(event["protocol"] == PROTOCOL for event in events)
    return events


def test_a_run_starts_progresses_and_ends_with_one_done(geotiff_dir, tmp_path):
    out = tmp_path / "out.gpkg"
    result = CliRunner().invoke(cli, ["tile", str(geotiff_dir / COGEO), "-o", str(out),
                                      "--size", "256", "--progress", "json"])
    assert result.exit_code == 0, result.output
    events = _events(result.output)
    start, done = events[0], events[-1]
    assert start["event"] == "start" and start["total"] == 16
    assert start["output"] == done["output"] == str(out)
    assert start["run_id"] == done["run_id"] and len(done["run_id"]) == 32
    assert start["layers"] == done["layers"] == ["chips"]
    assert done["event"] == "done" and done["status"] == "complete" and done["written"] == 16
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == 16
    assert all(e["rate"] >= 0 for e in progress)
    assert [e["event"] for e in events].count("done") == 1


def test_warnings_become_events(geotiff_dir, tmp_path):
    result = CliRunner().invoke(cli, ["tile", str(geotiff_dir / COGEO), "-o",
                                      str(tmp_path / "o.gpkg"), "--gsd", "3.5",
                                      "--progress", "json"])
    events = _events(result.stdout)
    warning = next(e for e in events if e["event"] == "warning")
    assert "7% of one 512 px chip" in warning["message"]
    assert warning["source"] == "geovlm.pipeline.driver"
    assert events[-1]["status"] == "complete"


@pytest.mark.parametrize(
    ("args", "kind", "message"),
    [
        (["tile", "missing.tif"], "input", "missing.tif does not exist"),
        (["classify", COGEO, "--model", "no-such-preset"], "model_not_found", "no-such-preset"),
    ],
)
def test_an_error_is_one_event_with_the_cli_sentence(geotiff_dir, tmp_path, args, kind, message):
    args = [str(geotiff_dir / a) if a == COGEO else a for a in args]
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "o.gpkg"),
                                      "--progress", "json"])
    assert result.exit_code == 2
    [event] = _events(result.stdout)
    assert event["event"] == "error" and event["kind"] == kind
    assert message in event["message"]
    assert result.stderr.strip() == f"Error: {event['message']}"


def test_sigterm_ends_with_done_interrupted(tmp_path):
    scene = write_random_scene(tmp_path / "scene.tif", 1200)
    out = tmp_path / "o.gpkg"
    process = subprocess.Popen(
        [sys.executable, "-m", "geovlm.cli", "tile", str(scene), "-o", str(out), "--size", "16",
         "--progress", "json"], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while count_rows(out) < 512 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 143
    events = _events(stdout)
    assert events[-1]["event"] == "done" and events[-1]["status"] == "interrupted"
    assert 0 < events[-1]["done"] < events[-1]["total"] == (1200 // 16) ** 2
    assert events[-1]["output"] == str(out)


def test_models_json_lists_presets(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    presets = {p["name"]: p for p in json.loads(result.output)}
    default = presets["xview2-qwen3vl"]
    assert default["default"] and default["images"]
    assert default["offline"] == {"model": False, "adapter": False}
    assert presets["gemma-aerial"]["offline"]["adapter"] is None
    assert sum(p["default"] for p in presets.values()) == 1


def test_version_json_reports_libraries_and_cuda():
    result = CliRunner().invoke(cli, ["version", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["protocol"] == PROTOCOL and report["geovlm"]
    assert report["libraries"]["torch"] and report["libraries"]["transformers"]
    assert isinstance(report["cuda"]["available"], bool)
    text = CliRunner().invoke(cli, ["version"]).output
    assert text.startswith(f"geovlm {report['geovlm']}") and "cuda " in text
