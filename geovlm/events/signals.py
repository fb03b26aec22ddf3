"""Cancel a run cleanly on SIGTERM (how the QGIS plugin cancels) and SIGINT (Ctrl-C).

The first signal raises `Interrupted` in the main thread, wherever it is (a model forward ends
first). The exception unwinds the pipeline like any error: the threads are joined, the write in
flight finishes, the run is marked ``interrupted`` and the output's lock is released, so the
same command resumes. Further signals are ignored while that cleanup runs, so a second Ctrl-C
cannot cut it short.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

__all__ = ["Interrupted", "stop_on_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A stop requested by a signal; like `KeyboardInterrupt`, no ``except Exception`` eats it.

    Parameters
    ----------
    signum
        The signal received.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's status for death by this signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


def _interrupt(signum: int, frame: FrameType | None) -> None:
    for each in _SIGNALS:
        signal.signal(each, signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Raise `Interrupted` on the first SIGINT or SIGTERM within the block.

    Call from the main thread only (Python runs signal handlers there); the previous handlers
    are restored afterwards. A signal the parent set to be ignored (``nohup``, a shell's
    background job) stays ignored.

    Yields
    ------
    None
        Inside the block, the signals stop the work.

    Examples
    --------
    >>> import os
    >>> try:
    ...     with stop_on_signals():
    ...         os.kill(os.getpid(), signal.SIGTERM)
    ... except Interrupted as stop:
    ...     stop.exit_code
    143
    """
    previous = {
        each: signal.signal(each, _interrupt)
        for each in _SIGNALS
        if signal.getsignal(each) is not signal.SIG_IGN
    }
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)
