"""The scenes of an event, opened and checked before any model loads.

Each scene is opened once (header only) to learn its CRS and footprint. A scene that fails to
open is listed with its reason and logged as a warning (a ``warning`` event under ``--progress
json``), then left out; the run goes on with the others unless every scene failed. The layer's
CRS follows from the scenes that opened (see `geovlm.reprojection.event_crs`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from rasterio.crs import CRS
from shapely.geometry import Polygon

from geovlm.errors import GeovlmError, InputError
from geovlm.reprojection import event_crs, reproject_polygon
from geovlm.scene import SceneInfo, open_scene

__all__ = ["EventScenes", "FailedScene", "scene_footprint", "survey_scenes"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FailedScene:
    """A scene left out of the run and why, for the ``runs`` table and the progress output."""

    scene: str
    reason: str


@dataclass(frozen=True, slots=True)
class EventScenes:
    """The scenes of a run that opened, those that did not, and the CRS of the run's layer."""

    opened: tuple[SceneInfo, ...]
    failed: tuple[FailedScene, ...]
    crs: CRS

    def footprint(self, info: SceneInfo) -> Polygon:
        """A scene's footprint in the layer's CRS, edges densified."""
        return reproject_polygon(scene_footprint(info), info.crs, self.crs)


def scene_footprint(info: SceneInfo) -> Polygon:
    """The outline of a scene's pixel grid in its own CRS (rotated grids included)."""
    corners = [(0, 0), (info.width, 0), (info.width, info.height), (0, info.height)]
    return Polygon([info.transform @ corner for corner in corners])


def survey_scenes(
    scenes: Sequence[str],
    bands: tuple[int, ...] | None = None,
    dst_crs: str | None = None,
) -> EventScenes:
    """Open every scene's header, set aside those that fail, and choose the layer's CRS.

    Parameters
    ----------
    scenes
        The event's scenes (see `geovlm.scene_list.expand_scenes`).
    bands
        The bands every scene must have (``--bands``), or None for the default.
    dst_crs
        ``--dst-crs`` as typed, or None for the scenes' shared CRS, else EPSG:4326.

    Returns
    -------
    EventScenes
        The scenes that opened, in order, and those that failed.

    Raises
    ------
    InputError
        Every scene failed to open (the message gives the first reason).
    ParameterError
        `dst_crs` is not a CRS.
    """
    opened: list[SceneInfo] = []
    failed: list[FailedScene] = []
    for scene in scenes:
        try:
            opened.append(open_scene(scene, bands))
        except GeovlmError as exc:
            failed.append(FailedScene(scene, str(exc)))
            logger.warning("skipping scene %d of %d: %s", len(opened) + len(failed),
                           len(scenes), exc)
    if not opened:
        first = failed[0].reason if failed else "no scene was given"
        raise InputError(
            f"None of the {len(scenes)} scenes opens (the first: {first.rstrip('.')});"
            " fix or leave out the broken scenes."
        )
    crs = event_crs([info.crs for info in opened], dst_crs)
    return EventScenes(tuple(opened), tuple(failed), crs)
