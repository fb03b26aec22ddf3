"""Small helpers shared by test modules."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

#: Debian's python3-gdal, importable from the system Python only (`make qgis` installs it).
SYSTEM_PYTHON = "/usr/bin/python3"
#: GDAL's GeoPackage validator: keep going past the first error, run its extra checks and count
#: warnings as errors, so any complaint fails the test.
_VALIDATE = ["-m", "osgeo_utils.samples.validate_gpkg", "-k", "--extra", "--warning-as-error"]


def count_rows(path: Path, table: str = "chips") -> int:
    """Rows in a table of a GeoPackage another process may be writing; 0 if unreadable yet."""
    if not path.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.1)) as db:
            return db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    except sqlite3.Error:
        return 0


class SignalledRun:
    """``geovlm <command> --progress json`` in a process of its own, signalled once mid-run.

    A thread reads the run's JSON events (docs/events.md) as they come and sends `stop` the
    moment a ``progress`` event satisfies `when` while chips are still left (``done < total``),
    whatever the test's own thread is doing meanwhile (e.g. computing a reference run). The
    signal so lands once the counted chips are written and a run's remaining chips away from
    its end, however fast the machine: no scene needs to be large to still be running.

    Parameters
    ----------
    args
        The command line after ``geovlm``; ``--progress json`` is appended (so no ``-q``).
    stop
        The signal to send.
    when
        Whether a ``progress`` event is the one to stop at; by default, any with a chip done.
    """

    def __init__(self, args: list[str], stop: signal.Signals,
                 when: Callable[[dict[str, Any]], bool] = lambda event: event["done"] > 0,
                 ) -> None:
        self.stop = stop
        self.events: list[dict[str, Any]] = []
        #: The ``progress`` event the signal was sent at, None until then.
        self.signalled_at: dict[str, Any] | None = None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "geovlm.cli", *map(str, args), "--progress", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._when = when
        self._sent = threading.Event()
        self._stderr: list[str] = []
        self._threads = [threading.Thread(target=self._read_events, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read_events(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            self.events.append(event)
            if (self.signalled_at is None and event["event"] == "progress"
                    and event["done"] < event["total"] and self._when(event)):
                self.process.send_signal(self.stop)
                self.signalled_at = event
                self._sent.set()
        self._sent.set()  # the run ended: nothing more to wait for

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self._stderr.extend(self.process.stderr)

    def signalled(self, timeout: float = 180.0) -> dict[str, Any]:
        """Wait for the signal to be sent (the process may run on); returns its event.

        Fails the test if the run ended first, or nothing came within `timeout`.
        """
        if not self._sent.wait(timeout) or self.signalled_at is None:
            return self.wait(timeout)  # fails, with what the run printed
        return self.signalled_at

    def wait(self, timeout: float = 180.0) -> dict[str, Any]:
        """Wait for the process to end; returns the event the signal was sent at.

        Fails the test if the run ended without being signalled (or outlived `timeout`).
        """
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the run outlived {timeout} s: {self.events[-3:]}")
        for thread in self._threads:
            thread.join(timeout=30)
        if self.signalled_at is None:
            pytest.fail(f"the run ended (exit {self.process.returncode}) before any progress event"
                        f" asked for {self.stop.name}: {self.events[-3:]}\n{self.stderr[-3000:]}")
        return self.signalled_at

    @property
    def stderr(self) -> str:
        """What the process wrote on stderr (all of it once `wait` returned)."""
        return "".join(self._stderr)


def assert_valid_geopackage(path: Path) -> None:
    """Fail with the validator's complaints unless GDAL's validate_gpkg.py accepts `path`.

    The validator opens the file for writing, which would recover a killed run's write-ahead log
    before geovlm's resume gets to; so it checks a copy of the file and its log, as they are.
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / path.name
        shutil.copyfile(path, copy)
        wal = Path(f"{path}-wal")
        if wal.exists():
            shutil.copyfile(wal, f"{copy}-wal")
        done = subprocess.run([SYSTEM_PYTHON, *_VALIDATE, str(copy)], capture_output=True,
                              text=True, env=env, timeout=120, check=False)
    if "No module named" in done.stderr:
        pytest.fail(f"GDAL's validator is missing ({done.stderr.strip()}); run `make qgis`.")
    if done.returncode != 0 or done.stdout.strip() or done.stderr.strip():
        pytest.fail(f"{path} is not a valid GeoPackage:\n{done.stdout}{done.stderr}")


def edit_geopackage(source: Path, copy: Path, *sql: str) -> Path:
    """Copy `source` to `copy` and run `sql` on the copy with GDAL, as an edit in QGIS would.

    Debian's GDAL Python does it, as QGIS does: plain sqlite3 lacks the functions the
    GeoPackage's R-tree triggers call.
    """
    shutil.copyfile(source, copy)
    script = (
        "import sys; from osgeo import ogr; ogr.UseExceptions(); ds = ogr.Open(sys.argv[1], 1)\n"
        "for statement in sys.argv[2:]: ds.ExecuteSQL(statement)\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    subprocess.run([SYSTEM_PYTHON, "-c", script, str(copy), *sql], check=True,
                   capture_output=True, env=env)
    return copy


#: Files of a complete (if fake) model and adapter, for `cache_snapshot`.
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def cache_snapshot(cache: Path, repo_id: str, *files: str) -> Path:
    """A snapshot of `repo_id` in a Hugging Face cache, laid out as huggingface_hub does.

    Each file holds a small JSON object: enough for the checks that look at which files a
    snapshot has, not for loading it.
    """
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in files:
        (snapshot / name).write_text('{"model_type": "llava"}')
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot
