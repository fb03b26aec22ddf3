"""The plugin's settings (QgsSettings, per user profile): where the engine lives, which server."""

from __future__ import annotations

from qgis.core import QgsSettings

from .engine import find_engine

__all__ = ["configured_engine", "engine_path", "server", "server_arguments", "set_engine_path",
           "set_server"]

_ENGINE_KEY = "geovlm/engine_path"
_SERVER_URL_KEY = "geovlm/server_url"
_SERVER_KEY_KEY = "geovlm/server_api_key"


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


def server() -> tuple[str, str]:
    """The ``geovlm serve`` URL and API key saved in the settings ('' when unset)."""
    settings = QgsSettings()
    return (str(settings.value(_SERVER_URL_KEY, "") or ""),
            str(settings.value(_SERVER_KEY_KEY, "") or ""))


def set_server(url: str, api_key: str = "") -> None:
    """Save the server classify runs on by default ('' to run the model locally again)."""
    settings = QgsSettings()
    settings.setValue(_SERVER_URL_KEY, url)
    settings.setValue(_SERVER_KEY_KEY, api_key)


def server_arguments(url: str = "", api_key: str = "") -> list[str]:
    """Classify's options to run the model on a ``geovlm serve`` server, [] to run it here.

    The key comes as ``--api-key KEY``; `engine.EngineRun` passes it to the engine as
    ``GEOVLM_API_KEY`` instead, off the engine's command line.

    Parameters
    ----------
    url, api_key
        The server's OpenAI base URL and key; empty: the saved ones (`server`).
    """
    saved_url, saved_key = server()
    url, api_key = url.strip() or saved_url, api_key.strip() or saved_key
    if not url:
        return []
    return ["--backend", "openai", "--endpoint", url, *(["--api-key", api_key] if api_key else [])]
