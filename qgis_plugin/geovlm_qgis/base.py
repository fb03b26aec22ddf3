"""The base of every geovlm Processing algorithm: names, help, running engine commands.

An algorithm builds one or more engine command lines; `EngineAlgorithm.run_step` runs each as
a step of the algorithm's progress bar, turns its JSON events (docs/events.md) into feedback,
cancels it by SIGTERM and raises its one-sentence errors as ``QgsProcessingException``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingFeedback
from qgis.PyQt.QtCore import QCoreApplication

from .engine import EngineError, run_engine, shown_command
from .settings import engine_path

__all__ = ["EngineAlgorithm", "layer_file", "tr"]


def tr(text: str) -> str:
    """Translate a user-visible string in the plugin's context."""
    return QCoreApplication.translate("geovlm", text)


def layer_file(layer: Any) -> tuple[str, str]:
    """The file and layer name behind a vector layer, for an engine option.

    Parameters
    ----------
    layer
        A ``QgsVectorLayer``.

    Raises
    ------
    QgsProcessingException
        The layer is not a file GDAL reads (a memory or database layer).
    """
    from qgis.core import QgsProviderRegistry

    if layer is None or not layer.isValid():
        raise QgsProcessingException(tr("Choose a valid vector layer."))
    parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
    if layer.providerType() != "ogr" or not parts.get("path"):
        raise QgsProcessingException(
            tr("Layer {} is not a file GDAL reads (provider {}); save it to a GeoPackage"
               " first.").format(layer.name(), layer.providerType()))
    return str(parts["path"]), str(parts.get("layerName") or "")


class EngineAlgorithm(QgsProcessingAlgorithm):
    """Shared by every geovlm algorithm: fixed id, translated name and help, engine steps."""

    #: Fixed lowercase id, display name and help; set by subclasses.
    ALGORITHM_ID = ""
    DISPLAY_NAME = ""
    HELP = ""

    def name(self) -> str:
        return self.ALGORITHM_ID

    def displayName(self) -> str:  # noqa: N802
        return tr(self.DISPLAY_NAME)

    def shortHelpString(self) -> str:  # noqa: N802
        return tr(self.HELP)

    def createInstance(self) -> EngineAlgorithm:  # noqa: N802
        return type(self)()

    def run_step(
        self,
        args: Sequence[str],
        feedback: QgsProcessingFeedback,
        span: tuple[float, float] = (0.0, 100.0),
    ) -> dict[str, Any]:
        """Run one engine command to its ``done`` event, its progress within `span` percent.

        Parameters
        ----------
        args
            The command line after the executable (``--progress json`` is added).
        feedback
            Progress, messages and the cancel button.
        span
            The part of the progress bar this step fills, in percent.

        Raises
        ------
        QgsProcessingException
            The engine's error sentence, or no engine found.
        """
        try:
            engine = engine_path()
            feedback.pushCommandInfo(shown_command(engine, args))
            return run_engine(engine, args, lambda event: self.report(event, feedback, span),
                              feedback.isCanceled)
        except EngineError as exc:
            raise QgsProcessingException(exc.message) from exc

    def report(
        self, event: dict[str, Any], feedback: QgsProcessingFeedback, span: tuple[float, float]
    ) -> None:
        """Turn one engine event into feedback."""
        kind = event.get("event")
        if kind == "start":
            feedback.pushInfo(self.start_message(event))
        elif kind == "progress" and event.get("total"):
            low, high = span
            feedback.setProgress(low + (high - low) * event["done"] / event["total"])
        elif kind == "warning":
            feedback.pushWarning(str(event.get("message")))
        elif kind == "done" and event.get("status") == "complete":
            feedback.pushInfo(self.done_message(event))
        elif kind == "log":
            feedback.pushConsoleInfo(str(event.get("message")))

    def start_message(self, event: dict[str, Any]) -> str:
        """What the ``start`` event says."""
        if event.get("output"):
            return tr("{} chips into {} (run {})").format(
                event.get("total"), event.get("output"), event.get("run_id"))
        return tr("{} to do").format(event.get("total"))

    def done_message(self, event: dict[str, Any]) -> str:
        """What a ``complete`` ``done`` event says."""
        return tr("Done in {} s.").format(event.get("seconds"))
