"""The GeoPackage file itself: path checks, sqlite3 access, journal mode and removal.

GDAL and Python's sqlite3 carry separate copies of SQLite, so a `connect` connection is never
open while GDAL writes the same file (see `geovlm.output.geopackage`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyogrio

from geovlm.errors import OutputError

__all__ = [
    "check_output_path", "connect", "gdal_config", "is_geopackage", "leave_wal",
    "remove_geopackage",
]

logger = logging.getLogger(__name__)

_SQLITE_MAGIC = b"SQLite format 3\x00"


@contextlib.contextmanager
def gdal_config(options: Mapping[str, str]) -> Iterator[None]:
    """Set pyogrio's GDAL config options for the duration of a block, then restore them."""
    previous = {key: pyogrio.get_gdal_config_option(key) for key in options}
    pyogrio.set_gdal_config_options(dict(options))
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options(previous)


@contextlib.contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """Open the GeoPackage with sqlite3, commit on success and always close."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous = NORMAL")
    try:
        with db:
            yield db
    finally:
        db.close()


def is_geopackage(path: Path) -> bool:
    """Whether `path` is an SQLite file with a GeoPackage's ``gpkg_contents`` table."""
    try:
        with path.open("rb") as handle:
            if handle.read(16) != _SQLITE_MAGIC:
                return False
        with connect(path) as db:
            db.execute("SELECT 1 FROM gpkg_contents LIMIT 1")
    except (OSError, sqlite3.DatabaseError):
        return False
    return True


def check_output_path(path: str | Path) -> None:
    """Check that a GeoPackage can be written at `path`, before any costly work starts.

    Parameters
    ----------
    path
        The intended output.

    Raises
    ------
    OutputError
        The path lacks the ``.gpkg`` extension, its folder is missing, or it is not writable.
    """
    path = Path(path)
    if path.suffix.lower() != ".gpkg":
        raise OutputError(f"{path} is not a GeoPackage path; give the output a .gpkg extension.")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise OutputError(f"The folder {parent} does not exist; create it first.")
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK):
        raise OutputError(f"{target} is not writable; choose another output path.")


def leave_wal(path: Path) -> None:
    """Return the file to a single-file rollback journal, unless another program reads it."""
    try:
        with connect(path) as db:
            db.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorname != "SQLITE_BUSY":
            raise
        # E.g. QGIS showing the layer while it was written: the file is complete and consistent,
        # and SQLite folds the log back in when the last reader closes it.
        logger.info("%s stays in write-ahead-log mode while another program reads it (%s)",
                    path, exc)


def remove_geopackage(path: Path) -> None:
    """Remove a GeoPackage and its journal, write-ahead log and shared-memory files."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
