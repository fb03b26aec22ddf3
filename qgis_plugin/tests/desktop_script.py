"""Run inside the QGIS desktop (``qgis --code``): classify with the plugin, show it, take a picture.

Reads $GEOVLM_DESKTOP_JOB (JSON: scene, model, output, picture, report); writes the report
(JSON) and the picture, then quits QGIS. Started by tests/test_desktop.py under Xvfb.
"""

import json
import os
import sys

import processing
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.utils import active_plugins, iface, plugins

job = json.loads(os.environ["GEOVLM_DESKTOP_JOB"])
report = {"plugin_loaded": "geovlm_qgis" in active_plugins,
          "provider": QgsApplication.processingRegistry().providerById("geovlm") is not None}


def finish():
    if "picture" in report:  # the canvas finished, or the time ran out: whichever came first
        return
    window = iface.mainWindow()
    report["picture"] = window.grab().save(job["picture"])
    report["heavy"] = [m for m in ("torch", "transformers", "rasterio", "geovlm")
                       if m in sys.modules]
    with open(job["report"], "w") as out:
        json.dump(report, out)
    QgsApplication.exit(0)


try:
    result = processing.run("geovlm:classify", {
        "INPUT": job["scene"], "MODEL": job["model"], "CHIP_SIZE": 256, "DEVICE": "cpu",
        "OUTPUT": job["output"]})
    raster = QgsRasterLayer(job["scene"], "scene")
    QgsProject.instance().addMapLayer(raster)
    dock = plugins["geovlm_qgis"].dock
    dock.layer_box.setLayer(raster)
    dock.model_box.setCurrentText(job["model"])
    dock.size_box.setValue(256)
    dock.output_widget.setFilePath(job["output"])
    dock.log.appendPlainText(f"Wrote {result['WRITTEN']} chips (run {result['RUN_ID']}).")
    dock.progress.setValue(100)
    layer = dock.load(job["output"], "chips")
    report["renderer"] = layer.renderer().type()
    report["count"] = layer.featureCount()
    layer.setOpacity(0.6)
    iface.layerTreeView().expandAll()  # the legend shows the stored style's categories
    QgsProject.instance().layerTreeRoot().findLayer(raster.id()).setExpanded(False)
    iface.mainWindow().resize(1280, 800)
    # The picture once the canvas has drawn the layers (and the window had a moment to paint).
    iface.mapCanvas().mapCanvasRefreshed.connect(lambda: QTimer.singleShot(500, finish))
    iface.mapCanvas().refresh()
except Exception as exc:  # reported to the test, which shows it
    report["error"] = f"{type(exc).__name__}: {exc}"
QTimer.singleShot(4000, finish)
