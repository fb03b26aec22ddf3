"""Shared fixtures: the real test data in ../shared/data."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

pytest_plugins = [
    "tests.model_fixtures",
    "tests.xbd_fixtures",
    "tests.training_fixtures",
    "tests.refer_fixtures",
    "tests.serve_fixtures",
    "tests.stac_fixtures",
]

# Timing is for bench/, not tests: a loaded 2-core CI machine must not fail a property test.
settings.register_profile("geovlm", deadline=None)
settings.load_profile("geovlm")

#: Files whose tests take longest, collected first and in this order (the rest keep theirs):
#: pytest-xdist hands files to its workers in collection order (``--no-loadscope-reorder``),
#: and a long file handed out last would be the whole run's tail.
LONGEST_FIRST = ("tests/test_qgis_plugin.py", "tests/test_ray_engine.py",
                 "tests/test_refer_remote.py", "tests/test_cancel.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: n for n, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GEOTIFF = SHARED_DATA / "geotiff"


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: the tiny models' operations are too small to share out.

    On a busy 2-core machine torch's default two threads mostly wait for each other: they trained
    the tiny recipe 7 to 12 times slower than one thread (to the same weights), and left no core
    for the pipeline's reading and encoding threads. The processes the tests start (the CLI,
    ``geovlm serve`` and its model process, the QGIS plugin's engine) get one thread through
    ``OMP_NUM_THREADS`` too: two threads of theirs spinning for the core this process keeps
    busy made a killed-and-resumed classify 1.5 times slower.
    """
    import torch

    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(autouse=True, scope="session")
def _no_site_presets(tmp_path_factory: pytest.TempPathFactory):
    """Only the shipped presets, whatever the developer keeps in ~/.config/geovlm/presets."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEOVLM_PRESETS", str(tmp_path_factory.mktemp("no-site-presets")))
        yield


@pytest.fixture(scope="session")
def geotiff_dir() -> Path:
    if not GEOTIFF.is_dir():
        pytest.fail(f"test data missing: {GEOTIFF} (tests expect ../shared beside the repo)")
    return GEOTIFF
