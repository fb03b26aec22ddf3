"""The JSON-lines event protocol of ``--progress json``: what the QGIS plugin reads.

Every line on stdout is one JSON object with ``"protocol": PROTOCOL`` and an ``"event"``:
``start``, ``progress``, ``warning``, ``error`` or ``done`` (docs/events.md has the fields).
A run ends with exactly one ``done`` (status ``complete`` or ``interrupted``) or one ``error``.
The version changes only when a field is removed or changes meaning; new fields may appear.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from geovlm.enums import CheckedEnum

__all__ = [
    "PROTOCOL",
    "EventKind",
    "EventWriter",
    "RunStatus",
    "error_kind",
    "stdout_events",
    "warnings_as_events",
]

#: Version of the event schema, in every line.
PROTOCOL = 1


class EventKind(CheckedEnum):
    """The ``event`` of a line."""

    START = "start"
    PROGRESS = "progress"
    WARNING = "warning"
    ERROR = "error"
    DONE = "done"


class RunStatus(CheckedEnum):
    """The ``status`` of a ``done`` event: the run finished, or a signal stopped it (resumable)."""

    COMPLETE = "complete"
    INTERRUPTED = "interrupted"


class EventWriter:
    """Writes events as JSON lines and remembers whether the run's last event was written.

    Parameters
    ----------
    stream
        Where lines go; None means whatever `sys.stdout` is when a line is written.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self.ended = False

    def emit(self, event: EventKind, **fields: Any) -> None:
        """Write one event line and flush it, so a reader sees it at once."""
        stream = self._stream or sys.stdout
        stream.write(json.dumps({"protocol": PROTOCOL, "event": event.value, **fields}) + "\n")
        stream.flush()
        if event in (EventKind.DONE, EventKind.ERROR):
            self.ended = True


_STDOUT = EventWriter()


def stdout_events() -> EventWriter:
    """The writer of this process's stdout events, shared by the CLI and `ProgressReporter`."""
    return _STDOUT


def error_kind(exc: BaseException) -> str:
    """The machine-readable ``kind`` of an ``error`` event: the exception class in snake case.

    Examples
    --------
    >>> from geovlm.errors import ModelNotFoundError, InputError
    >>> error_kind(ModelNotFoundError("x")), error_kind(InputError("x"))
    ('model_not_found', 'input')
    """
    name = type(exc).__name__.removesuffix("Error") or type(exc).__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class _WarningEvents(logging.Handler):
    """Turns log records of level WARNING and above into ``warning`` events."""

    def __init__(self, writer: EventWriter) -> None:
        super().__init__(logging.WARNING)
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        self.writer.emit(EventKind.WARNING, message=record.getMessage(), source=record.name)


@contextmanager
def warnings_as_events(writer: EventWriter) -> Iterator[None]:
    """Within the block, every logged warning is also written as a ``warning`` event.

    Parameters
    ----------
    writer
        Where the events go.

    Yields
    ------
    None
        Inside the block, warnings become events.
    """
    handler = _WarningEvents(writer)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
