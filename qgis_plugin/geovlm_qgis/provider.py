"""The Processing provider ``geovlm``."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider

from .algorithms import ClassifyAlgorithm, ReferAlgorithm, TileAlgorithm
from .damage_algorithm import DamageAlgorithm
from .report_algorithm import ReportAlgorithm
from .training_algorithms import EvaluateAlgorithm, TrainAlgorithm

__all__ = ["GeovlmProvider"]


class GeovlmProvider(QgsProcessingProvider):
    """Provider ``geovlm``: tile, classify, refer, damage, train, evaluate, report."""

    def id(self) -> str:
        return "geovlm"

    def name(self) -> str:
        return "geovlm"

    def longName(self) -> str:  # noqa: N802
        return self.tr("geovlm: vision-language models over rasters")

    def loadAlgorithms(self) -> None:  # noqa: N802
        for algorithm in (TileAlgorithm(), ClassifyAlgorithm(), ReferAlgorithm(), DamageAlgorithm(),
                          TrainAlgorithm(), EvaluateAlgorithm(), ReportAlgorithm()):
            self.addAlgorithm(algorithm)

    def supportedOutputVectorLayerExtensions(self) -> list[str]:  # noqa: N802
        return ["gpkg"]

    def defaultVectorFileExtension(self, hasGeometry: bool = True) -> str:  # noqa: N802,N803
        return "gpkg"
