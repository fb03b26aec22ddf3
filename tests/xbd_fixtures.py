"""Session fixtures of xBD data: the real tiles in ../shared/data and a synthetic folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.synthetic_xbd import write_synthetic_xbd

#: The real xBD tiles (pre and post of six tiles; see ../shared/data/PROVENANCE.md).
REAL_XBD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "xbd" / "real"


@pytest.fixture(scope="session")
def real_xbd() -> Path:
    if not (REAL_XBD / "labels").is_dir():
        pytest.fail(f"test data missing: {REAL_XBD} (tests expect ../shared beside the repo)")
    return REAL_XBD


@pytest.fixture(scope="session")
def synthetic_xbd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 64-pixel tiles per event of `tests.synthetic_xbd.DEFAULT_EVENTS`; do not modify."""
    return write_synthetic_xbd(tmp_path_factory.mktemp("synthetic-xbd"), tiles_per_event=2)
