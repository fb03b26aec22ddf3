"""``geovlm:report``: a damage layer rolled up for responders, as a page and a layer of areas.

It runs ``geovlm report`` on the GeoPackage behind a ``buildings`` layer: OUTPUT is the
GeoPackage of layer ``damage_by_area`` (loaded styled: coloured by worst grade, labelled with
the counts), REPORT the one-page HTML with its map and CSV tables beside it.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
)

from .base import EngineAlgorithm, StoredStyle, layer_file, tr

__all__ = ["ReportAlgorithm", "layer_of"]


def layer_of(layer: Any, name: str, made_by: str) -> str:
    """The GeoPackage behind `layer`, which must be its layer `name`.

    Raises
    ------
    QgsProcessingException
        The layer is not layer `name` of a GeoPackage.
    """
    path, found = layer_file(layer)
    if not path.lower().endswith(".gpkg") or found not in ("", name):
        raise QgsProcessingException(tr(
            "Layer {} is not the '{}' layer of a {} GeoPackage; choose that layer.").format(
                layer.name(), name, made_by))
    return path


class ReportAlgorithm(EngineAlgorithm):
    """``geovlm:report``: buildings per damage grade per grid cell or admin area."""

    ALGORITHM_ID = "report"
    DISPLAY_NAME = "Report building damage per area"
    HELP = ("Counts the buildings of a geovlm:damage 'buildings' layer per damage grade, per"
            " square grid cell (CELL metres; 0: a round size, at most 8 cells across) or per"
            " polygon of an admin layer (AREAS, any CRS, named by AREAS_NAME), 'uncertain'"
            " apart. Writes a one-page HTML report (REPORT: a 'verify before acting' box, the"
            " totals, a map of the grades, the table per area, the disaster types of a"
            " classify layer, the run's model and calibration) with its CSV tables beside it,"
            " and the areas with their counts as layer damage_by_area (OUTPUT), styled by"
            " worst grade.")

    INPUT = "INPUT"
    CELL = "CELL"
    AREAS = "AREAS"
    AREAS_NAME = "AREAS_NAME"
    CLASSIFY = "CLASSIFY"
    OVERWRITE = "OVERWRITE"
    REPORT = "REPORT"
    OUTPUT = "OUTPUT"
    BUILDINGS = "BUILDINGS"
    UNCERTAIN = "UNCERTAIN"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.INPUT, tr("Buildings layer (geovlm:damage)"),
            [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterNumber(
            self.CELL, tr("Grid cell size in metres (0 = automatic)"),
            QgsProcessingParameterNumber.Double, 0.0, minValue=0))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.AREAS, tr("Or: admin areas to count in"), [QgsProcessing.TypeVectorPolygon],
            optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.AREAS_NAME, tr("Field naming each area"), parentLayerParameterName=self.AREAS,
            optional=True))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.CLASSIFY, tr("Classified layer for disaster-type shares (geovlm:classify)"),
            [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.OVERWRITE, tr("Replace the files of an earlier report"), False))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.REPORT, tr("Report page"), tr("HTML files (*.html)")))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, tr("Areas with counts (GeoPackage)"), QgsProcessing.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber(self.BUILDINGS, tr("Buildings counted")))
        self.addOutput(QgsProcessingOutputNumber(self.UNCERTAIN, tr("Uncertain buildings")))

    def processAlgorithm(  # noqa: N802
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        damage = layer_of(self.parameterAsVectorLayer(parameters, self.INPUT, context),
                          "buildings", "geovlm:damage")
        report = self.parameterAsFileOutput(parameters, self.REPORT, context)
        output = self.geopackage_output(parameters, self.OUTPUT, context)
        args = ["report", damage, "-o", report, "--gpkg", output]
        areas = self.parameterAsVectorLayer(parameters, self.AREAS, context)
        cell = self.parameterAsDouble(parameters, self.CELL, context)
        if areas is not None:
            path, name = layer_file(areas)
            args += ["--areas", path, *(["--areas-layer", name] if name else [])]
            fields = self.parameterAsFields(parameters, self.AREAS_NAME, context)
            if fields:
                args += ["--areas-name", fields[0]]
        elif cell > 0:
            args += ["--cell", repr(cell)]
        classified = self.parameterAsVectorLayer(parameters, self.CLASSIFY, context)
        if classified is not None:
            args += ["--classify", layer_of(classified, "chips", "geovlm:classify")]
        if self.parameterAsBool(parameters, self.OVERWRITE, context):
            args.append("--overwrite")
        done = self.run_step(args, feedback)
        StoredStyle.attach(context, output)
        return {self.OUTPUT: f"{output}|layername=damage_by_area", self.REPORT: report,
                self.BUILDINGS: done.get("buildings", 0),
                self.UNCERTAIN: done.get("uncertain", 0)}

    def done_message(self, event: dict[str, Any]) -> str:
        message = tr("{} buildings in {} areas ({} uncertain): {}").format(
            event.get("buildings"), event.get("areas"), event.get("uncertain"),
            event.get("output"))
        if event.get("outside"):
            message += " " + tr("{} of them lie outside every area.").format(event["outside"])
        return message
