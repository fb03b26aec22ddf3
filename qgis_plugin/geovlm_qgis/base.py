"""The base of every geovlm Processing algorithm: names, help, choices, running engine commands.

An algorithm builds one or more engine command lines; `EngineAlgorithm.run_step` runs each as
a step of the algorithm's progress bar, turns its JSON events (docs/events.md) into feedback,
cancels it by SIGTERM and raises its one-sentence errors as ``QgsProcessingException``.

Choices (LANGUAGE, MODE, QUANTIZE, SPLIT) are enum parameters with static strings: a value is
the option's name (``LANGUAGE=ja``), and its index (``LANGUAGE=1``), which models and scripts
written before kept, still works. QGIS 3.22 itself accepts only the name of such a parameter,
and reads each form wrong in one of its two getters (``parameterAsEnum`` gives 0 for ``"ja"``,
``parameterAsEnumString`` the default for ``1``), so `EngineAlgorithm.checkParameterValues`
accepts both and `EngineAlgorithm.enum_value` reads both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qgis.core import (
    QgsMapLayer,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterEnum,
)
from qgis.PyQt.QtCore import QCoreApplication

from .engine import EngineError, run_engine, shown_command
from .settings import engine_path

__all__ = ["EngineAlgorithm", "StoredStyle", "enum_choice", "layer_file", "tr"]


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


def enum_choice(options: Sequence[str], value: Any) -> str | None:
    """The option `value` names: an option itself, or its index as a number or digits.

    Parameters
    ----------
    options
        The enum's option names, e.g. ``("en", "ja", "zh")``.
    value
        A parameter value as Processing passes it: ``"ja"``, ``1`` or ``"1"`` (qgis_process
        passes every value as a string).

    Returns
    -------
    str or None
        The option's name, or None when `value` names none (a name wins over an index).
    """
    if isinstance(value, str) and value in options:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(options):
        return options[value]
    return None


def _wrong_choice(definition: QgsProcessingParameterEnum, value: Any) -> str:
    """The sentence refusing `value` for the enum `definition`, listing its options."""
    options = definition.options()
    return tr("{} must be one of {} (or its index, 0 to {}), not {!r}.").format(
        definition.name(), ", ".join(options), len(options) - 1, value)


class StoredStyle(QgsProcessingLayerPostProcessorInterface):
    """Gives a layer Processing loads into the project the style its GeoPackage stores.

    Processing loads an output without its default style (the ``layer_styles`` row the engine
    writes), so it would show in a single colour.
    """

    #: The post-processor of each output loaded last: Processing takes ownership of a Python
    #: object, so a reference is kept until the next run into the same output.
    _kept: dict[str, StoredStyle] = {}

    @classmethod
    def attach(cls, context: QgsProcessingContext, output: str) -> None:
        """Style `output` (a path given to ``parameterAsOutputLayer``) when it is loaded."""
        if context.willLoadLayerOnCompletion(output):
            processor = cls._kept[output] = cls()
            context.layerToLoadOnCompletionDetails(output).setPostProcessor(processor)

    def postProcessLayer(  # noqa: N802
        self, layer: QgsMapLayer, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> None:
        """Apply the stored style, or say why not."""
        message, loaded = layer.loadDefaultStyle()
        if not loaded:
            feedback.pushWarning(tr("No stored style for {}: {}").format(layer.name(), message))


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

    def add_enum_parameter(
        self, name: str, description: str, options: Sequence[str], default: str | None = None
    ) -> None:
        """Add a choice whose values are its option names (static strings).

        Parameters
        ----------
        name
            The parameter's constant name, e.g. ``LANGUAGE``.
        description
            Its translated label; the options are names the engine takes, never translated.
        options
            The option names, e.g. ``("en", "ja", "zh")``.
        default
            The option chosen when none is given; default: the first.
        """
        parameter = QgsProcessingParameterEnum(
            name, description, list(options), defaultValue=default or options[0])
        parameter.setUsesStaticStrings(True)
        self.addParameter(parameter)

    def _enum_definitions(self) -> list[QgsProcessingParameterEnum]:
        return [definition for definition in self.parameterDefinitions()
                if isinstance(definition, QgsProcessingParameterEnum)
                and definition.usesStaticStrings() and not definition.allowMultiple()]

    def checkParameterValues(  # noqa: N802
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> tuple[bool, str]:
        """Check `parameters` as QGIS does, with an index accepted for a choice's name.

        Returns
        -------
        tuple of bool and str
            Whether the values are acceptable, and the sentence saying why not.
        """
        named = dict(parameters)
        for definition in self._enum_definitions():
            value = named.get(definition.name())
            if isinstance(value, (str, int)):
                choice = enum_choice(definition.options(), value)
                if choice is None:
                    return False, _wrong_choice(definition, value)
                named[definition.name()] = choice
        return super().checkParameterValues(named, context)

    def enum_value(
        self, parameters: dict[str, Any], name: str, context: QgsProcessingContext
    ) -> str:
        """The option name a choice parameter was given, by name or by index.

        Parameters
        ----------
        parameters, context
            As `processAlgorithm` gets them.
        name
            A parameter added by `add_enum_parameter`.

        Raises
        ------
        QgsProcessingException
            The value names no option (a model step, which Processing does not check).
        """
        definition = self.parameterDefinition(name)
        # parameterAsString evaluates a model's expression, gives the default when the value
        # is missing, and turns an index into its digits.
        value = self.parameterAsString(parameters, name, context)
        choice = enum_choice(definition.options(), value)
        if choice is None:
            raise QgsProcessingException(_wrong_choice(definition, value))
        return choice

    def geopackage_output(
        self, parameters: dict[str, Any], name: str, context: QgsProcessingContext
    ) -> str:
        """The path of an output layer parameter, refused unless a GeoPackage (the engine's)."""
        output = self.parameterAsOutputLayer(parameters, name, context)
        if not output.lower().endswith(".gpkg"):
            raise QgsProcessingException(
                tr("The output must be a GeoPackage (.gpkg), not {}.").format(output))
        return output

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
