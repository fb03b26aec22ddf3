"""Shared fixtures: the real test data in ../shared/data."""

from pathlib import Path

import pytest
from hypothesis import settings

pytest_plugins = ["tests.model_fixtures"]

# Timing is for bench/, not tests: a loaded 2-core CI machine must not fail a property test.
settings.register_profile("geovlm", deadline=None)
settings.load_profile("geovlm")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GEOTIFF = SHARED_DATA / "geotiff"


@pytest.fixture(scope="session")
def geotiff_dir() -> Path:
    if not GEOTIFF.is_dir():
        pytest.fail(f"test data missing: {GEOTIFF} (tests expect ../shared beside the repo)")
    return GEOTIFF
