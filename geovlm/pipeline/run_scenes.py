"""The scenes of a run, opened and checked before any model loads, and how the output names them.

A run has one scene (``geovlm classify scene.tif``) or an event's many. Each scene is opened
once here for its header and chip grid (`geovlm.scenes.tiling.SceneTiler` reads no pixel until
asked). In an event a scene that fails to open is listed with its reason and logged as a warning (a
``warning`` event under ``--progress json``), then left out; the run goes on with the others
unless every scene failed. An event's records carry the field ``scene`` (and the scene's own
fields, e.g. a STAC item's ``datetime``) and the id ``scene_chip_id`` (``<scene>|<chip_id>``,
unique across scenes, what a re-run resumes by); its chip polygons are reprojected into the
layer's CRS (see `geovlm.scenes.reprojection.event_crs`). A single scene keeps its own CRS and ids.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rasterio.crs import CRS
from shapely.geometry import Polygon

from geovlm.errors import GeovlmError, InputError
from geovlm.output.fields import FieldType
from geovlm.output.grouped_writes import LayerRows
from geovlm.pipeline.work_items import ItemOpener, ItemSource, ProcessedBatch
from geovlm.scenes.entry import SceneEntry, scene_key
from geovlm.scenes.reprojection import event_crs, reproject_polygon
from geovlm.scenes.scene import SceneInfo
from geovlm.scenes.tiling import SceneTiler, TilingOptions
from geovlm.sources.building_crops import BuildingCrops, CropOptions, Footprints

__all__ = [
    "EVENT_FIELDS", "EVENT_ID_FIELD", "FailedScene", "RunScenes", "building_scene", "grid_opener",
    "one_scene", "scene_footprint", "survey_scenes",
]

logger = logging.getLogger(__name__)

#: The id field of an event's layer: ``<scene>|<chip_id>``, unique across scenes.
EVENT_ID_FIELD = "scene_chip_id"

#: Fields an event's layer has beyond the task's (and its scenes' own).
EVENT_FIELDS: dict[str, FieldType] = {
    "scene": FieldType.STRING,
    EVENT_ID_FIELD: FieldType.STRING,
}


@dataclass(frozen=True, slots=True)
class FailedScene:
    """A scene left out of the run and why, for the ``runs`` table and the progress output."""

    scene: str
    reason: str


@dataclass(frozen=True, slots=True)
class RunScenes:
    """The scenes of a run that opened, those that did not, and the layout of the output.

    Attributes
    ----------
    opened
        Each scene that opened, with its work items (a chip grid's tiler, or building crops:
        header and item ids only, no pixel read yet), in order.
    crs
        The layer's CRS.
    opener
        Opens a scene's items again by path (e.g. on a Ray worker); picklable.
    failed
        The scenes left out.
    event
        Whether records are named by scene (`EVENT_FIELDS`) rather than by chip id alone.
    given
        The name of every scene as given, in order (an event's signature).
    listing
        How the scenes were listed, recorded with the run (e.g. the STAC asset read).
    """

    opened: tuple[tuple[SceneEntry, ItemSource], ...]
    crs: CRS
    opener: ItemOpener
    failed: tuple[FailedScene, ...] = ()
    event: bool = False
    given: tuple[str, ...] = ()
    listing: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id_field(self) -> str:
        """The field a re-run resumes by."""
        return EVENT_ID_FIELD if self.event else "chip_id"

    def layer_fields(self, fields: Mapping[str, FieldType]) -> dict[str, FieldType]:
        """The chip layer's fields: the task's, and in an event the scenes' names and fields."""
        if not self.event:
            return dict(fields)
        own = {name: FieldType.of(value) for entry, _ in self.opened
               for name, value in entry.fields.items()}
        return {**fields, **EVENT_FIELDS, **own}

    def item_id(self, scene: SceneEntry, chip_id: str) -> str:
        """A chip's id in the output."""
        return f"{scene.key}|{chip_id}" if self.event else chip_id

    def chip_rows(self, layer: str, batch: ProcessedBatch) -> LayerRows:
        """A processed batch's chip records as rows of the chip layer, in the layer's CRS."""
        rows = batch.records.chips
        if self.event:
            scene = batch.scene
            rows = [{**record, **scene.fields, "scene": scene.key,
                     EVENT_ID_FIELD: self.item_id(scene, record["chip_id"])} for record in rows]
        geometries = [reproject_polygon(polygon, batch.crs, self.crs)
                      for polygon in batch.footprints]
        return LayerRows(layer, rows, geometries)

    def run_parameters(self) -> dict[str, Any]:
        """What the scenes and how they are cut (`ItemSource.signature`) add to the signature."""
        items = self.opened[0][1].signature()
        if not self.event:
            (entry, source), = self.opened
            return {
                "scene": entry.key,
                **items,
                # Items are cut by ground distance: a scene whose measured scale changed (e.g.
                # an output of a version that took Web Mercator units for metres) has another
                # grid.
                "scene_resolution_m": [round(r, 6) for r in source.info.resolution_m],
            }
        return {
            "scenes": list(self.given),
            **items,
            "crs": self.crs.to_string(),
            **self.listing,
        }

    def footprint(self, info: SceneInfo) -> Polygon:
        """A scene's footprint in the layer's CRS, edges densified."""
        return reproject_polygon(scene_footprint(info), info.crs, self.crs)


def scene_footprint(info: SceneInfo) -> Polygon:
    """The outline of a scene's pixel grid in its own CRS (rotated grids included)."""
    corners = [(0, 0), (info.width, 0), (info.width, info.height), (0, info.height)]
    return Polygon([info.transform @ corner for corner in corners])


def grid_opener(tiling: TilingOptions) -> ItemOpener:
    """Opens a scene's chip grid by path (`SceneTiler`), as the engines' workers do."""
    return functools.partial(SceneTiler, options=tiling)


def one_scene(scene: str | Path, tiling: TilingOptions) -> RunScenes:
    """A run over one scene, named as given, in its own CRS.

    Raises
    ------
    InputError
        The scene is missing, unreadable or not georeferenced.
    """
    tiler = SceneTiler(scene, tiling)
    return RunScenes(((SceneEntry(str(scene), scene_key(scene)), tiler),), tiler.info.crs,
                     grid_opener(tiling))


def building_scene(scene: str | Path, footprints: Footprints, options: CropOptions) -> RunScenes:
    """A run over the buildings of one scene (`BuildingCrops`), named as given, in its CRS.

    Its opener carries the footprints (as WKB) and the options, so it pickles to Ray's workers.

    Raises
    ------
    InputError
        A scene is missing or unreadable, the post scene is geographic, or the pre scene
        does not overlap it.
    """
    crops = BuildingCrops(scene, footprints, options)
    return RunScenes(((SceneEntry(str(scene), scene_key(scene)), crops),), crops.info.crs,
                     functools.partial(BuildingCrops, footprints=footprints, options=options))


def survey_scenes(
    scenes: Sequence[SceneEntry],
    tiling: TilingOptions,
    dst_crs: str | None = None,
    listing: Mapping[str, Any] | None = None,
) -> RunScenes:
    """Open every scene of an event, set aside those that fail, and choose the layer's CRS.

    Parameters
    ----------
    scenes
        The event's scenes (see `geovlm.scenes.listing.expand_scenes` and `scene_entries`).
    tiling
        How the scenes are cut (and the bands every scene must have).
    dst_crs
        ``--dst-crs`` as typed, or None for the scenes' shared CRS, else EPSG:4326.
    listing
        How the scenes were listed, recorded with the run (`RunScenes.listing`).

    Returns
    -------
    RunScenes
        The scenes that opened, in order, and those that failed.

    Raises
    ------
    InputError
        Every scene failed to open (the message gives the first reason).
    ParameterError
        `dst_crs` is not a CRS.
    """
    opened: list[tuple[SceneEntry, ItemSource]] = []
    failed: list[FailedScene] = []
    for entry in scenes:
        try:
            opened.append((entry, SceneTiler(entry.path, tiling)))
        except GeovlmError as exc:
            failed.append(FailedScene(entry.key, str(exc)))
            logger.warning("skipping scene %d of %d: %s", len(opened) + len(failed),
                           len(scenes), exc)
    if not opened:
        first = failed[0].reason if failed else "no scene was given"
        raise InputError(
            f"None of the {len(scenes)} scenes opens (the first: {first.rstrip('.')});"
            " fix or leave out the broken scenes."
        )
    crs = event_crs([tiler.info.crs for _, tiler in opened], dst_crs)
    return RunScenes(tuple(opened), crs, grid_opener(tiling), tuple(failed), event=True,
                     given=tuple(entry.key for entry in scenes), listing=dict(listing or {}))
