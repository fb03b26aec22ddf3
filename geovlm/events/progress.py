"""Progress reporting for long runs: a rich bar for people, JSON lines for the QGIS plugin.

The JSON lines follow the versioned protocol of `geovlm.events.protocol` (docs/events.md).
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from geovlm.enums import CheckedEnum
from geovlm.events.protocol import EventKind, EventWriter, RunStatus, stdout_events
from geovlm.events.signals import Interrupted

__all__ = ["ProgressMode", "ProgressReporter"]


class ProgressMode(CheckedEnum):
    """How progress is shown: ``bar`` on a terminal, ``json`` lines on stdout, or ``none``."""

    AUTO = "auto"
    BAR = "bar"
    JSON = "json"
    NONE = "none"

    def resolved(self) -> ProgressMode:
        """AUTO becomes BAR on an interactive terminal and NONE otherwise."""
        if self is ProgressMode.AUTO:
            return ProgressMode.BAR if sys.stderr.isatty() else ProgressMode.NONE
        return self


class ProgressReporter:
    """Counts finished items and reports rate and ETA; use as a context manager.

    Parameters
    ----------
    mode
        Where and how to report.
    total
        Number of items the run will process.
    description
        What is being counted, e.g. ``"chips"``.
    stream
        Where JSON lines go (stdout by default).
    **context
        What the ``start`` and ``done`` events also carry, e.g. ``output``, ``run_id`` and
        ``layers``.
    """

    def __init__(
        self,
        mode: ProgressMode,
        total: int,
        description: str,
        stream: IO[str] | None = None,
        **context: Any,
    ) -> None:
        self.mode = mode.resolved()
        self.total = total
        self.description = description
        self.done = 0
        self._resumed = 0
        self._context = context
        self._events = stdout_events() if stream is None else EventWriter(stream)
        self._events.ended = False
        self._start = time.perf_counter()
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressReporter:
        self._start = time.perf_counter()
        if self.mode is ProgressMode.BAR:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(
                self.description, total=self.total, rate="", note=""
            )
        self._emit(EventKind.START, total=self.total, **self._context)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        if isinstance(exc, Interrupted | KeyboardInterrupt):
            # The output's run is marked interrupted next, before the process exits.
            self._emit(EventKind.DONE, status=RunStatus.INTERRUPTED.value, **self._context,
                       total=self.total, done=self.done)

    @property
    def rate(self) -> float:
        """Items processed per second since the start (items done in an earlier run excluded)."""
        elapsed = time.perf_counter() - self._start
        return (self.done - self._resumed) / elapsed if elapsed > 0 else 0.0

    def resume(self, n: int) -> None:
        """Count `n` items finished by an earlier run, without counting them in the rate."""
        self._resumed += n
        self.advance(n)

    def advance(self, n: int = 1, **extra: float) -> None:
        """Count `n` more finished items, with figures to show beside them (e.g. ``loss``).

        A figure whose plural is a count in the context shows as a part of it: ``scene=3``
        with ``scenes=20`` reads ``scene 3/20``.
        """
        self.done += n
        if self._bar is not None and self._task is not None:
            note = " ".join(self._figure(key, value) for key, value in extra.items())
            self._bar.update(
                self._task, advance=n, rate=f"{self.rate:.1f} {self.description}/s", note=note
            )
        remaining = self.total - self.done
        eta = remaining / self.rate if self.rate > 0 else None
        self._emit(
            EventKind.PROGRESS,
            done=self.done,
            total=self.total,
            rate=round(self.rate, 3),
            eta_s=None if eta is None else round(eta, 1),
            **extra,
        )

    def _figure(self, key: str, value: float) -> str:
        total = self._context.get(f"{key}s")
        return f"{key} {value:.4g}" if total is None else f"{key} {value:.4g}/{total}"

    def finish(self, **summary: Any) -> None:
        """Report the end of the run (status ``complete``) with a summary of what it did."""
        summary.setdefault("seconds", round(time.perf_counter() - self._start, 3))
        self._emit(EventKind.DONE, status=RunStatus.COMPLETE.value,
                   **{**self._context, **summary})

    def _emit(self, event: EventKind, **fields: Any) -> None:
        if self.mode is ProgressMode.JSON:
            self._events.emit(event, **fields)
