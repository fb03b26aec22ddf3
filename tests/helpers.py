"""Small helpers shared by test modules."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def count_rows(path: Path, table: str = "chips") -> int:
    """Rows in a table of a GeoPackage another process may be writing; 0 if unreadable yet."""
    if not path.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.1)) as db:
            return db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    except sqlite3.Error:
        return 0
