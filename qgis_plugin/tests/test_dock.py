"""The dock panel offscreen: a classify run through the panel, its picture, its refusals."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
from qgis.testing.mocked import get_iface

from .conftest import HEAVY


def _wait(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.02)
    assert condition(), "timed out"


def _screenshot_path(tmp_path: Path, name: str) -> Path:
    """docs/img/ when $GEOVLM_SCREENSHOTS names it (make screenshots), else a temporary file."""
    folder = Path(os.environ.get("GEOVLM_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def test_the_panel_classifies_loads_styled_and_zooms(scene, tiny_model, engine, tmp_path):
    from geovlm_qgis.dock import GeovlmDock

    iface = get_iface()
    raster = QgsRasterLayer(str(scene), "cogeo")
    QgsProject.instance().addMapLayer(raster)
    dock = GeovlmDock(iface)
    dock.layer_box.setLayer(raster)
    assert dock.output_widget.filePath().endswith("cogeo.geovlm.gpkg")
    dock.refresh_models()
    _wait(lambda: dock.model_box.count() == 3)
    assert "xview2-qwen3vl" in [dock.model_box.itemText(i) for i in range(3)]
    dock.model_box.setCurrentText(tiny_model)
    dock.size_box.setValue(256)
    out = tmp_path / "panel.gpkg"
    dock.output_widget.setFilePath(str(out))
    dock.run()
    assert not dock.run_button.isEnabled() and dock.cancel_button.isEnabled()
    _wait(lambda: dock.loaded is not None or "Error" in dock.log.toPlainText())
    layer = dock.loaded
    assert layer is not None, dock.log.toPlainText()
    assert layer.isValid() and layer.featureCount() == 16
    assert layer.renderer().type() == "categorizedSymbol"
    assert dock.progress.value() == 100 and dock.run_button.isEnabled()
    assert iface.mapCanvas().extent().intersects(layer.extent())
    dock.resize(380, 560)
    dock.show()
    QgsApplication.processEvents()
    picture = _screenshot_path(tmp_path, "qgis-dock.png")
    assert dock.grab().save(str(picture)) and picture.stat().st_size > 5000
    assert not [name for name in HEAVY if name in sys.modules]


def test_a_raster_without_crs_gets_a_message_not_a_run(tmp_path):
    from geovlm_qgis.dock import GeovlmDock
    from osgeo import gdal

    path = tmp_path / "plain.tif"
    gdal.GetDriverByName("GTiff").Create(str(path), 64, 64, 3, gdal.GDT_Byte)
    raster = QgsRasterLayer(str(path), "plain")
    QgsProject.instance().addMapLayer(raster)
    dock = GeovlmDock(None)
    dock.layer_box.setLayer(raster)
    dock.run()
    assert dock.task is None
    assert "plain has no coordinate reference system" in dock.log.toPlainText()


def test_a_geographic_raster_runs_with_a_note_and_engine_errors_reach_the_log(scene, engine,
                                                                               tmp_path):
    from geovlm_qgis.dock import GeovlmDock
    from osgeo import gdal

    path = tmp_path / "wgs84.tif"
    gdal.Warp(str(path), str(scene), dstSRS="EPSG:4326")
    raster = QgsRasterLayer(str(path), "wgs84")
    QgsProject.instance().addMapLayer(raster)
    dock = GeovlmDock(None)
    dock.layer_box.setLayer(raster)
    dock.model_box.setCurrentText("no-such-preset")
    dock.run()
    _wait(lambda: dock.task is None)
    log = dock.log.toPlainText()
    assert "wgs84 is in a geographic CRS (EPSG:4326)" in log
    assert "Error: " in log and "no-such-preset" in log.split("Error: ")[-1]
    assert dock.run_button.isEnabled() and dock.loaded is None
