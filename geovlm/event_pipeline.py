"""Many scenes, one run, one layer: the chip loop of `geovlm.pipeline` over an event's scenes.

The scenes are surveyed first (`geovlm.event_scenes.survey_scenes`): those that fail to open
are warned about and left out, and the layer's CRS is chosen, all before the task's setup (the
model load). Then one stream of batches runs through every scene in turn: the background thread
reading and preparing batch k+1 moves on to the next scene while the model works on the last
batch of the one before, so the model never waits at a scene boundary. A batch holds chips of
one scene. Each record gets the fields ``scene`` and ``scene_chip_id`` (the id a re-run resumes
by: scene and chip together), and its chip polygon is reprojected into the layer's CRS with
densified edges. Progress events carry ``scene``, the number of the scene being worked on (of
``scenes`` in the ``start`` event).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from geovlm.event_scenes import EventScenes, survey_scenes
from geovlm.gpkg import FieldType, GeoPackageWriter
from geovlm.grouped_writes import LayerRows, OrderedWrites, new_rows
from geovlm.pipeline import RunSummary, batched
from geovlm.prefetch import prepared_ahead
from geovlm.progress import ProgressMode, ProgressReporter
from geovlm.reprojection import reproject_polygon
from geovlm.runs import RunRecord
from geovlm.scene import SceneInfo
from geovlm.tiling import Chip, SceneTiler, TilingOptions
from geovlm.versions import library_versions
from geovlm.work_items import ChipSteps

__all__ = ["EVENT_FIELDS", "EVENT_ID_FIELD", "run_over_scenes", "scene_key"]

#: The id field of an event's layer: ``<scene>|<chip_id>``, unique across scenes.
EVENT_ID_FIELD = "scene_chip_id"

#: Fields an event's layer has beyond the task's.
EVENT_FIELDS: dict[str, FieldType] = {
    "scene": FieldType.STRING,
    EVENT_ID_FIELD: FieldType.STRING,
}


def scene_key(scene: str) -> str:
    """How a scene is named in the layer and the run: a local file's full path, else as given."""
    path = Path(scene)
    return str(path.resolve()) if path.exists() else scene


class _Scenes:
    """The stream of batches through the event's scenes, counting chips under ``--min-valid``."""

    def __init__(self, event: EventScenes, tiling: TilingOptions, done: set[str]) -> None:
        self.event = event
        self.tiling = tiling
        self.done = done
        self.cells: dict[str, set[str]] = {}
        self._closed_skips = 0
        self._open: SceneTiler | None = None
        for info in event.opened:  # the grids, for the progress total and the resume count
            with SceneTiler(info.path, tiling) as tiler:
                key = scene_key(info.path)
                self.cells[key] = {f"{key}|{cell.chip_id}" for cell in tiler.cells}

    @property
    def skipped_invalid(self) -> int:
        """Chips left out under ``--min-valid`` so far."""
        return self._closed_skips + (self._open.skipped_invalid if self._open else 0)

    def batches(self, size: int) -> Iterator[tuple[SceneInfo, list[Chip]]]:
        for info in self.event.opened:
            key = scene_key(info.path)
            with SceneTiler(info.path, self.tiling) as tiler:
                self._open = tiler
                skip = {c.chip_id for c in tiler.cells if f"{key}|{c.chip_id}" in self.done}
                with contextlib.closing(tiler.chips(skip=skip)) as chips:
                    for batch in batched(chips, size):
                        yield info, batch
                self._closed_skips += tiler.skipped_invalid
                self._open = None


def run_over_scenes(
    scenes: Sequence[str],
    output: str | Path,
    *,
    command: str,
    tiling: TilingOptions,
    parameters: Mapping[str, Any],
    layer: str,
    fields: Mapping[str, FieldType],
    style_qml: str,
    setup: Callable[[], ChipSteps],
    batch_size: int = 16,
    progress: ProgressMode = ProgressMode.AUTO,
    overwrite: bool = False,
    extra_versions: Mapping[str, str] | None = None,
    dst_crs: str | None = None,
) -> RunSummary:
    """Run a task's steps over the chips of several scenes into one layer of one GeoPackage.

    Parameters
    ----------
    scenes
        The event's scenes, in order (see `geovlm.scene_list.expand_scenes`).
    output, command, tiling, parameters, layer, fields, style_qml, setup, batch_size,
    progress, overwrite, extra_versions
        As for `geovlm.pipeline.run_over_chips`; `fields` are the task's, without
        `EVENT_FIELDS`. Tasks with a further layer of objects are not supported yet.
    dst_crs
        The layer's CRS (``--dst-crs``), or None: the scenes' CRS, else EPSG:4326.

    Returns
    -------
    RunSummary
        Counts and timing; its counts add ``scenes`` (processed) and ``failed_scenes``.

    Raises
    ------
    InputError
        No scene opens.
    OutputError
        The output is refused, before `setup` is called.
    """
    start = time.perf_counter()
    event = survey_scenes(scenes, tiling.bands, dst_crs)
    failed = [{"scene": f.scene, "reason": f.reason} for f in event.failed]
    run = RunRecord(
        command=command,
        parameters={
            "scenes": [scene_key(scene) for scene in scenes],
            "tiling": tiling.as_dict(),
            "crs": event.crs.to_string(),
            **parameters,
        },
        versions={**library_versions(), **(extra_versions or {})},
        notes={"failed_scenes": failed} if failed else {},
    )
    writer = GeoPackageWriter(
        output, layer=layer, fields={**fields, **EVENT_FIELDS}, crs=event.crs, run=run,
        style_qml=style_qml, overwrite=overwrite, id_field=EVENT_ID_FIELD,
    )
    with writer:
        steps = setup()
        writer.begin()
        done = set(writer.done_ids)
        stream = _Scenes(event, tiling, done)
        total = sum(len(cells) for cells in stream.cells.values())
        already_done = len(writer.done_ids)

        def prepare(item: tuple[SceneInfo, list[Chip]]) -> Any:
            return steps.prepare(item[1])

        with (
            ProgressReporter(progress, total, "chips", output=str(output),
                             run_id=writer.run_id, layers=[layer],
                             scenes=len(event.opened)) as reporter,
            OrderedWrites(writer, [layer]) as writes,
            contextlib.closing(prepared_ahead(stream.batches(batch_size), prepare))
            as prepared_batches,
        ):
            reporter.resume(sum(len(done & cells) for cells in stream.cells.values()))
            skipped_before = 0
            for (info, batch), prepared in prepared_batches:
                key = scene_key(info.path)
                rows = [
                    {**record, "scene": key, EVENT_ID_FIELD: f"{key}|{chip.chip_id}"}
                    for chip, record in zip(batch, steps.process(batch, prepared).chips,
                                            strict=True)
                ]
                geometries = [reproject_polygon(chip.footprint, chip.crs, event.crs)
                              for chip in batch]
                finished = writes.submit([new_rows(writer, LayerRows(layer, rows, geometries))])
                skipped = stream.skipped_invalid
                reporter.advance(finished + skipped - skipped_before,
                                 scene=event.opened.index(info) + 1)
                skipped_before = skipped
            reporter.advance(writes.drain() + stream.skipped_invalid - skipped_before)
            writer.count_skipped(stream.skipped_invalid)
            summary = RunSummary(
                output=str(output),
                run_id=writer.run_id,
                total=total,
                written=writer.written - already_done,
                already_done=already_done,
                skipped_invalid=stream.skipped_invalid,
                seconds=time.perf_counter() - start,
                counts={"scenes": len(event.opened), "failed_scenes": failed},
            )
            reporter.finish(**summary.as_dict())
    return summary
