"""Processing algorithms ``geovlm:tile`` and ``geovlm:classify``: engine commands as algorithms.

Parameter names are constants and ids fixed lowercase, so models, batch runs and
``qgis_process run geovlm:classify -- INPUT=... OUTPUT=...`` keep working across versions.
Each algorithm builds the engine's command line; the base class runs it and turns its JSON
events into feedback.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)
from qgis.PyQt.QtCore import QCoreApplication

from .engine import EngineError, run_engine
from .settings import engine_path

__all__ = ["ClassifyAlgorithm", "GeovlmAlgorithm", "TileAlgorithm", "raster_problem"]

LANGUAGES = ("en", "ja", "zh")
MODES = ("score", "generate")
#: "preset" leaves quantization to the model preset.
QUANTIZATIONS = ("preset", "auto", "4bit", "8bit", "none")
DEFAULT_MODEL = "xview2-qwen3vl"


def tr(text: str) -> str:
    """Translate a user-visible string in the plugin's context."""
    return QCoreApplication.translate("geovlm", text)


def raster_problem(layer: Any) -> str | None:
    """Why a raster layer cannot be chipped (one sentence), or None when it can.

    Parameters
    ----------
    layer
        A ``QgsRasterLayer`` (or None).
    """
    if layer is None or not layer.isValid():
        return tr("Choose a valid raster layer.")
    if layer.providerType() != "gdal":
        return tr("Layer {} is not a file GDAL reads (provider {}); export it to a GeoTIFF"
                  " first.").format(layer.name(), layer.providerType())
    if not layer.crs().isValid():
        return tr("Layer {} has no coordinate reference system, so chips have no place on the"
                  " map; georeference it (Raster > Georeferencer) or assign its CRS"
                  " first.").format(layer.name())
    return None


class GeovlmAlgorithm(QgsProcessingAlgorithm):
    """Shared by every geovlm algorithm: names, input/output, running the engine."""

    INPUT = "INPUT"
    OUTPUT = "OUTPUT"
    CHIP_SIZE = "CHIP_SIZE"
    OVERLAP = "OVERLAP"
    BANDS = "BANDS"
    MIN_VALID = "MIN_VALID"
    GSD = "GSD"
    OVERWRITE = "OVERWRITE"
    RUN_ID = "RUN_ID"
    STATUS = "STATUS"
    WRITTEN = "WRITTEN"

    #: Fixed lowercase id, display name and help; set by subclasses.
    ALGORITHM_ID = ""
    DISPLAY_NAME = ""
    HELP = ""
    #: Default chip size; 0 means the model preset's.
    DEFAULT_CHIP_SIZE = 512

    def name(self) -> str:
        return self.ALGORITHM_ID

    def displayName(self) -> str:  # noqa: N802
        return tr(self.DISPLAY_NAME)

    def shortHelpString(self) -> str:  # noqa: N802
        return tr(self.HELP)

    def createInstance(self) -> GeovlmAlgorithm:  # noqa: N802
        return type(self)()

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, tr("Input raster")))
        self.add_task_parameters()
        size = QgsProcessingParameterNumber(
            self.CHIP_SIZE, tr("Chip size (pixels; 0 = the model preset's)")
            if self.DEFAULT_CHIP_SIZE == 0 else tr("Chip size (pixels)"),
            QgsProcessingParameterNumber.Integer, self.DEFAULT_CHIP_SIZE,
            minValue=0 if self.DEFAULT_CHIP_SIZE == 0 else 1)
        self.addParameter(size)
        self.addParameter(QgsProcessingParameterNumber(
            self.OVERLAP, tr("Overlap (pixels)"), QgsProcessingParameterNumber.Integer, 0,
            minValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.BANDS, tr("Bands used as RGB, e.g. 3,2,1 (empty: 1,2,3)"), optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_VALID, tr("Minimum share of valid pixels"),
            QgsProcessingParameterNumber.Double, 0.5, minValue=0, maxValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            self.GSD, tr("Ground sampling distance in metres (0 = default)"),
            QgsProcessingParameterNumber.Double, 0.0, minValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.OVERWRITE, tr("Replace an existing output instead of resuming it"), False))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, tr("Output GeoPackage"), QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputString(self.RUN_ID, tr("Run id")))
        self.addOutput(QgsProcessingOutputString(
            self.STATUS, tr("Run status (complete or interrupted)")))
        self.addOutput(QgsProcessingOutputNumber(self.WRITTEN, tr("Chips written")))

    def add_task_parameters(self) -> None:
        """Add the task's own parameters (after INPUT)."""

    def task_arguments(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        """The engine's command and task options, before the shared ones."""
        raise NotImplementedError

    def processAlgorithm(  # noqa: N802
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        problem = raster_problem(layer)
        if problem:
            raise QgsProcessingException(problem)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if not output.lower().endswith(".gpkg"):
            raise QgsProcessingException(
                tr("The output must be a GeoPackage (.gpkg), not {}.").format(output))
        args = [*self.task_arguments(parameters, context), layer.source(), "-o", output,
                *self.tiling_arguments(parameters, context)]
        try:
            engine = engine_path()
            feedback.pushCommandInfo(" ".join([engine, *args]))
            done = run_engine(engine, args, lambda event: self._report(event, feedback),
                              feedback.isCanceled)
        except EngineError as exc:
            raise QgsProcessingException(exc.message) from exc
        if done.get("status") == "interrupted":
            feedback.pushInfo(tr("Cancelled: what was processed is kept; run again with the same"
                                 " parameters to resume."))
        layers = done.get("layers") or ["chips"]
        return {
            self.OUTPUT: f"{output}|layername={layers[0]}",
            self.RUN_ID: done.get("run_id", ""),
            self.STATUS: done.get("status", ""),
            self.WRITTEN: done.get("written", 0),
        }

    def tiling_arguments(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        """Engine options for the shared tiling parameters."""
        args = ["--overlap", str(self.parameterAsInt(parameters, self.OVERLAP, context)),
                "--min-valid", repr(self.parameterAsDouble(parameters, self.MIN_VALID, context))]
        size = self.parameterAsInt(parameters, self.CHIP_SIZE, context)
        if size:
            args += ["--size", str(size)]
        bands = self.parameterAsString(parameters, self.BANDS, context).strip()
        if bands:
            args += ["--bands", bands]
        gsd = self.parameterAsDouble(parameters, self.GSD, context)
        if gsd > 0:
            args += ["--gsd", repr(gsd)]
        if self.parameterAsBool(parameters, self.OVERWRITE, context):
            args.append("--overwrite")
        return args

    @staticmethod
    def _report(event: dict[str, Any], feedback: QgsProcessingFeedback) -> None:
        kind = event.get("event")
        if kind == "start":
            feedback.pushInfo(tr("{} chips into layer {} of {} (run {})").format(
                event.get("total"), ", ".join(event.get("layers", [])), event.get("output"),
                event.get("run_id")))
        elif kind == "progress" and event.get("total"):
            feedback.setProgress(100.0 * event["done"] / event["total"])
        elif kind == "warning":
            feedback.pushWarning(str(event.get("message")))
        elif kind == "done" and event.get("status") == "complete":
            feedback.pushInfo(tr("Wrote {} chips ({} already done, {} skipped) in {} s.").format(
                event.get("written"), event.get("already_done"), event.get("skipped_invalid"),
                event.get("seconds")))
        elif kind == "log":
            feedback.pushConsoleInfo(str(event.get("message")))


class TileAlgorithm(GeovlmAlgorithm):
    """``geovlm:tile``: chip footprints of a raster, no model."""

    ALGORITHM_ID = "tile"
    DISPLAY_NAME = "Tile raster into chips"
    HELP = ("Cuts the raster into chips and writes their footprints (chip_id, row, col,"
            " valid_fraction) to layer 'chips' of a GeoPackage. Runs the geovlm engine.")

    def task_arguments(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        return ["tile"]


class ClassifyAlgorithm(GeovlmAlgorithm):
    """``geovlm:classify``: the disaster type of every chip, by a vision-language model."""

    ALGORITHM_ID = "classify"
    DISPLAY_NAME = "Classify chips with a vision-language model"
    HELP = ("Classifies the disaster type of every chip of the raster with a vision-language"
            " model and writes label, runner-up and probabilities to layer 'chips' of a"
            " GeoPackage, styled by label. Chip size and resolution default to the model"
            " preset's. Runs the geovlm engine in its own environment.")
    DEFAULT_CHIP_SIZE = 0

    MODEL = "MODEL"
    ADAPTER = "ADAPTER"
    NO_ADAPTER = "NO_ADAPTER"
    LANGUAGE = "LANGUAGE"
    MODE = "MODE"
    MIN_CONFIDENCE = "MIN_CONFIDENCE"
    BATCH_SIZE = "BATCH_SIZE"
    QUANTIZE = "QUANTIZE"
    DEVICE = "DEVICE"
    NATIVE_GSD = "NATIVE_GSD"

    def add_task_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterString(
            self.MODEL, tr("Model preset, Hugging Face id or local folder"), DEFAULT_MODEL))
        self.addParameter(QgsProcessingParameterString(
            self.ADAPTER, tr("LoRA adapter (empty: the preset's)"), optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.NO_ADAPTER, tr("Use the base model without the preset's adapter"), False))
        self.addParameter(QgsProcessingParameterEnum(
            self.LANGUAGE, tr("Language of question and answers"), list(LANGUAGES),
            defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.MODE, tr("Mode"), [tr("score: a probability for every label"),
                                    tr("generate: free text, parsed")], defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_CONFIDENCE, tr("Minimum confidence (below: 'uncertain')"),
            QgsProcessingParameterNumber.Double, 0.0, minValue=0, maxValue=1))
        self.addParameter(QgsProcessingParameterNumber(
            self.BATCH_SIZE, tr("Chips per model call"), QgsProcessingParameterNumber.Integer, 8,
            minValue=1))
        self.addParameter(QgsProcessingParameterEnum(
            self.QUANTIZE, tr("Weights (preset: the preset's choice)"), list(QUANTIZATIONS),
            defaultValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.DEVICE, tr("Device, e.g. cuda:0 or cpu (empty: CUDA when present)"),
            optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.NATIVE_GSD, tr("Keep the raster's resolution (not the preset's)"), False))

    def task_arguments(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        args = ["classify",
                "--model", self.parameterAsString(parameters, self.MODEL, context).strip()
                or DEFAULT_MODEL,
                "--language", LANGUAGES[self.parameterAsEnum(parameters, self.LANGUAGE, context)],
                "--mode", MODES[self.parameterAsEnum(parameters, self.MODE, context)],
                "--min-confidence",
                repr(self.parameterAsDouble(parameters, self.MIN_CONFIDENCE, context)),
                "--batch-size", str(self.parameterAsInt(parameters, self.BATCH_SIZE, context))]
        adapter = self.parameterAsString(parameters, self.ADAPTER, context).strip()
        if adapter:
            args += ["--adapter", adapter]
        if self.parameterAsBool(parameters, self.NO_ADAPTER, context):
            args.append("--no-adapter")
        quantize = QUANTIZATIONS[self.parameterAsEnum(parameters, self.QUANTIZE, context)]
        if quantize != "preset":
            args += ["--quantize", quantize]
        device = self.parameterAsString(parameters, self.DEVICE, context).strip()
        if device:
            args += ["--device", device]
        if self.parameterAsBool(parameters, self.NATIVE_GSD, context):
            args.append("--native-gsd")
        return args
