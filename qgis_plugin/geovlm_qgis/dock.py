"""The dock panel for the common path: classify the current raster and load the styled result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsCoordinateTransform,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.gui import QgsDockWidget, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .base import tr
from .engine import EngineError, engine_json, run_engine, shown_command
from .raster_algorithm import DEFAULT_MODEL, LANGUAGES, raster_problem
from .settings import engine_path, server_arguments
from .tasks import BackgroundTask

__all__ = ["GeovlmDock", "default_output"]


def default_output(layer: QgsRasterLayer) -> str:
    """The output beside the raster: ``<name>.geovlm.gpkg``."""
    source = Path(layer.source())
    return str(source.with_name(f"{source.stem}.geovlm.gpkg"))


class GeovlmDock(QgsDockWidget):
    """Raster, model preset, language, chip size; Run/Cancel, progress and log.

    The run is a `BackgroundTask` (QGIS stays responsive); when it is done the output's chip
    layer is loaded with its stored style and the map zooms to it.

    Parameters
    ----------
    iface
        QGIS's interface (its map canvas is zoomed); None in tests without a desktop.
    """

    def __init__(self, iface: Any = None) -> None:
        super().__init__(tr("geovlm"))
        self.setObjectName("GeovlmDock")
        self.iface = iface
        self.task: BackgroundTask | None = None
        self.models_task: BackgroundTask | None = None
        self.loaded: QgsVectorLayer | None = None
        self.layer_box = QgsMapLayerComboBox()
        self.layer_box.setFilters(QgsMapLayerProxyModel.RasterLayer)
        if iface is not None and isinstance(iface.activeLayer(), QgsRasterLayer):
            self.layer_box.setLayer(iface.activeLayer())
        self.layer_box.layerChanged.connect(self._suggest_output)
        self.model_box = QComboBox()
        self.model_box.setEditable(True)
        self.model_box.addItem(DEFAULT_MODEL)
        refresh = QPushButton(tr("Presets"))
        refresh.setToolTip(tr("Ask the engine for its model presets (geovlm models)"))
        refresh.clicked.connect(self.refresh_models)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_box, 1)
        model_row.addWidget(refresh)
        self.language_box = QComboBox()
        self.language_box.addItems(list(LANGUAGES))
        self.size_box = QSpinBox()
        self.size_box.setRange(0, 4096)
        self.size_box.setSpecialValueText(tr("preset's"))
        self.output_widget = QgsFileWidget()
        self.output_widget.setStorageMode(QgsFileWidget.SaveFile)
        self.output_widget.setFilter("GeoPackage (*.gpkg)")
        form = QFormLayout()
        form.addRow(tr("Raster"), self.layer_box)
        form.addRow(tr("Model"), model_row)
        form.addRow(tr("Language"), self.language_box)
        form.addRow(tr("Chip size (px)"), self.size_box)
        form.addRow(tr("Output"), self.output_widget)
        self.run_button = QPushButton(tr("Run"))
        self.cancel_button = QPushButton(tr("Cancel"))
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.log, 1)
        self.setWidget(body)
        self._suggest_output(self.layer_box.currentLayer())

    def _suggest_output(self, layer: Any) -> None:
        if isinstance(layer, QgsRasterLayer) and layer.providerType() == "gdal":
            self.output_widget.setFilePath(default_output(layer))

    def refresh_models(self) -> None:
        """Fill the model list from ``geovlm models --json`` (in the background)."""
        try:
            engine = engine_path()
        except EngineError as exc:
            self.log.appendPlainText(exc.message)
            return

        def done(presets: list[dict[str, Any]], error: str | None, kind: Any) -> None:
            if error is not None:
                self.log.appendPlainText(error)
                return
            current = self.model_box.currentText()
            self.model_box.clear()
            for preset in presets:
                offline = preset["offline"]["model"] and preset["offline"]["adapter"] in (
                    True, None)
                self.model_box.addItem(preset["name"])
                self.model_box.setItemData(
                    self.model_box.count() - 1,
                    f"{preset['description']} ({tr('offline') if offline else tr('downloads')})",
                    3)  # Qt.ToolTipRole
            self.model_box.setCurrentText(current)

        self.models_task = BackgroundTask(tr("geovlm presets"), lambda report, cancelled:
                                          engine_json(engine, "models", "--json"))
        self.models_task.ended.connect(done)
        QgsApplication.taskManager().addTask(self.models_task)

    def arguments(self, layer: QgsRasterLayer, output: str) -> list[str]:
        """The engine's classify command line for the panel's choices."""
        args = ["classify", layer.source(), "-o", output,
                "--model", self.model_box.currentText().strip() or DEFAULT_MODEL,
                "--language", self.language_box.currentText()]
        if self.size_box.value():
            args += ["--size", str(self.size_box.value())]
        return args + server_arguments()

    def run(self) -> None:
        """Check the choices, then classify in a background task."""
        layer = self.layer_box.currentLayer()
        problem = raster_problem(layer)
        output = self.output_widget.filePath().strip()
        if problem is None and not output.lower().endswith(".gpkg"):
            problem = tr("Choose an output GeoPackage (.gpkg).")
        if problem is not None:
            self.log.appendPlainText(problem)
            return
        if layer.crs().isGeographic():
            self.log.appendPlainText(tr(
                "{} is in a geographic CRS ({}): chips are sized in ground metres measured on"
                " the ellipsoid and the result stays in {}.").format(
                    layer.name(), layer.crs().authid(), layer.crs().authid()))
        try:
            engine = engine_path()
        except EngineError as exc:
            self.log.appendPlainText(exc.message)
            return
        args = self.arguments(layer, output)
        self.log.appendPlainText(shown_command(engine, args))
        self.progress.setValue(0)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.task = BackgroundTask(
            tr("geovlm classify {}").format(layer.name()),
            lambda report, cancelled: run_engine(engine, args, report, cancelled))
        self.task.message.connect(self._event)
        self.task.ended.connect(self._ended)
        QgsApplication.taskManager().addTask(self.task)

    def cancel(self) -> None:
        """Stop the run: the engine writes what it has and marks the run interrupted."""
        if self.task is not None:
            self.task.cancel()

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "progress" and event.get("total"):
            self.progress.setValue(int(100 * event["done"] / event["total"]))
        elif kind == "start":
            self.log.appendPlainText(tr("{} chips, run {}").format(event["total"],
                                                                  event.get("run_id")))
        elif kind in ("warning", "log"):
            self.log.appendPlainText(str(event.get("message")))

    def _ended(self, done: dict[str, Any] | None, error: str | None, kind: Any) -> None:
        self.task = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if error is not None:
            self.log.appendPlainText(tr("Error: {}").format(error))
            return
        assert done is not None
        if done.get("status") == "interrupted":
            self.log.appendPlainText(tr("Cancelled; Run again to resume."))
            return
        self.progress.setValue(100)
        self.log.appendPlainText(tr("Wrote {} chips in {} s.").format(done.get("written"),
                                                                     done.get("seconds")))
        self.load(done["output"], (done.get("layers") or ["chips"])[0])

    def load(self, output: str, layer_name: str) -> QgsVectorLayer:
        """Add the output's layer (its stored style comes with it) and zoom the map to it."""
        layer = QgsVectorLayer(f"{output}|layername={layer_name}",
                               f"{Path(output).stem} {layer_name}", "ogr")
        QgsProject.instance().addMapLayer(layer)
        if self.iface is not None:
            canvas = self.iface.mapCanvas()
            transform = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(),
                                               QgsProject.instance())
            canvas.setExtent(transform.transformBoundingBox(layer.extent()))
            canvas.refresh()
        self.loaded = layer
        return layer
