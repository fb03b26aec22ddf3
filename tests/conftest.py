"""Shared fixtures: the real test data in ../shared/data."""

from pathlib import Path

import pytest

pytest_plugins = ["tests.model_fixtures"]

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GEOTIFF = SHARED_DATA / "geotiff"


@pytest.fixture(scope="session")
def geotiff_dir() -> Path:
    if not GEOTIFF.is_dir():
        pytest.fail(f"test data missing: {GEOTIFF} (tests expect ../shared beside the repo)")
    return GEOTIFF
