"""The Processing provider against the real engine, in real QGIS."""

from __future__ import annotations

import sqlite3
import sys
from contextlib import closing

import processing
import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsVectorLayer

from .conftest import HEAVY


def _status(gpkg):
    with closing(sqlite3.connect(gpkg)) as db:
        return db.execute("SELECT status FROM runs").fetchone()[0]


def test_the_provider_registers_both_algorithms(plugin):
    provider = QgsApplication.processingRegistry().providerById("geovlm")
    assert provider is not None
    assert sorted(a.id() for a in provider.algorithms()) == ["geovlm:classify", "geovlm:tile"]
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


def test_classify_writes_a_styled_layer(plugin, engine, scene, tiny_model, tmp_path):
    out = tmp_path / "classified.gpkg"
    result = processing.run("geovlm:classify", {
        "INPUT": str(scene), "MODEL": tiny_model, "QUANTIZE": 4, "DEVICE": "cpu",
        "CHIP_SIZE": 256, "OUTPUT": str(out)})
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
