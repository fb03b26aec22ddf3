"""The Processing provider against the real engine, in real QGIS."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import processing
import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsVectorLayer,
)

from .conftest import ALGORITHMS, HEAVY, PLUGIN_ROOT


def _status(gpkg):
    with closing(sqlite3.connect(gpkg)) as db:
        return db.execute("SELECT status FROM runs").fetchone()[0]


def test_the_provider_registers_every_algorithm(plugin):
    provider = QgsApplication.processingRegistry().providerById("geovlm")
    assert provider is not None
    assert sorted(a.id() for a in provider.algorithms()) == ALGORITHMS
    classify = QgsApplication.processingRegistry().algorithmById("geovlm:classify")
    names = {p.name() for p in classify.parameterDefinitions()}
    assert {"INPUT", "OUTPUT", "CHIP_SIZE", "OVERLAP", "MODEL", "ADAPTER", "LANGUAGE", "MODE",
            "MIN_CONFIDENCE"} <= names
    assert classify.createInstance() is not classify


def test_tile_writes_the_chip_layer(plugin, engine, scene, tmp_path):
    out = tmp_path / "tiles.gpkg"
    result = processing.run("geovlm:tile", {"INPUT": str(scene), "CHIP_SIZE": 256,
                                            "OUTPUT": str(out)})
    assert result["STATUS"] == "complete" and result["WRITTEN"] == 16
    layer = QgsVectorLayer(result["OUTPUT"], "chips", "ogr")
    assert layer.isValid() and layer.featureCount() == 16
    assert _status(out) == "complete"


def test_classify_writes_a_styled_layer(classified):
    result = classified
    assert result["STATUS"] == "complete" and result["WRITTEN"] == 16
    layer = QgsVectorLayer(result["OUTPUT"], "chips", "ogr")
    assert layer.isValid() and layer.featureCount() == 16
    assert layer.renderer().type() == "categorizedSymbol"
    assert layer.renderer().classAttribute() == "label"


def test_an_engine_error_is_a_processing_error_with_its_sentence(plugin, engine, scene, tmp_path):
    with pytest.raises(QgsProcessingException, match="no-such-preset"):
        processing.run("geovlm:classify", {"INPUT": str(scene), "MODEL": "no-such-preset",
                                           "OUTPUT": str(tmp_path / "o.gpkg")})


def test_the_plugin_never_imports_the_toolkit(plugin):
    assert not [name for name in HEAVY if name in sys.modules]


def test_cancel_stops_the_engine_and_the_run_shows_interrupted(plugin, engine, big_scene,
                                                               tmp_path):
    out = tmp_path / "cancelled.gpkg"
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda percent: percent > 5 and feedback.cancel())
    started = time.monotonic()
    result = processing.run("geovlm:tile", {"INPUT": str(big_scene), "CHIP_SIZE": 16,
                                            "OUTPUT": str(out)}, feedback=feedback)
    assert time.monotonic() - started < 60
    assert result["STATUS"] == "interrupted"
    assert _status(out) == "interrupted"
    with closing(sqlite3.connect(out)) as db:
        written = db.execute("SELECT count(*) FROM chips").fetchone()[0]
    assert 0 < written < 5625
    # The same parameters resume the run.
    resumed = processing.run("geovlm:tile", {"INPUT": str(big_scene), "CHIP_SIZE": 16,
                                             "OUTPUT": str(out)})
    assert resumed["STATUS"] == "complete" and resumed["WRITTEN"] == 5625 - written


def test_qgis_process_runs_tile_from_the_shell(engine, scene, tmp_path):
    """The plugin loaded by qgis_process itself, from a fresh profile."""
    env = {**os.environ, "QGIS_PLUGINPATH": str(PLUGIN_ROOT),
           "QGIS_CUSTOM_CONFIG_PATH": str(tmp_path / "profile")}
    # Debian's /usr/bin/qgis_process wrapper adds --noversioncheck, which qgis_process rejects.
    qgis_process = shutil.which("qgis_process.bin") or "qgis_process"
    subprocess.run([qgis_process, "plugins", "enable", "geovlm_qgis"], env=env, check=True,
                   capture_output=True)
    out = tmp_path / "shell.gpkg"
    done = subprocess.run([qgis_process, "run", "geovlm:tile", "--", f"INPUT={scene}",
                           "CHIP_SIZE=256", f"OUTPUT={out}"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "STATUS:\tcomplete" in done.stdout and "WRITTEN:\t16" in done.stdout
    assert _status(out) == "complete"


def test_tile_runs_inside_a_graphical_modeler_model(plugin, engine, scene, tmp_path):
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("chips", "geovlm")
    model.addModelParameter(QgsProcessingParameterRasterLayer("scene", "Scene"),
                            QgsProcessingModelParameter("scene"))
    child = QgsProcessingModelChildAlgorithm("geovlm:tile")
    child.setChildId("tile")
    child.addParameterSources(
        "INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("scene")])
    child.addParameterSources(
        "CHIP_SIZE", [QgsProcessingModelChildParameterSource.fromStaticValue(256)])
    output = QgsProcessingModelOutput("chips")
    output.setChildId("tile")
    output.setChildOutputName("OUTPUT")
    child.setModelOutputs({"chips": output})
    model.addChildAlgorithm(child)
    out = tmp_path / "modeled.gpkg"
    result = processing.run(model, {"scene": str(scene), "tile:chips": str(out)})
    layer = QgsVectorLayer(result["tile:chips"], "chips", "ogr")
    assert layer.isValid() and layer.featureCount() == 16
    assert _status(out) == "complete"
