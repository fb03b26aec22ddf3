"""Real QGIS (Debian's 3.22, headless) opens geovlm's GeoPackages styled, with no manual step."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from geovlm.cli import cli
from geovlm.output.styles import LABEL_COLOURS

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).with_name("qgis_open_layer.py")


def _qgis_available() -> bool:
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True,
                           env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, check=False)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def open_in_qgis(tmp_path_factory):
    if not Path(SYSTEM_PYTHON).exists() or not _qgis_available():
        if os.environ.get("CI"):
            pytest.fail("QGIS is not importable from /usr/bin/python3; install python3-qgis")
        pytest.skip("QGIS (python3-qgis) is not installed")
    runtime = tmp_path_factory.mktemp("xdg")
    runtime.chmod(0o700)

    def run(*paths: Path) -> list[dict]:
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(runtime)}
        env.pop("PYTHONPATH", None)
        done = subprocess.run([SYSTEM_PYTHON, str(SCRIPT), *map(str, paths)], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
        assert lines, done.stderr
        return json.loads(lines[-1])

    return run


def test_qgis_draws_classify_output_by_label_and_tile_output_as_outlines(
    open_in_qgis, qwen3_vl_dir, geotiff_dir, tmp_path
):
    classified, tiled = tmp_path / "classified.gpkg", tmp_path / "tiled.gpkg"
    scene = str(geotiff_dir / "rasterio/cogeo.tif")
    runner = CliRunner()
    result = runner.invoke(cli, ["classify", scene, "-o", str(classified), "--model",
                                 str(qwen3_vl_dir), "--quantize", "none", "--size", "256"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(cli, ["tile", scene, "-o", str(tiled)]).exit_code == 0

    labels, chips = open_in_qgis(classified, tiled)
    assert labels["valid"] and labels["count"] == 16 and labels["crs"] == "EPSG:3857"
    assert labels["renderer"] == "categorizedSymbol" and labels["attribute"] == "label"
    expected = {value: "#" + bytes(rgb).hex() for value, rgb in LABEL_COLOURS.items()}
    assert labels["categories"] == expected
    assert chips["valid"] and chips["count"] == 4
    assert chips["renderer"] == "singleSymbol"
    assert chips["fill_style"] == "no" and chips["outline_color"].startswith("255,215,0")
