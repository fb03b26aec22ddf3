"""Run the geovlm engine as a subprocess and follow its JSON events (docs/events.md, protocol 1).

Standard library only: no Qt, no QGIS, so the same code serves Processing, the dock panel's
QgsTask and the set-up action, and QGIS's Python never imports torch. Cancel sends SIGTERM; the
engine writes what it processed, marks its run ``interrupted`` and ends with a ``done`` event.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = [
    "ENGINE_ENV",
    "PROTOCOL",
    "EngineError",
    "EngineRun",
    "engine_environment",
    "engine_json",
    "find_engine",
    "run_engine",
    "shown_command",
    "split_secrets",
]

#: The event protocol version this plugin reads.
PROTOCOL = 1
#: Environment variable naming the engine executable; wins over the plugin setting.
ENGINE_ENV = "GEOVLM_ENGINE"
#: Variables of QGIS's own Python that must not leak into the engine's.
_PYTHON_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE")


class EngineError(Exception):
    """The engine refused or failed: its one-sentence message and a machine-readable kind.

    Parameters
    ----------
    message
        The sentence to show (the engine's ``Error:`` line without the prefix).
    kind
        The ``kind`` of the engine's error event (``input``, ``model_not_found``, ...),
        ``engine_missing`` when no engine is found, ``crash`` for an unexpected exit.
    """

    def __init__(self, message: str, kind: str = "crash") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


def find_engine(configured: str | None = None) -> str:
    """The ``geovlm`` executable to run: $GEOVLM_ENGINE, else `configured`, else PATH's.

    Parameters
    ----------
    configured
        The path from the plugin settings, or empty.

    Returns
    -------
    str
        An existing executable.

    Raises
    ------
    EngineError
        No engine found (kind ``engine_missing``).
    """
    for candidate, origin in ((os.environ.get(ENGINE_ENV), ENGINE_ENV),
                              (configured, "the plugin settings")):
        if candidate:
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
            raise EngineError(
                f"The geovlm engine {candidate} (from {origin}) is not an executable file; fix"
                " the path in Plugins > geovlm > Check / set up engine.", "engine_missing")
    found = shutil.which("geovlm")
    if found:
        return found
    raise EngineError(
        "No geovlm engine found on PATH; use Plugins > geovlm > Check / set up engine to"
        " install one or to choose its geovlm executable.", "engine_missing")


#: Options whose value is a secret, and the engine's environment variable that carries it
#: instead: a process's command line is readable by every user of the machine (``ps``), its
#: environment by its owner only. The engine's ``--api-key`` falls back to this variable.
SECRET_OPTIONS = {"--api-key": "GEOVLM_API_KEY"}


def split_secrets(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """`args` without their secret options, and those options' values as environment variables.

    Examples
    --------
    >>> split_secrets(["classify", "--api-key", "k1", "-o", "x.gpkg"])
    (['classify', '-o', 'x.gpkg'], {'GEOVLM_API_KEY': 'k1'})
    """
    public: list[str] = []
    secrets: dict[str, str] = {}
    variable: str | None = None
    for arg in args:
        option, equals, value = arg.partition("=")
        if variable is not None:
            secrets[variable], variable = arg, None
        elif arg in SECRET_OPTIONS:
            variable = SECRET_OPTIONS[arg]
        elif equals and option in SECRET_OPTIONS:
            secrets[SECRET_OPTIONS[option]] = value
        else:
            public.append(arg)
    return public, secrets


def shown_command(engine: str, args: Sequence[str]) -> str:
    """The command line as run, for logs: each secret as ``VARIABLE=***`` before it.

    Examples
    --------
    >>> shown_command("geovlm", ["classify", "--api-key", "k1"])
    'GEOVLM_API_KEY=*** geovlm classify'
    """
    public, secrets = split_secrets(args)
    return " ".join([*(f"{variable}=***" for variable in secrets), engine, *public])


def engine_environment() -> dict[str, str]:
    """The environment for the engine: this one without QGIS's Python variables."""
    return {k: v for k, v in os.environ.items() if k not in _PYTHON_VARIABLES}


def engine_json(engine: str, *args: str, timeout: float = 120.0) -> Any:
    """Run a quick engine command that prints JSON (``version --json``, ``models --json``).

    Raises
    ------
    EngineError
        The command failed or printed no JSON.
    """
    public, secrets = split_secrets(args)
    try:
        done = subprocess.run([engine, *public], capture_output=True, text=True,
                              timeout=timeout, env={**engine_environment(), **secrets},
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"Running {engine} {' '.join(args)} failed: {exc}.") from exc
    if done.returncode != 0:
        raise EngineError(_error_line(done.stderr.splitlines())
                          or f"{engine} {' '.join(args)} exited with status {done.returncode}.")
    try:
        return json.loads(done.stdout)
    except ValueError as exc:
        raise EngineError(f"{engine} {' '.join(args)} printed no JSON; is it a geovlm"
                          " engine?") from exc


def _error_line(lines: Sequence[str]) -> str:
    """The engine's ``Error:`` sentence among stderr lines, else the last line, else ''."""
    for line in reversed(lines):
        if line.startswith("Error: "):
            return line[len("Error: "):].strip()
    return lines[-1].strip() if lines else ""


@dataclass
class EngineRun:
    """One engine process: its events as they come, cancel by SIGTERM, its ending.

    Parameters
    ----------
    engine
        The ``geovlm`` executable.
    args
        The command line after the executable; ``--progress json`` is added and secret
        options go into the environment instead (`split_secrets`).
    """

    engine: str
    args: Sequence[str]
    stderr_lines: list[str] = field(default_factory=list)
    last_event: dict[str, Any] | None = None
    _process: subprocess.Popen[str] | None = None
    _lines: queue.Queue[tuple[str, str | None]] = field(default_factory=queue.Queue)
    _terminated: bool = False

    @property
    def command(self) -> list[str]:
        """The full command line, without secrets (`split_secrets`)."""
        return [self.engine, *split_secrets(self.args)[0], "--progress", "json"]

    def start(self) -> None:
        """Start the process, secrets in its environment, and the two threads reading it."""
        self._process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            bufsize=1, env={**engine_environment(), **split_secrets(self.args)[1]},
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        for name, stream in (("out", self._process.stdout), ("err", self._process.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put((name, line.rstrip("\n")))
        self._lines.put((name, None))

    def terminate(self) -> None:
        """Ask the engine to stop (SIGTERM): it writes what it has and marks the run interrupted."""
        if self._process is not None and self._process.poll() is None and not self._terminated:
            self._terminated = True
            self._process.send_signal(signal.SIGTERM)

    def events(
        self, cancelled: Callable[[], bool] = lambda: False, poll: float = 0.1
    ) -> Iterator[dict[str, Any]]:
        """The engine's events until it exits; stderr lines come as ``{"event": "log"}``.

        Parameters
        ----------
        cancelled
            Asked every `poll` seconds; once true the engine is sent SIGTERM.
        poll
            Seconds between checks.
        """
        if self._process is None:
            self.start()
        open_streams = 2
        while open_streams:
            if cancelled():
                self.terminate()
            try:
                name, line = self._lines.get(timeout=poll)
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
            elif name == "err":
                self.stderr_lines.append(line)
                yield {"event": "log", "message": line}
            else:
                event = _parse(line)
                if event.get("event") in ("done", "error"):
                    self.last_event = event
                yield event

    def wait(self) -> int:
        """The exit status, once the process has ended."""
        assert self._process is not None
        return self._process.wait()

    @property
    def terminated(self) -> bool:
        """Whether `terminate` sent the engine SIGTERM."""
        return self._terminated


def _parse(line: str) -> dict[str, Any]:
    """One stdout line as an event; anything not JSON becomes a ``log`` event."""
    try:
        event = json.loads(line)
    except ValueError:
        return {"event": "log", "message": line}
    if not isinstance(event, dict) or "event" not in event:
        return {"event": "log", "message": line}
    return event


def run_engine(
    engine: str,
    args: Sequence[str],
    on_event: Callable[[dict[str, Any]], None],
    cancelled: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Run the engine to the end, passing each event to `on_event`; return its ``done`` event.

    Returns
    -------
    dict
        The ``done`` event; its ``status`` is ``interrupted`` after a cancel.

    Raises
    ------
    EngineError
        The engine reported an error, or ended without a ``done`` event.
    """
    run = EngineRun(engine, args)
    try:
        run.start()
    except OSError as exc:
        raise EngineError(f"Cannot start the geovlm engine {engine}: {exc}.",
                          "engine_missing") from exc
    for event in run.events(cancelled):
        on_event(event)
    status = run.wait()
    last = run.last_event
    if last is not None and last.get("event") == "error":
        raise EngineError(str(last.get("message")), str(last.get("kind", "crash")))
    if last is not None and last.get("event") == "done":
        return last
    if run.terminated:
        return {"event": "done", "status": "interrupted"}
    raise EngineError(_error_line(run.stderr_lines)
                      or f"The geovlm engine exited with status {status} without a result.")
