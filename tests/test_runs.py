"""The runs ledger: rebuilding a table written before it had an integer key, and resuming it."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest
from click.testing import CliRunner

from geovlm.cli import cli
from geovlm.output.runs import (
    RunRecord,
    RunStatus,
    create_table,
    find_run,
    insert_run,
    set_status,
    upgrade_table,
)
from tests.helpers import assert_valid_geopackage

#: The ledger as every output before the integer key had it (GDAL's validator rejects it).
_OLD_COLUMNS = """(
    run_id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    parameters TEXT NOT NULL,
    signature TEXT NOT NULL,
    versions TEXT NOT NULL,
    layer TEXT NOT NULL,
    status TEXT NOT NULL,
    started TEXT NOT NULL,
    ended TEXT,
    written INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0
)"""
_OLD_ORDER = ("run_id", "command", "parameters", "signature", "versions", "layer", "status",
              "started", "ended", "written", "skipped")


def _to_old_shape(db: sqlite3.Connection) -> None:
    """Rewrite a current ``runs`` table, rows kept, into the shape outputs used to have."""
    columns = ", ".join(_OLD_ORDER)
    with db:
        db.execute(f"CREATE TABLE runs_old {_OLD_COLUMNS}")
        db.execute(f"INSERT INTO runs_old ({columns}) SELECT {columns} FROM runs")
        db.execute("DROP TABLE runs")
        db.execute("ALTER TABLE runs_old RENAME TO runs")


def _columns(db: sqlite3.Connection) -> list[str]:
    return [row[1] for row in db.execute("PRAGMA table_info(runs)")]


def test_an_old_output_is_rebuilt_on_resume_and_validates(geotiff_dir, tmp_path):
    out = tmp_path / "out.gpkg"
    args = ["tile", str(geotiff_dir / "rasterio/RGB.byte.tif"), "-o", str(out), "--size", "256"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    with closing(sqlite3.connect(out)) as db:
        _to_old_shape(db)
        assert "id" not in _columns(db)
        [before] = db.execute("SELECT run_id, started FROM runs").fetchall()
    with pytest.raises(pytest.fail.Exception, match="Req 119: table runs"):
        assert_valid_geopackage(out)

    again = CliRunner().invoke(cli, [*args, "--progress", "json"])
    assert again.exit_code == 0, again.output
    done = json.loads(again.output.splitlines()[-1])
    assert done["already_done"] == 10 and done["written"] == 0
    assert_valid_geopackage(out)
    with closing(sqlite3.connect(out)) as db:
        assert _columns(db) == ["id", *_OLD_ORDER]
        rows = db.execute("SELECT id, run_id, started, status, written FROM runs").fetchall()
        kind = db.execute("SELECT data_type FROM gpkg_contents WHERE table_name = 'runs'")
        assert kind.fetchall() == [("attributes",)]
    assert rows == [(1, *before, "complete", 10)]


def _old_ledger(runs: int) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE runs {_OLD_COLUMNS}")
    for n in range(runs):
        db.execute("INSERT INTO runs (run_id, command, parameters, signature, versions, layer,"
                   " status, started) VALUES (?, 'tile', '{}', ?, '{}', 'chips', 'complete', ?)",
                   (f"z{n}", f"s{n}", f"2026-01-0{n + 1}"))
    db.commit()
    return db


def test_upgrade_keeps_rows_in_order_and_runs_once():
    with closing(_old_ledger(3)) as db:
        assert upgrade_table(db)
        assert db.execute("SELECT id, run_id FROM runs ORDER BY id").fetchall() == [
            (1, "z0"), (2, "z1"), (3, "z2")]
        assert not upgrade_table(db)
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (3,)
        insert_run(db, "new", RunRecord("tile", {}), "chips")
        assert db.execute("SELECT id FROM runs WHERE run_id = 'new'").fetchone() == (4,)
    with closing(sqlite3.connect(":memory:")) as empty:
        assert not upgrade_table(empty)


def test_a_failed_upgrade_leaves_the_old_table_whole():
    with closing(_old_ledger(2)) as db:
        db.execute("ALTER TABLE runs DROP COLUMN skipped")  # the copy cannot find it
        with pytest.raises(sqlite3.OperationalError, match="skipped"):
            upgrade_table(db)
        assert "id" not in _columns(db) and not db.in_transaction
        assert db.execute("SELECT run_id FROM runs").fetchall() == [("z0",), ("z1",)]
        tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        assert tables == [("runs",)]


def test_find_and_status_follow_the_signature():
    run = RunRecord("tile", {"size": 256})
    with closing(sqlite3.connect(":memory:")) as db:
        assert find_run(db, run, "chips") is None  # no ledger at all
        create_table(db)
        insert_run(db, "r1", run, "chips")
        assert find_run(db, run, "chips") == "r1"
        assert find_run(db, run, "other") is None
        assert find_run(db, RunRecord("tile", {"size": 128}), "chips") is None
        set_status(db, "r1", RunStatus.INTERRUPTED, written=5, skipped=1)
        status, ended, written = db.execute("SELECT status, ended, written FROM runs").fetchone()
        assert (status, written) == ("interrupted", 5) and ended is not None
        set_status(db, "r1", RunStatus.RUNNING, written=5, skipped=1)
        assert db.execute("SELECT ended FROM runs").fetchone() == (None,)
