"""The scenes of an event: paths, folders, globs and text files of paths, expanded in order.

``geovlm classify SCENE [SCENE ...]`` takes any mix of:

- a raster path or a GDAL URL (``/vsicurl/...``, ``https://...``), kept as given;
- a folder: its rasters (``.tif``, ``.tiff``, ``.vrt``, any case), sorted, not recursive;
- a glob (``scenes/*.tif``, ``event/**/*.tif``): its matches, sorted;
- a text file of paths (``.txt`` or ``.lst``): one path or URL a line, blank lines and
  lines starting with ``#`` ignored, relative paths taken from the file's folder.

Every scene appears once, at its first place; a name that gives no scene is refused before any
model loads.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from pathlib import Path

from geovlm.errors import InputError

__all__ = ["LIST_SUFFIXES", "RASTER_SUFFIXES", "expand_scenes", "single_scene"]

#: What a folder's rasters end with (compared in lower case).
RASTER_SUFFIXES = frozenset({".tif", ".tiff", ".vrt"})

#: What a text file of scene paths ends with.
LIST_SUFFIXES = frozenset({".txt", ".lst"})

_GLOB_CHARS = frozenset("*?[")


def _is_url(name: str) -> bool:
    return name.startswith("/vsi") or "://" in name


def _listed(path: Path) -> list[str]:
    scenes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = line.strip()
        if entry.startswith("#"):
            continue
        if not entry:
            continue
        scenes.append(entry if _is_url(entry) or Path(entry).is_absolute()
                      else str(path.parent / entry))
    if not scenes:
        raise InputError(f"{path} lists no scenes; write one raster path or URL per line.")
    return scenes


def _one(name: str) -> list[str]:
    if _is_url(name):
        return [name]
    path = Path(name)
    if path.is_dir():
        found = sorted(str(p) for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
        if not found:
            raise InputError(
                f"Folder {name} holds no .tif, .tiff or .vrt raster; name the scenes instead."
            )
        return found
    if path.is_file():
        return _listed(path) if path.suffix.lower() in LIST_SUFFIXES else [name]
    if _GLOB_CHARS & set(name):
        matches = sorted(m for m in glob.glob(name, recursive=True) if Path(m).is_file())
        if not matches:
            raise InputError(f"No file matches {name}; check the pattern and its folder.")
        return matches
    raise InputError(f"Scene {name} does not exist; pass a raster, folder, glob or list of paths.")


def expand_scenes(names: Iterable[str]) -> list[str]:
    """Expand scene arguments into the list of scenes, each once, in the order given.

    Parameters
    ----------
    names
        Paths, URLs, folders, globs and text files of paths, as typed.

    Returns
    -------
    list[str]
        The scenes; paths as found (relative ones stay relative), URLs untouched.

    Raises
    ------
    InputError
        A name gives no scene, or no name was given.
    """
    seen: set[str] = set()
    scenes = []
    for name in names:
        for scene in _one(name):
            key = scene if _is_url(scene) else str(Path(scene).resolve())
            if key not in seen:
                seen.add(key)
                scenes.append(scene)
    if not scenes:
        raise InputError("No scene given; pass one or more rasters, folders, globs or lists.")
    return scenes


def single_scene(names: Sequence[str]) -> str | None:
    """The scene when `names` is one raster path or URL (a single-scene run), else None.

    A missing path counts as one scene, so the single-scene run reports it as before.
    """
    if len(names) != 1:
        return None
    name = names[0]
    if _is_url(name):
        return name
    path = Path(name)
    if path.is_dir() or (path.is_file() and path.suffix.lower() in LIST_SUFFIXES):
        return None
    return None if not path.exists() and _GLOB_CHARS & set(name) else name
