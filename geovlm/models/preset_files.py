"""Where model presets come from: the YAML files shipped in the package, then site folders.

Shipped presets are package data (``geovlm/presets/*.yaml``), read with `importlib.resources`
so they work from a wheel as from a checkout. Site presets are a team's or a machine's own files,
one ``NAME.yaml`` per preset, in the folders named by the ``GEOVLM_PRESETS`` environment variable
(one folder, or several joined by `os.pathsep` like ``PATH``), else in ``presets`` under geovlm's
platform config folder (``click.get_app_dir("geovlm")``: ``~/.config/geovlm/presets`` on Linux).

Precedence: a site preset with a shipped preset's name replaces it (that is what a site preset is
for, e.g. pointing ``xview2-qwen3vl`` at a local mirror), and of two site folders the earlier one
in ``GEOVLM_PRESETS`` wins. Which file won is logged at INFO (``geovlm -v``) and shown by
``geovlm models``. Nothing here reads a preset's contents.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import click

from geovlm.enums import CheckedEnum
from geovlm.errors import PresetError

__all__ = [
    "PRESETS_ENV",
    "SHIPPED_PRESETS",
    "PresetFile",
    "PresetOrigin",
    "find_preset_files",
    "site_preset_folders",
]

log = logging.getLogger(__name__)

#: The environment variable naming the site preset folders.
PRESETS_ENV = "GEOVLM_PRESETS"
#: The folder of the presets shipped with geovlm (package data).
SHIPPED_PRESETS: Traversable = resources.files("geovlm") / "presets"
_SUFFIX = ".yaml"


class PresetOrigin(CheckedEnum):
    """Where a preset file lives: ``shipped`` with geovlm, or in a ``site`` folder."""

    SHIPPED = "shipped"
    SITE = "site"


@dataclass(frozen=True, slots=True)
class PresetFile:
    """One preset's YAML file, found by `find_preset_files`."""

    #: The preset's name: the file name without ``.yaml``.
    name: str
    #: The file (a `pathlib.Path` unless the package is imported from a zip).
    path: Traversable
    origin: PresetOrigin
    #: Files of the same name that this one hides, in precedence order.
    replaces: tuple[Traversable, ...] = ()


def site_preset_folders() -> list[Path]:
    """The site preset folders, highest precedence first, read from the environment now.

    Returns
    -------
    list of Path
        The folders of ``GEOVLM_PRESETS`` when it is set and not empty, else the ``presets``
        folder in geovlm's platform config folder (which need not exist).

    Raises
    ------
    PresetError
        If ``GEOVLM_PRESETS`` names something that is not a folder.
    """
    value = os.environ.get(PRESETS_ENV, "")
    if not value.strip():
        return [Path(click.get_app_dir("geovlm")) / "presets"]
    folders = [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]
    for folder in folders:
        if not folder.is_dir():
            raise PresetError(
                f"{PRESETS_ENV} names {folder}, which is not a folder: create it or fix"
                f" {PRESETS_ENV} (folders joined by {os.pathsep!r})."
            )
    return folders


def find_preset_files(folder: str | os.PathLike[str] | None = None) -> list[PresetFile]:
    """Every preset file that counts, one per name, sorted by name.

    Parameters
    ----------
    folder
        Read only this folder; by default the shipped presets and the site folders
        (`site_preset_folders`), a site file replacing a shipped one of the same name.

    Returns
    -------
    list of PresetFile

    Raises
    ------
    PresetError
        If ``GEOVLM_PRESETS`` names something that is not a folder.

    Examples
    --------
    >>> found = {preset.name: preset for preset in find_preset_files()}
    >>> found["xview2-qwen3vl"].path.name
    'xview2-qwen3vl.yaml'
    """
    layers: list[tuple[PresetOrigin, Traversable]]
    if folder is not None:
        layers = [(PresetOrigin.SITE, Path(folder))]
    else:
        sites = [(PresetOrigin.SITE, site) for site in site_preset_folders()]
        layers = [*sites, (PresetOrigin.SHIPPED, SHIPPED_PRESETS)]
    found: dict[str, PresetFile] = {}
    for origin, where in reversed(layers):  # lowest precedence first, so later ones replace
        for path in _yaml_files(where):
            name = path.name.removesuffix(_SUFFIX)
            if (hidden := found.get(name)) is not None:
                log.info("preset %s: %s replaces %s", name, path, hidden.path)
            replaces = (hidden.path, *hidden.replaces) if hidden else ()
            found[name] = PresetFile(name, path, origin, replaces)
    return [found[name] for name in sorted(found)]


def _yaml_files(folder: Traversable) -> list[Traversable]:
    """The ``*.yaml`` files in a folder, sorted; none when the folder does not exist."""
    if not folder.is_dir():
        return []
    files = (path for path in folder.iterdir() if path.name.endswith(_SUFFIX) and path.is_file())
    return sorted(files, key=lambda path: path.name)
