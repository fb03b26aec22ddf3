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
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterString,
)

from .base import tr
from .raster_algorithm import RasterAlgorithm

__all__ = ["ClassifyAlgorithm", "ReferAlgorithm", "TileAlgorithm"]

MODES = ("score", "generate")


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

    MODE = "MODE"
    NATIVE_GSD = "NATIVE_GSD"

    def add_task_parameters(self) -> None:
        self.add_model_parameters()
        self.add_language_parameter(tr("Language of question and answers"))
        self.add_enum_parameter(
            self.MODE, tr("Mode (score: a probability for every label; generate: free text,"
                          " parsed)"), MODES)
        self.add_min_confidence_parameter(0.0)
        self.add_model_run_parameters()
        self.addParameter(QgsProcessingParameterBoolean(
            self.NATIVE_GSD, tr("Keep the raster's resolution (not the preset's)"), False))
        self.add_server_parameters(tr("geovlm serve URL, e.g. http://gpu-host:8000/v1 (empty:"
                                      " the plugin setting, else the model runs here)"))

    def task_arguments(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        args = ["classify", *self.model_arguments(parameters, context),
                "--mode", self.enum_value(parameters, self.MODE, context),
                *self.min_confidence_arguments(parameters, context),
                *self.model_run_arguments(parameters, context)]
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

    DETECT = "DETECT"
    REWRITE_MODEL = "REWRITE_MODEL"
    CAPTION_MODEL = "CAPTION_MODEL"
    CONTEXT = "CONTEXT"
    #: The engine's --context values, the CONTEXT choices.
    CONTEXTS = ("chip", "scene")

    def add_task_parameters(self) -> None:
        self.add_footprint_parameters()
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
        detect = self.parameterAsBool(parameters, self.DETECT, context)
        sources = self.footprint_sources(parameters, context) + ([["--detect"]] if detect else [])
        if len(sources) != 1:
            raise QgsProcessingException(tr(
                "Give exactly one source of objects: a footprint layer, an xBD label file or"
                " detection."))
        scene = self.enum_value(parameters, self.CONTEXT, context)
        if detect and scene == "scene":
            raise QgsProcessingException(tr(
                "Objects unique among all of the raster's need a footprint layer or an xBD label"
                " file; with detection use the chip context."))
        args = ["refer", *self.model_run_arguments(parameters, context), "--context", scene,
                *sources[0]]
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
