"""A QgsTask that runs a function in the background and reports lines and its end to the GUI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .engine import EngineError

__all__ = ["BackgroundTask"]

#: The work: called with (report, cancelled); `report` sends a message (str or event dict) to
#: the GUI thread, `cancelled` tells when to stop.
Work = Callable[[Callable[[Any], None], Callable[[], bool]], Any]


class BackgroundTask(QgsTask):
    """Runs `work` off the GUI thread; messages and the end arrive as queued signals.

    QGIS's task manager deletes a finished task, so the result travels in `ended`; read it
    there, not from the task afterwards.

    Parameters
    ----------
    description
        What the task manager shows.
    work
        The function to run.
    """

    message = pyqtSignal(object)
    #: (result, error message or None, error kind or None)
    ended = pyqtSignal(object, object, object)

    def __init__(self, description: str, work: Work) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self._work = work
        self._result: Any = None
        self._error: EngineError | None = None

    def run(self) -> bool:
        try:
            self._result = self._work(self._report, self.isCanceled)
        except EngineError as exc:
            self._error = exc
            return False
        except Exception as exc:  # a bug: shown in the panel rather than lost in the task
            self._error = EngineError(f"{type(exc).__name__}: {exc}", "crash")
            return False
        return True

    def _report(self, message: Any) -> None:
        if isinstance(message, dict) and message.get("event") == "progress" and message.get(
                "total"):
            self.setProgress(100.0 * message["done"] / message["total"])
        self.message.emit(message)

    def finished(self, result: bool) -> None:
        if self._error is not None:
            self.ended.emit(None, self._error.message, self._error.kind)
        else:
            self.ended.emit(self._result, None, None)
