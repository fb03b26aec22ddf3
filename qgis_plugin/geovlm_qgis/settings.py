"""The plugin's settings (QgsSettings, per user profile): where the engine lives."""

from __future__ import annotations

from qgis.core import QgsSettings

from .engine import find_engine

__all__ = ["configured_engine", "engine_path", "set_engine_path"]

_ENGINE_KEY = "geovlm/engine_path"


def configured_engine() -> str:
    """The engine path saved in the settings ('' when unset: PATH is searched)."""
    return str(QgsSettings().value(_ENGINE_KEY, "") or "")


def set_engine_path(path: str) -> None:
    """Save the engine's ``geovlm`` executable ('' to search PATH again)."""
    QgsSettings().setValue(_ENGINE_KEY, path)


def engine_path() -> str:
    """The engine to run: $GEOVLM_ENGINE, else the setting, else ``geovlm`` on PATH.

    Raises
    ------
    EngineError
        None of them is an executable.
    """
    return find_engine(configured_engine())
