"""Processing algorithms over a raster: ``geovlm:tile``, ``geovlm:classify``, ``geovlm:refer``.

Parameter names are constants and ids fixed lowercase, so models, batch runs and
``qgis_process run geovlm:classify -- INPUT=... LANGUAGE=ja OUTPUT=...`` keep working across
versions; a choice takes its option's name or, as before, its index.
Each algorithm builds the engine's command line; the base class runs it and turns its JSON
events into feedback.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
)

from .base import EngineAlgorithm, layer_file, tr
from .settings import server_arguments

__all__ = ["ClassifyAlgorithm", "RasterAlgorithm", "ReferAlgorithm", "TileAlgorithm",
           "raster_problem"]

LANGUAGES = ("en", "ja", "zh")
MODES = ("score", "generate")
#: "preset" leaves quantization to the model preset.
QUANTIZATIONS = ("preset", "auto", "4bit", "8bit", "none")
DEFAULT_MODEL = "xview2-qwen3vl"


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


class RasterAlgorithm(EngineAlgorithm):
    """Shared by the algorithms that chip a raster: input, tiling, GeoPackage output."""

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
    LANGUAGE = "LANGUAGE"
    BATCH_SIZE = "BATCH_SIZE"
    QUANTIZE = "QUANTIZE"
    DEVICE = "DEVICE"
    ENDPOINT = "ENDPOINT"
    API_KEY = "API_KEY"

    #: Default chip size; 0 means the model preset's.
    DEFAULT_CHIP_SIZE = 512
    #: The layer written, when the engine's ``done`` event does not name it.
    LAYER = "chips"

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
        done = self.run_step(args, feedback)
        if done.get("status") == "interrupted":
            feedback.pushInfo(tr("Cancelled: what was processed is kept; run again with the same"
                                 " parameters to resume."))
        layers = done.get("layers") or [self.LAYER]
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

    def add_language_parameter(self, label: str) -> None:
        """Add LANGUAGE: en, ja or zh."""
        self.add_enum_parameter(self.LANGUAGE, label, LANGUAGES)

    def add_model_run_parameters(self) -> None:
        """Add BATCH_SIZE, QUANTIZE and DEVICE: how a model runs."""
        self.addParameter(QgsProcessingParameterNumber(
            self.BATCH_SIZE, tr("Chips per model call"), QgsProcessingParameterNumber.Integer, 8,
            minValue=1))
        self.add_enum_parameter(
            self.QUANTIZE, tr("Weights (preset: the preset's choice)"), QUANTIZATIONS)
        self.addParameter(QgsProcessingParameterString(
            self.DEVICE, tr("Device, e.g. cuda:0 or cpu (empty: CUDA when present)"),
            optional=True))

    def model_run_arguments(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        """Engine options for LANGUAGE, BATCH_SIZE, QUANTIZE and DEVICE."""
        args = ["--language", self.enum_value(parameters, self.LANGUAGE, context),
                "--batch-size", str(self.parameterAsInt(parameters, self.BATCH_SIZE, context))]
        quantize = self.enum_value(parameters, self.QUANTIZE, context)
        if quantize != "preset":
            args += ["--quantize", quantize]
        device = self.parameterAsString(parameters, self.DEVICE, context).strip()
        if device:
            args += ["--device", device]
        return args

    def add_server_parameters(self, endpoint_label: str) -> None:
        """Add ENDPOINT and API_KEY: a ``geovlm serve`` or vLLM server to run the models on."""
        self.addParameter(QgsProcessingParameterString(
            self.ENDPOINT, endpoint_label, optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.API_KEY, tr("The server's API key (empty: the plugin setting)"),
            optional=True))

    def server_run_arguments(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        """Engine options for ENDPOINT and API_KEY, or the saved server's; [] to run here."""
        return server_arguments(self.parameterAsString(parameters, self.ENDPOINT, context),
                                self.parameterAsString(parameters, self.API_KEY, context))

    def done_message(self, event: dict[str, Any]) -> str:
        return tr("Wrote {} chips ({} already done, {} skipped) in {} s.").format(
            event.get("written"), event.get("already_done"), event.get("skipped_invalid"),
            event.get("seconds"))


class TileAlgorithm(RasterAlgorithm):
    """``geovlm:tile``: chip footprints of a raster, no model."""

    ALGORITHM_ID = "tile"
    DISPLAY_NAME = "Tile raster into chips"
    HELP = ("Cuts the raster into chips and writes their footprints (chip_id, row, col,"
            " valid_fraction) to layer 'chips' of a GeoPackage. Runs the geovlm engine.")

    def task_arguments(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        return ["tile"]


class ClassifyAlgorithm(RasterAlgorithm):
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
    MODE = "MODE"
    MIN_CONFIDENCE = "MIN_CONFIDENCE"
    NATIVE_GSD = "NATIVE_GSD"

    def add_task_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterString(
            self.MODEL, tr("Model preset, Hugging Face id or local folder"), DEFAULT_MODEL))
        self.addParameter(QgsProcessingParameterString(
            self.ADAPTER, tr("LoRA adapter (empty: the preset's)"), optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.NO_ADAPTER, tr("Use the base model without the preset's adapter"), False))
        self.add_language_parameter(tr("Language of question and answers"))
        self.add_enum_parameter(
            self.MODE, tr("Mode (score: a probability for every label; generate: free text,"
                          " parsed)"), MODES)
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_CONFIDENCE, tr("Minimum confidence (below: 'uncertain')"),
            QgsProcessingParameterNumber.Double, 0.0, minValue=0, maxValue=1))
        self.add_model_run_parameters()
        self.addParameter(QgsProcessingParameterBoolean(
            self.NATIVE_GSD, tr("Keep the raster's resolution (not the preset's)"), False))
        self.add_server_parameters(tr("geovlm serve URL, e.g. http://gpu-host:8000/v1 (empty:"
                                      " the plugin setting, else the model runs here)"))

    def task_arguments(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        args = ["classify",
                "--model", self.parameterAsString(parameters, self.MODEL, context).strip()
                or DEFAULT_MODEL,
                "--mode", self.enum_value(parameters, self.MODE, context),
                "--min-confidence",
                repr(self.parameterAsDouble(parameters, self.MIN_CONFIDENCE, context)),
                *self.model_run_arguments(parameters, context)]
        adapter = self.parameterAsString(parameters, self.ADAPTER, context).strip()
        if adapter:
            args += ["--adapter", adapter]
        if self.parameterAsBool(parameters, self.NO_ADAPTER, context):
            args.append("--no-adapter")
        if self.parameterAsBool(parameters, self.NATIVE_GSD, context):
            args.append("--native-gsd")
        return args + self.server_run_arguments(parameters, context)

class ReferAlgorithm(RasterAlgorithm):
    """``geovlm:refer``: a referring expression for every object of the raster."""

    ALGORITHM_ID = "refer"
    DISPLAY_NAME = "Describe objects with referring expressions"
    HELP = ("Writes, for every object of the raster, an expression that picks it out among the"
            " objects of its chip (\"the destroyed building in the north-west corner\"; field"
            " 'context' names the chip), or with the scene context among all of the raster's,"
            " a part of the raster first (\"in the north-western part of the image, ...\"), in"
            " map directions, or flags it ambiguous: layer 'objects' of a GeoPackage, styled."
            " The objects come from one of: a footprint layer (a 'damage' field is read as xBD"
            " damage grades), an xBD label file of the raster, or detection by the caption"
            " model. Optional models rewrite the expressions and caption each chip. Runs the"
            " geovlm engine in its own environment.")
    LAYER = "objects"

    FOOTPRINTS = "FOOTPRINTS"
    XBD_LABELS = "XBD_LABELS"
    DETECT = "DETECT"
    REWRITE_MODEL = "REWRITE_MODEL"
    CAPTION_MODEL = "CAPTION_MODEL"
    CONTEXT = "CONTEXT"
    #: The engine's --context values, the CONTEXT choices.
    CONTEXTS = ("chip", "scene")

    def add_task_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.FOOTPRINTS, tr("Object footprints (polygons)"),
            [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.XBD_LABELS, tr("Or: the raster's xBD label file"),
            extension="json", optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.DETECT, tr("Or: detect the objects with the caption model"), False))
        self.add_enum_parameter(
            self.CONTEXT, tr("Unique among the objects of its chip, or of the whole raster"
                             " (scene: footprints or xBD labels only)"), self.CONTEXTS)
        self.add_language_parameter(tr("Language of the expressions and captions"))
        self.addParameter(QgsProcessingParameterString(
            self.REWRITE_MODEL, tr("Text model that rewrites the expressions (optional)"),
            optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.CAPTION_MODEL, tr("Vision-language model that captions chips (optional)"),
            optional=True))
        self.add_model_run_parameters()
        self.add_server_parameters(tr(
            "geovlm serve or vLLM URL, e.g. http://gpu-host:8000/v1, whose served models the"
            " model names above are (empty: the models run here)"))

    def task_arguments(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        footprints = self.parameterAsVectorLayer(parameters, self.FOOTPRINTS, context)
        labels = self.parameterAsFile(parameters, self.XBD_LABELS, context)
        detect = self.parameterAsBool(parameters, self.DETECT, context)
        if [footprints is not None, bool(labels), detect].count(True) != 1:
            raise QgsProcessingException(tr(
                "Give exactly one source of objects: a footprint layer, an xBD label file or"
                " detection."))
        scene = self.enum_value(parameters, self.CONTEXT, context)
        if detect and scene == "scene":
            raise QgsProcessingException(tr(
                "Objects unique among all of the raster's need a footprint layer or an xBD label"
                " file; with detection use the chip context."))
        args = ["refer", *self.model_run_arguments(parameters, context), "--context", scene]
        if footprints is not None:
            path, layer = layer_file(footprints)
            args += ["--footprints", path, *(["--footprints-layer", layer] if layer else [])]
        elif labels:
            args += ["--xbd-labels", labels]
        else:
            args.append("--detect")
        models = False
        for name, option in ((self.REWRITE_MODEL, "--rewrite-model"),
                             (self.CAPTION_MODEL, "--caption-model")):
            model = self.parameterAsString(parameters, name, context).strip()
            if model:
                args += [option, model]
                models = True
        # Only a server named here: the saved one is classify's, whose model names differ.
        # Rule-based expressions alone run no model, so they need no server.
        endpoint = self.parameterAsString(parameters, self.ENDPOINT, context).strip()
        if endpoint and (models or detect):
            args += self.server_run_arguments(parameters, context)
        return args

    def done_message(self, event: dict[str, Any]) -> str:
        return tr("Described {} objects ({} unambiguous, {} rewrites kept, {} rejected) in"
                  " {} s.").format(event.get("written"), event.get("unambiguous"),
                                   event.get("rewrites_kept"), event.get("rewrites_rejected"),
                                   event.get("seconds"))
