"""The ``runs`` ledger of a GeoPackage output: which command and parameters wrote its layer.

Each output holds one row per run in a plain GeoPackage attribute table, ``runs``. The row's
signature (a digest of command and parameters) decides whether a re-run may resume the layer;
its status says whether the layer holds every result (``complete``) or the run stopped early.
Every function here takes an open sqlite3 connection to the output, under the rule the writer
in `geovlm.output.geopackage` keeps: GDAL and Python's sqlite3 carry separate copies of SQLite, so a
sqlite3 connection is never open while GDAL writes the same file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "RunRecord",
    "RunStatus",
    "create_table",
    "find_run",
    "insert_run",
    "set_status",
    "update_notes",
    "upgrade_table",
]

_TABLE = "runs"
#: Every column but the integer key, in order: what an upgrade copies from an older table.
_COPIED = ("run_id", "command", "parameters", "signature", "versions", "layer", "status",
           "started", "ended", "written", "skipped")
#: A GeoPackage attribute table needs an INTEGER PRIMARY KEY (requirement 119, checked by GDAL's
#: validate_gpkg.py); the run id stays a unique text column beside it.
_COLUMNS = """(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
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


class RunStatus(StrEnum):
    """Lifecycle of a run; only ``complete`` means the layer holds every result."""

    RUNNING = "running"
    INTERRUPTED = "interrupted"
    COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What a run is: the command and parameters that decide whether a re-run may resume it."""

    command: str
    parameters: Mapping[str, Any]
    versions: Mapping[str, str] = field(default_factory=dict)
    #: What the run found, recorded with its parameters (key ``notes``) but not in its
    #: signature: e.g. the scenes that failed to open, which a re-run retries.
    notes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def signature(self) -> str:
        """Digest of command and parameters: equal signatures mean a re-run can resume."""
        text = json.dumps([self.command, self.parameters], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _ddl(table: str) -> str:
    return f"CREATE TABLE IF NOT EXISTS {table} {_COLUMNS}"


def create_table(db: sqlite3.Connection) -> None:
    """Create the empty ``runs`` table, unless the file has one (registering it is the caller's).

    Parameters
    ----------
    db
        An open connection to the output.
    """
    db.execute(_ddl(_TABLE))


def insert_run(db: sqlite3.Connection, run_id: str, run: RunRecord, layer: str) -> None:
    """Record a new run of `run` writing `layer`, marked running and started now.

    Parameters
    ----------
    db
        An open connection to the output.
    run_id
        The run's unique id.
    run
        Its command, parameters and library versions.
    layer
        The feature layer it writes.
    """
    db.execute(
        "INSERT INTO runs (run_id, command, parameters, signature, versions, layer,"
        " status, started) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            run_id,
            run.command,
            _parameters_json(run),
            run.signature,
            json.dumps(run.versions, sort_keys=True),
            layer,
            RunStatus.RUNNING.value,
            _now(),
        ),
    )


def _parameters_json(run: RunRecord) -> str:
    return json.dumps({**run.parameters, **({"notes": run.notes} if run.notes else {})},
                      sort_keys=True, default=str)


def update_notes(db: sqlite3.Connection, run_id: str, run: RunRecord) -> None:
    """Record what a resuming run found (its notes), replacing what the run before it found.

    A re-run retries what failed (e.g. scenes that did not open), so the ledger keeps the
    latest findings; the signature, which leaves notes out, is unchanged.
    """
    db.execute("UPDATE runs SET parameters = ? WHERE run_id = ?", (_parameters_json(run), run_id))


def find_run(db: sqlite3.Connection, run: RunRecord, layer: str) -> str | None:
    """The id of the earlier run with `run`'s signature on `layer`, which a re-run resumes.

    Parameters
    ----------
    db
        An open connection to the output.
    run
        The command and parameters of the run about to start.
    layer
        The feature layer it writes.

    Returns
    -------
    str or None
        The run id, or None when no run matches or the file has no ``runs`` table.
    """
    try:
        found = db.execute(
            "SELECT run_id FROM runs WHERE signature = ? AND layer = ?",
            (run.signature, layer),
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    return None if found is None else str(found[0])


def set_status(
    db: sqlite3.Connection, run_id: str, status: RunStatus, *, written: int, skipped: int
) -> None:
    """Record a run's status and counts; any status but running also stamps its end time.

    Parameters
    ----------
    db
        An open connection to the output.
    run_id
        The run to update.
    status
        Its new status.
    written
        Records in the layer from this run and the runs it resumed.
    skipped
        Chips left out (e.g. mostly nodata).
    """
    ended = None if status is RunStatus.RUNNING else _now()
    db.execute(
        "UPDATE runs SET status = ?, ended = ?, written = ?, skipped = ? WHERE run_id = ?",
        (status.value, ended, written, skipped, run_id),
    )


def upgrade_table(db: sqlite3.Connection) -> bool:
    """Rebuild a ``runs`` table written before it had an integer key, so the file validates.

    Outputs written before then keyed ``runs`` on the text ``run_id``, which GDAL's
    validate_gpkg.py rejects (requirement 119). The table is rebuilt in the current shape in one
    transaction, rows in their original order; its ``gpkg_contents`` row names it unchanged.

    Parameters
    ----------
    db
        An open connection to the output, with no transaction open.

    Returns
    -------
    bool
        Whether the table was rebuilt; False when it already has the key or does not exist.
    """
    columns = {row[1] for row in db.execute(f"PRAGMA table_info({_TABLE})")}
    if not columns or "id" in columns:
        return False
    copied = ", ".join(_COPIED)
    staging = f"{_TABLE}_upgrade"
    with db:
        db.execute("BEGIN")
        db.execute(_ddl(staging))
        db.execute(f"INSERT INTO {staging} ({copied}) SELECT {copied} FROM {_TABLE} ORDER BY rowid")
        db.execute(f"DROP TABLE {_TABLE}")
        db.execute(f"ALTER TABLE {staging} RENAME TO {_TABLE}")
    return True
