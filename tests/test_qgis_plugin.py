"""The QGIS plugin's own tests (qgis_plugin/tests), run in real QGIS against this checkout's engine.

QGIS's Python is Debian's /usr/bin/python3; the tests run in .venv-qgis (`make qgis-venv`:
system site packages plus pytest, none of the toolkit). The engine they call is a tiny script
that runs this checkout's geovlm with this interpreter, the model a tiny random Qwen3-VL, and
the engine set-up installs this checkout's wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.report_fixtures import write_buildings

ROOT = Path(__file__).resolve().parents[1]
QGIS_PYTHON = ROOT / ".venv-qgis" / "bin" / "python"


def write_engine(folder: Path) -> Path:
    """A ``geovlm`` executable that runs this checkout's geovlm in this venv."""
    engine = folder / "geovlm"
    engine.write_text(
        f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m geovlm.cli "$@"\n')
    engine.chmod(0o755)
    return engine


def build_wheel(folder: Path) -> Path:
    """This checkout's wheel, built offline from a copy (the checkout gets no build/)."""
    source = folder / "source"
    shutil.copytree(ROOT / "geovlm", source / "geovlm",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", "-w", str(folder), str(source)],
                   check=True, capture_output=True, timeout=120)
    [wheel] = folder.glob("geovlm-*.whl")
    return wheel


def test_the_plugin_passes_its_tests_in_real_qgis(qwen3_vl_dir, tmp_path):
    if not QGIS_PYTHON.exists():
        pytest.fail(f"{QGIS_PYTHON} is missing; run `make qgis-venv` (make test does)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(
        GEOVLM_ENGINE=str(write_engine(tmp_path)),
        GEOVLM_TEST_MODEL=str(qwen3_vl_dir),
        GEOVLM_TEST_WHEEL=str(build_wheel(tmp_path)),
        GEOVLM_TEST_BUILDINGS=str(write_buildings(tmp_path / "damage.gpkg")),
        HF_HUB_OFFLINE="1",
        QT_QPA_PLATFORM="offscreen",
        XDG_RUNTIME_DIR=str(tmp_path),
    )
    done = subprocess.run(
        [str(QGIS_PYTHON), "-m", "pytest", "-q", "--basetemp", str(tmp_path / "qgis-tests")],
        cwd=ROOT / "qgis_plugin", env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout
