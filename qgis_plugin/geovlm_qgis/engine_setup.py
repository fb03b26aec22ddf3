"""Set up and check the engine: a venv with geovlm installed by pip, and a diagnostics report.

Standard library only (no Qt): the dialog in setup_dialog.py runs these in a QgsTask. The venv
gets its own Python (3.11 or newer, found on PATH, never QGIS's `sys.executable`), so torch's
DLLs and numpy never meet QGIS's.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .engine import PROTOCOL, EngineError, engine_environment, engine_json

__all__ = [
    "MIN_PYTHON",
    "create_engine",
    "diagnostics",
    "find_base_python",
    "venv_engine",
    "verify_engine",
]

#: geovlm's oldest supported Python.
MIN_PYTHON = (3, 11)
_CANDIDATES = ("python3.13", "python3.12", "python3.11", "python3", "python", "py")


def venv_engine(venv: Path) -> Path:
    """Where a venv keeps its ``geovlm`` executable."""
    return venv / ("Scripts/geovlm.exe" if os.name == "nt" else "bin/geovlm")


def _python_version(python: str) -> tuple[int, int] | None:
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True, text=True, timeout=30, env=engine_environment(), check=True)
        major, minor = done.stdout.split()
        return int(major), int(minor)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def find_base_python(candidates: Sequence[str] = _CANDIDATES) -> str:
    """A Python 3.11+ on PATH to create the engine's venv with.

    Raises
    ------
    EngineError
        None found (kind ``python_missing``).
    """
    for name in candidates:
        found = shutil.which(name)
        if found and (_python_version(found) or (0, 0)) >= MIN_PYTHON:
            return found
    raise EngineError(
        "No Python 3.11 or newer found on PATH; install one from python.org (or your package"
        " manager) and run Check / set up engine again.", "python_missing")


def _stream(label: str, command: Sequence[str], log: Any, on_line: Callable[[str], None],
            cancelled: Callable[[], bool]) -> None:
    """Run `command` (called `label` in errors), copying its output to `log` and `on_line`."""
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1, env=engine_environment())
    assert process.stdout is not None
    for line in process.stdout:
        log.write(line)
        on_line(line.rstrip("\n"))
        if cancelled():
            process.terminate()
            break
    status = process.wait()
    log.flush()
    if cancelled():
        raise EngineError("The engine set-up was cancelled.", "cancelled")
    if status != 0:
        raise EngineError(f"{label} failed with status {status}; the set-up log is {log.name}.",
                          "setup_failed")


def create_engine(
    venv: Path,
    log_path: Path,
    *,
    python: str | None = None,
    requirement: str = "geovlm",
    pip_options: Sequence[str] = (),
    on_line: Callable[[str], None] = lambda line: None,
    cancelled: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Create (or reuse) `venv`, pip install `requirement` into it and check the result.

    Parameters
    ----------
    venv
        The engine's environment folder; created when missing, upgraded otherwise.
    log_path
        Where every line of venv's and pip's output is kept (appended).
    python
        The Python to create the venv with; default: `find_base_python`.
    requirement
        What pip installs: ``geovlm``, a version spec, a wheel or a source folder.
    pip_options
        Extra pip options, e.g. ``--index-url`` of a mirror.
    on_line
        Called with each output line (progress for the dialog).
    cancelled
        Asked after each line; true stops the step in progress.

    Returns
    -------
    dict
        The engine's ``geovlm version --json`` report, with ``engine`` (its path) added.

    Raises
    ------
    EngineError
        A step failed (the message names the log) or the installed engine does not work.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        venv_python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        if not venv_python.exists():
            on_line(f"Creating {venv}")
            _stream("Creating the venv", [python or find_base_python(), "-m", "venv", str(venv)],
                    log, on_line, cancelled)
        on_line(f"Installing {requirement} (torch alone is about 1-3 GB)")
        _stream("pip install", [str(venv_python), "-m", "pip", "install", "--upgrade",
                 "--disable-pip-version-check", "--progress-bar", "off", *pip_options,
                 requirement], log, on_line, cancelled)
    try:
        report = verify_engine(str(venv_engine(venv)))
    except EngineError as exc:
        raise EngineError(f"{exc.message} (the set-up log is {log_path})", exc.kind) from exc
    return report


def verify_engine(engine: str) -> dict[str, Any]:
    """Run ``geovlm version --json`` and check the event protocol matches this plugin's.

    Returns
    -------
    dict
        The version report with ``engine`` added.

    Raises
    ------
    EngineError
        The engine does not run, or speaks another protocol (kind ``protocol``).
    """
    report = engine_json(engine, "version", "--json")
    if report.get("protocol") != PROTOCOL:
        raise EngineError(
            f"The geovlm engine {engine} speaks event protocol {report.get('protocol')}, this"
            f" plugin {PROTOCOL}; update the plugin or the engine so they match.", "protocol")
    return {**report, "engine": engine}


def diagnostics(host: dict[str, str], engine: str | None) -> str:
    """A plain-text report for bug reports: QGIS, Python, the engine, torch, CUDA, presets.

    Parameters
    ----------
    host
        Facts about QGIS's side, e.g. ``{"QGIS": "3.22.16", "Qt": "5.15.8"}``.
    engine
        The engine path, or None when none was found.

    Returns
    -------
    str
        One fact per line; engine failures are reported, never raised.
    """
    lines = ["geovlm QGIS plugin diagnostics"]
    lines += [f"{key}: {value}" for key, value in host.items()]
    lines.append(f"QGIS Python: {platform.python_version()} on {platform.platform()}")
    if engine is None:
        lines.append("engine: none found (Plugins > geovlm > Check / set up engine)")
        return "\n".join(lines)
    lines.append(f"engine: {engine}")
    try:
        report = verify_engine(engine)
        models = engine_json(engine, "models", "--json")
    except EngineError as exc:
        lines.append(f"engine check failed ({exc.kind}): {exc.message}")
        return "\n".join(lines)
    cuda = report["cuda"]
    lines += [
        f"geovlm: {report['geovlm']} (event protocol {report['protocol']})",
        f"engine Python: {report['python']} ({report['executable']})",
        *(f"{name}: {version or 'not installed'}"
          for name, version in report["libraries"].items()),
        f"CUDA: {'available: ' + ', '.join(cuda['devices']) if cuda['available'] else 'no'}"
        f" (torch built for CUDA {cuda['version'] or 'none'})",
        "presets (offline = loads without network):",
    ]
    for preset in models:
        offline = preset["offline"]
        ready = offline["model"] and offline["adapter"] in (True, None)
        lines.append(f"  {preset['name']}{' (default)' if preset['default'] else ''}:"
                     f" {preset['model']}, offline {'yes' if ready else 'no'}")
    return "\n".join(lines)
