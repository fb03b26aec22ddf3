"""Real QGIS draws a refer output's objects by damage grade, labelled with their expressions."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from geovlm.cli import cli
from geovlm.output.styles import DAMAGE_COLOURS
from tests.test_qgis_style import SYSTEM_PYTHON, _qgis_available

#: Run by /usr/bin/python3 (QGIS's Python has no torch): prints what QGIS sees of ``objects``.
SCRIPT = """
import json, sys
from qgis.core import QgsApplication, QgsVectorLayer
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
layer = QgsVectorLayer(f"{sys.argv[1]}|layername=objects", "objects", "ogr")
renderer = layer.renderer()
print(json.dumps({
    "valid": layer.isValid(), "count": layer.featureCount(), "renderer": renderer.type(),
    "attribute": renderer.classAttribute(),
    "categories": {c.value(): c.symbol().color().name() for c in renderer.categories()},
    "labels": layer.labelsEnabled(),
    "label_field": layer.labeling().settings().fieldName if layer.labeling() else None,
    "fields": [field.name() for field in layer.fields()],
    "contexts": sorted({str(f["context"]) for f in layer.getFeatures()}),
    "labels_text": sorted(str(f["expression"]) for f in layer.getFeatures()),
}))
sys.stdout.flush()
del layer
app.exitQgis()
"""


@pytest.mark.parametrize("context", ["chip", "scene"])
def test_qgis_draws_objects_by_damage_with_expression_labels(real_xbd, real_xbd_georef,
                                                             tmp_path, context):
    if not Path(SYSTEM_PYTHON).exists() or not _qgis_available():
        if os.environ.get("CI"):
            pytest.fail("QGIS is not importable from /usr/bin/python3; install python3-qgis")
        pytest.skip("QGIS (python3-qgis) is not installed")
    stem = "santa-rosa-wildfire_00000242_post_disaster"
    out = tmp_path / "objects.gpkg"
    result = CliRunner().invoke(cli, [
        "refer", str(real_xbd_georef / "images" / f"{stem}.tif"), "--xbd-labels",
        str(real_xbd / "labels" / f"{stem}.json"), "-o", str(out), "-q", "--context", context])
    assert result.exit_code == 0, result.output
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(runtime)}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([SYSTEM_PYTHON, "-c", SCRIPT, str(out)], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    seen = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    assert seen["valid"] and seen["count"] == 71
    assert seen["renderer"] == "categorizedSymbol" and seen["attribute"] == "damage"
    assert seen["categories"]["destroyed"] == "#{:02x}{:02x}{:02x}".format(
        *DAMAGE_COLOURS["destroyed"])
    assert seen["labels"] and seen["label_field"] == "expression"
    assert "context" in seen["fields"]
    if context == "scene":
        # One scene, every label its own: the map reads right.
        assert seen["contexts"] == ["scene"]
        assert len(set(seen["labels_text"])) == 71
    else:
        assert all(c.startswith("chip r") for c in seen["contexts"]) and len(seen["contexts"]) > 1
