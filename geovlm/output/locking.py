"""One writer per output: an OS lock on a sidecar file, released by the OS when its owner dies.

Two processes writing one GeoPackage at once corrupt each other's runs, so a writer takes an
exclusive lock on ``OUT.gpkg.lock`` before it touches the output. The lock is the operating
system's (``flock`` on Linux and macOS; ``msvcrt.locking`` on Windows, untested there), not the
file's existence: a writer killed with ``kill -9`` leaves the file behind but not the lock, and
the next run simply takes it again. The owner's pid is written into the file for the refusal
message.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from geovlm.errors import OutputError

__all__ = ["OutputLock"]

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


class OutputLock:
    """An exclusive, non-blocking lock on ``<output>.lock``; use as a context manager.

    Parameters
    ----------
    output
        The file to protect; the lock file lies beside it.

    Raises
    ------
    OutputError
        Another live process holds the lock, or the lock file cannot be created.

    Examples
    --------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "out.gpkg"
    >>> with OutputLock(out) as lock:
    ...     lock.path.name
    'out.gpkg.lock'
    >>> (out.parent / "out.gpkg.lock").exists()
    False
    """

    def __init__(self, output: str | Path) -> None:
        self.output = Path(output)
        # Beside the real file, so a symlinked or differently spelt path meets the same lock.
        self.path = Path(f"{self.output.resolve()}.lock")
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or refuse at once; a lock file whose owner died is simply re-locked.

        Raises
        ------
        OutputError
            Another process holds the lock, or the lock file cannot be created.
        """
        while self._fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputError(
                    f"Cannot create the lock file {self.path} ({exc.strerror});"
                    " choose another output path."
                ) from exc
            if not _try_lock(fd):
                owner = _read_pid(fd)
                os.close(fd)
                raise OutputError(
                    f"{self.output} is being written by another geovlm process (pid {owner});"
                    " wait for it or choose another output."
                )
            if _same_file(fd, self.path):
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self._fd = fd
            else:
                # The previous owner removed the file between our open and lock: lock the new one.
                os.close(fd)

    def release(self) -> None:
        """Remove the lock file and drop the lock (removal first, so no one locks a ghost)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(PermissionError):  # Windows keeps an open file: harmless
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _read_pid(fd: int) -> str:
    """The pid the lock's owner wrote, or ``?`` while it has not written it yet."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode(errors="replace").strip()
    except OSError:  # Windows refuses to read a locked byte range
        return "?"
    return text if text.isdigit() else "?"


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (not removed or replaced meanwhile)."""
    try:
        return os.path.samestat(os.fstat(fd), path.stat())
    except FileNotFoundError:
        return False
