"""``geovlm:damage``: the damage grade of every building of a post-disaster raster.

It runs ``geovlm damage`` on the raster (INPUT) with the buildings of a footprint layer or an
xBD label file, and with PRE the same ground before the disaster (its own CRS and resolution).
OUTPUT is the GeoPackage of layer ``buildings``, loaded styled by grade; ``geovlm:report``
rolls it up per area and ``geovlm:refer`` takes it as footprints.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from .base import tr
from .raster_algorithm import RasterAlgorithm, raster_problem

__all__ = ["DamageAlgorithm"]

#: Context around each footprint, metres per side, as ``geovlm damage --margin``.
DEFAULT_MARGIN_M = 10.0


class DamageAlgorithm(RasterAlgorithm):
    """``geovlm:damage``: no-damage, minor, major or destroyed per building, by a VLM."""

    ALGORITHM_ID = "damage"
    DISPLAY_NAME = "Grade building damage with a vision-language model"
    HELP = ("Grades every building of the post-disaster raster (no-damage, minor-damage,"
            " major-damage, destroyed; 'uncertain' below the minimum confidence) with a"
            " vision-language model, from a square crop around its outline with MARGIN metres"
            " of context, and with a pre-disaster raster (PRE, any CRS and resolution) the"
            " same ground before. The buildings come from a footprint layer (any CRS) or the"
            " raster's xBD label file. Writes grade, confidence, runner-up and probabilities to"
            " layer 'buildings' of a GeoPackage, styled green to red; geovlm:report rolls it"
            " up per area. Runs the geovlm engine in its own environment.")
    LAYER = "buildings"
    INPUT_LABEL = "Post-disaster raster"
    WRITTEN_LABEL = "Buildings graded"

    PRE = "PRE"
    MARGIN = "MARGIN"

    def add_task_parameters(self) -> None:
        """PRE, the buildings, the model and where it runs."""
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.PRE, tr("Pre-disaster raster (optional)"), optional=True))
        self.add_footprint_parameters()
        self.add_model_parameters()
        self.add_language_parameter(tr("Language of question and answers"))
        self.add_min_confidence_parameter(0.5)
        self.add_model_run_parameters("Buildings per model call", 16)
        self.add_server_parameters(tr("geovlm serve URL, e.g. http://gpu-host:8000/v1 (empty:"
                                      " the plugin setting, else the model runs here)"))

    def add_tiling_parameters(self) -> None:
        """MARGIN, BANDS and MIN_VALID: a crop per building, no chip grid."""
        self.addParameter(QgsProcessingParameterNumber(
            self.MARGIN, tr("Context around each footprint (metres per side)"),
            QgsProcessingParameterNumber.Double, DEFAULT_MARGIN_M, minValue=0))
        self.add_pixel_parameters()

    def tiling_arguments(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        """Engine options for MARGIN, BANDS and MIN_VALID."""
        return ["--margin", repr(self.parameterAsDouble(parameters, self.MARGIN, context)),
                *self.pixel_arguments(parameters, context)]

    def task_arguments(
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> list[str]:
        """``damage`` with the buildings, the pre raster, the model and the server."""
        sources = self.footprint_sources(parameters, context)
        if len(sources) != 1:
            raise QgsProcessingException(tr(
                "Give exactly one source of buildings: a footprint layer or an xBD label file."))
        args = ["damage", *sources[0], *self.model_arguments(parameters, context),
                *self.min_confidence_arguments(parameters, context),
                *self.model_run_arguments(parameters, context)]
        pre = self.parameterAsRasterLayer(parameters, self.PRE, context)
        if pre is not None:
            problem = raster_problem(pre)
            if problem:
                raise QgsProcessingException(problem)
            args += ["--pre", pre.source()]
        return args + self.server_run_arguments(parameters, context)

    def start_message(self, event: dict[str, Any]) -> str:
        """How many buildings, into which GeoPackage."""
        return tr("{} buildings into {} (run {})").format(
            event.get("total"), event.get("output"), event.get("run_id"))

    def done_message(self, event: dict[str, Any]) -> str:
        """The counts of the ``done`` event: graded, resumed, left out, graded without pre."""
        footprints = event.get("footprints") or {}
        message = tr("Graded {} buildings ({} already done, {} under the minimum valid share, {}"
                     " outside the raster) in {} s.").format(
            event.get("written"), event.get("already_done"), event.get("skipped_invalid"),
            footprints.get("outside", 0), event.get("seconds"))
        if event.get("post_only"):
            message += " " + tr("{} of them from the post raster alone (no valid pre"
                                " crop).").format(event["post_only"])
        grades = event.get("grades") or {}
        if grades:
            message += " " + tr("In the layer: {}.").format(
                ", ".join(f"{count} {grade}" for grade, count in grades.items()))
        return message
