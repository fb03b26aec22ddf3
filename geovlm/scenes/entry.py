"""A scene of a run as the output names it: what opens it, its key, and its records' fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SceneEntry", "scene_entries", "scene_key"]


@dataclass(frozen=True, slots=True)
class SceneEntry:
    """A scene of a run: what opens it, how the output names it, and what its records carry.

    Attributes
    ----------
    path
        What rasterio opens (a path, URL or ``/vsi`` name).
    key
        The scene's name in the output (field ``scene``, ids ``<key>|<chip_id>``).
    fields
        Further fields of each of its records (e.g. a STAC item's ``datetime``).
    """

    path: str
    key: str
    fields: Mapping[str, Any] = field(default_factory=dict)


def scene_key(scene: str | Path) -> str:
    """How a scene is named in the layer and the run: a local file's full path, else as given."""
    path = Path(scene)
    return str(path.resolve()) if path.exists() else str(scene)


def scene_entries(scenes: Sequence[str]) -> list[SceneEntry]:
    """Scenes given as paths or URLs, each named by `scene_key`."""
    return [SceneEntry(scene, scene_key(scene)) for scene in scenes]
