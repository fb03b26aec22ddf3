"""One QGIS application for the session (qgis.testing.start_app), Processing and the plugin.

The engine is the executable in $GEOVLM_ENGINE (tests/test_qgis_plugin.py makes one that runs
the checkout's geovlm in the toolkit's venv) and $GEOVLM_TEST_MODEL a tiny offline model folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PLUGIN_ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.testing import start_app  # noqa: E402

APP = start_app()
# Processing and the plugin installer ship beside QGIS's Python package, not in it.
sys.path += ["/usr/share/qgis/python/plugins", "/usr/share/qgis/python"]

from processing.core.Processing import Processing  # noqa: E402

Processing.initialize()

#: The provider's algorithms, sorted.
ALGORITHMS = ["geovlm:classify", "geovlm:damage", "geovlm:evaluate", "geovlm:refer",
              "geovlm:report", "geovlm:tile", "geovlm:train"]
#: Modules the plugin's process must never import.
HEAVY = ("torch", "transformers", "rasterio", "geovlm")


@pytest.fixture(scope="session")
def plugin():
    """The plugin loaded as qgis_process loads it (no iface): its provider registered."""
    import geovlm_qgis

    loaded = geovlm_qgis.classFactory(None)
    loaded.initProcessing()
    yield loaded
    loaded.unload()


def _given(variable: str, what: str) -> str:
    """The path $`variable` names; tests/test_qgis_plugin.py sets each before running us."""
    path = os.environ.get(variable)
    if not path:
        pytest.fail(f"{variable} must name {what} (tests/test_qgis_plugin.py sets it)")
    return path


@pytest.fixture(scope="session")
def engine() -> str:
    return _given("GEOVLM_ENGINE", "a geovlm executable")


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return _given("GEOVLM_TEST_MODEL", "a tiny model folder")


@pytest.fixture(scope="session")
def buildings() -> Path:
    """A ``buildings`` layer as geovlm damage writes it."""
    return Path(_given("GEOVLM_TEST_BUILDINGS", "a damage GeoPackage"))


@pytest.fixture(scope="session")
def scene() -> Path:
    """A real 1024 px GeoTIFF in UTM (../shared/data)."""
    path = PLUGIN_ROOT.parents[1] / "shared/data/geotiff/rasterio/cogeo.tif"
    if not path.is_file():
        pytest.fail(f"test data missing: {path}")
    return path


@pytest.fixture(scope="session")
def big_scene(tmp_path_factory) -> Path:
    """A 1200 px random UTM GeoTIFF: 5625 chips of 16 px, long enough to cancel part-way."""
    import numpy as np
    from osgeo import gdal, osr

    path = tmp_path_factory.mktemp("big") / "scene.tif"
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 1200, 1200, 3, gdal.GDT_Byte,
                                                   ["TILED=YES"])
    dataset.SetGeoTransform((500000, 0.5, 0, 4000000, 0, -0.5))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32618)
    dataset.SetProjection(srs.ExportToWkt())
    data = np.random.default_rng(0).integers(0, 255, (1200, 1200), dtype=np.uint8)
    for band in range(1, 4):
        dataset.GetRasterBand(band).WriteArray(data)
    dataset = None
    return path


@pytest.fixture()
def recorded(tmp_path, monkeypatch):
    """A stub engine that records its arguments and ends at once.

    The fixture is a function: the arguments of the stub's last run, None when it did not run.
    """
    argv = tmp_path / "argv.txt"
    stub = tmp_path / "geovlm"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{argv}"\n'
                    'echo \'{"event": "done", "status": "interrupted"}\'\n')
    stub.chmod(0o755)
    monkeypatch.setenv("GEOVLM_ENGINE", str(stub))

    def arguments() -> list[str] | None:
        if not argv.exists():
            return None
        found = argv.read_text().splitlines()
        argv.unlink()
        return found
    return arguments


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """qgis_process with the plugin enabled in a fresh profile: the command and environment."""
    env = {**os.environ, "QGIS_PLUGINPATH": str(PLUGIN_ROOT),
           "QGIS_CUSTOM_CONFIG_PATH": str(tmp_path_factory.mktemp("profile"))}
    # Debian's /usr/bin/qgis_process wrapper adds --noversioncheck, which qgis_process rejects.
    qgis_process = shutil.which("qgis_process.bin") or "qgis_process"
    subprocess.run([qgis_process, "plugins", "enable", "geovlm_qgis"], env=env, check=True,
                   capture_output=True)
    return qgis_process, env


@pytest.fixture(scope="session")
def classified(plugin, engine, scene, tiny_model, tmp_path_factory) -> dict:
    """``geovlm:classify`` over `scene` with the tiny model, 256 px chips: its result."""
    import processing

    out = tmp_path_factory.mktemp("classified") / "classified.gpkg"
    return processing.run("geovlm:classify", {
        "INPUT": str(scene), "MODEL": tiny_model, "QUANTIZE": 4, "DEVICE": "cpu",
        "CHIP_SIZE": 256, "OUTPUT": str(out)})


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave with pytest's status before Python tears down QGIS's objects.

    QGIS 3.22 can crash (SIGSEGV) while the interpreter destroys Python-owned Qt objects of a
    finished session, after every result was reported; the crash would hide the status.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(getattr(config, "_geovlm_status", 0))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Keep the session's status for `pytest_unconfigure`."""
    session.config._geovlm_status = int(exitstatus)  # type: ignore[attr-defined]
