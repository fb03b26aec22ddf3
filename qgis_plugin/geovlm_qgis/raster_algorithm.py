"""The base of the algorithms that run a model or a cutter over a raster.

`RasterAlgorithm` holds the parameters they share (input raster, tiling, model, footprints,
server, GeoPackage output) and the engine options each gives, so an algorithm adds only what is
its own. Parameter names are constants, so models, batch runs and ``qgis_process run`` keep
working across versions.
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

from .base import EngineAlgorithm, StoredStyle, layer_file, tr
from .settings import server_arguments

__all__ = ["DEFAULT_MODEL", "LANGUAGES", "QUANTIZATIONS", "RasterAlgorithm", "raster_problem"]

LANGUAGES = ("en", "ja", "zh")
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
    """Shared by the algorithms over a raster: input, tiling, model, server, GeoPackage output.

    A subclass adds its own parameters in `add_task_parameters` (and may replace
    `add_tiling_parameters` with its `tiling_arguments`), picking the shared groups it needs.
    """

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
    MODEL = "MODEL"
    ADAPTER = "ADAPTER"
    NO_ADAPTER = "NO_ADAPTER"
    MIN_CONFIDENCE = "MIN_CONFIDENCE"
    FOOTPRINTS = "FOOTPRINTS"
    XBD_LABELS = "XBD_LABELS"

    #: Default chip size; 0 means the model preset's.
    DEFAULT_CHIP_SIZE = 512
    #: The layer written, when the engine's ``done`` event does not name it.
    LAYER = "chips"
    #: Labels of INPUT and of the WRITTEN output (translated when shown).
    INPUT_LABEL = "Input raster"
    WRITTEN_LABEL = "Chips written"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, tr(self.INPUT_LABEL)))
        self.add_task_parameters()
        self.add_tiling_parameters()
        self.addParameter(QgsProcessingParameterBoolean(
            self.OVERWRITE, tr("Replace an existing output instead of resuming it"), False))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, tr("Output GeoPackage"), QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputString(self.RUN_ID, tr("Run id")))
        self.addOutput(QgsProcessingOutputString(
            self.STATUS, tr("Run status (complete or interrupted)")))
        self.addOutput(QgsProcessingOutputNumber(self.WRITTEN, tr(self.WRITTEN_LABEL)))

    def add_task_parameters(self) -> None:
        """Add the task's own parameters (after INPUT)."""

    def add_tiling_parameters(self) -> None:
        """Add how the raster is cut: chip size, overlap, resolution, bands, valid share."""
        size = QgsProcessingParameterNumber(
            self.CHIP_SIZE, tr("Chip size (pixels; 0 = the model preset's)")
            if self.DEFAULT_CHIP_SIZE == 0 else tr("Chip size (pixels)"),
            QgsProcessingParameterNumber.Integer, self.DEFAULT_CHIP_SIZE,
            minValue=0 if self.DEFAULT_CHIP_SIZE == 0 else 1)
        self.addParameter(size)
        self.addParameter(QgsProcessingParameterNumber(
            self.OVERLAP, tr("Overlap (pixels)"), QgsProcessingParameterNumber.Integer, 0,
            minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.GSD, tr("Ground sampling distance in metres (0 = default)"),
            QgsProcessingParameterNumber.Double, 0.0, minValue=0))
        self.add_pixel_parameters()

    def add_pixel_parameters(self) -> None:
        """Add BANDS and MIN_VALID: which bands are read, how much of a cut must be valid."""
        self.addParameter(QgsProcessingParameterString(
            self.BANDS, tr("Bands used as RGB, e.g. 3,2,1 (empty: 1,2,3)"), optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_VALID, tr("Minimum share of valid pixels"),
            QgsProcessingParameterNumber.Double, 0.5, minValue=0, maxValue=1))

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
        output = self.geopackage_output(parameters, self.OUTPUT, context)
        args = [*self.task_arguments(parameters, context), layer.source(), "-o", output,
                *self.tiling_arguments(parameters, context)]
        if self.parameterAsBool(parameters, self.OVERWRITE, context):
            args.append("--overwrite")
        done = self.run_step(args, feedback)
        StoredStyle.attach(context, output)
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
        """Engine options for the parameters of `add_tiling_parameters`."""
        args = ["--overlap", str(self.parameterAsInt(parameters, self.OVERLAP, context)),
                *self.pixel_arguments(parameters, context)]
        size = self.parameterAsInt(parameters, self.CHIP_SIZE, context)
        if size:
            args += ["--size", str(size)]
        gsd = self.parameterAsDouble(parameters, self.GSD, context)
        if gsd > 0:
            args += ["--gsd", repr(gsd)]
        return args

    def pixel_arguments(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        """Engine options for BANDS and MIN_VALID."""
        args = ["--min-valid", repr(self.parameterAsDouble(parameters, self.MIN_VALID, context))]
        bands = self.parameterAsString(parameters, self.BANDS, context).strip()
        return args + (["--bands", bands] if bands else [])

    def add_language_parameter(self, label: str) -> None:
        """Add LANGUAGE: en, ja or zh."""
        self.add_enum_parameter(self.LANGUAGE, label, LANGUAGES)

    def add_model_parameters(self) -> None:
        """Add MODEL, ADAPTER and NO_ADAPTER: the vision-language model and its LoRA."""
        self.addParameter(QgsProcessingParameterString(
            self.MODEL, tr("Model preset, Hugging Face id or local folder"), DEFAULT_MODEL))
        self.addParameter(QgsProcessingParameterString(
            self.ADAPTER, tr("LoRA adapter (empty: the preset's)"), optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.NO_ADAPTER, tr("Use the base model without the preset's adapter"), False))

    def model_arguments(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        """Engine options for MODEL, ADAPTER and NO_ADAPTER."""
        args = ["--model",
                self.parameterAsString(parameters, self.MODEL, context).strip() or DEFAULT_MODEL]
        adapter = self.parameterAsString(parameters, self.ADAPTER, context).strip()
        if adapter:
            args += ["--adapter", adapter]
        if self.parameterAsBool(parameters, self.NO_ADAPTER, context):
            args.append("--no-adapter")
        return args

    def add_min_confidence_parameter(self, default: float) -> None:
        """Add MIN_CONFIDENCE: the probability under which an answer is 'uncertain'."""
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_CONFIDENCE, tr("Minimum confidence (below: 'uncertain')"),
            QgsProcessingParameterNumber.Double, default, minValue=0, maxValue=1))

    def min_confidence_arguments(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        """Engine options for MIN_CONFIDENCE."""
        return ["--min-confidence",
                repr(self.parameterAsDouble(parameters, self.MIN_CONFIDENCE, context))]

    def add_footprint_parameters(self) -> None:
        """Add FOOTPRINTS and XBD_LABELS, optional both: where the objects come from."""
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.FOOTPRINTS, tr("Object footprints (polygons)"),
            [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.XBD_LABELS, tr("Or: the raster's xBD label file"),
            extension="json", optional=True))

    def footprint_sources(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[list[str]]:
        """The engine options of each object source given (FOOTPRINTS, XBD_LABELS): 0 to 2."""
        sources = []
        footprints = self.parameterAsVectorLayer(parameters, self.FOOTPRINTS, context)
        if footprints is not None:
            path, layer = layer_file(footprints)
            sources.append(["--footprints", path,
                            *(["--footprints-layer", layer] if layer else [])])
        labels = self.parameterAsFile(parameters, self.XBD_LABELS, context)
        if labels:
            sources.append(["--xbd-labels", labels])
        return sources

    def add_model_run_parameters(self, per_call: str = "Chips per model call",
                                 batch_size: int = 8) -> None:
        """Add BATCH_SIZE, QUANTIZE and DEVICE: how a model runs.

        Parameters
        ----------
        per_call, batch_size
            BATCH_SIZE's label (translated when shown) and default.
        """
        self.addParameter(QgsProcessingParameterNumber(
            self.BATCH_SIZE, tr(per_call), QgsProcessingParameterNumber.Integer, batch_size,
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
