"""The loop every per-chip command shares: tile, skip what is done, process in batches, write.

One driver loop for one scene or an event's many (`geovlm.pipeline.run_scenes.RunScenes`): it hands
the chips still to do to an engine (`geovlm.pipeline.engines`: the model in this process, or on a
Ray cluster) and alone writes what comes back. A run writes one record per chip to its chip layer
and, for tasks about the objects within chips (``refer``), their records to a further layer,
always before their chip's record: a chip is done once its record is written, so a re-run
resumes chip by chip and leaves out the objects of an unfinished chip that are already written.
With the local engine three stages overlap: a background thread reads and prepares batch k+1
(e.g. encodes its images) while the model works on batch k, and another writes the batches
before. The input and then the output are checked (and the output locked) before the task's
costly setup, such as loading a model, so a refused output costs no load. Batches are written
in transactions of at most half a second's work (see `geovlm.output.grouped_writes`), so a killed
run loses at most that and a re-run picks up where it stopped.
On any exception, including an interrupt, the background threads are joined, in order, before
the output and the scene close: what was processed is written and the run is marked
``interrupted``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geovlm.errors import ParameterError
from geovlm.events.progress import ProgressReporter
from geovlm.output.geopackage import GeoPackageWriter
from geovlm.output.grouped_writes import OrderedWrites, new_rows
from geovlm.output.runs import RunRecord
from geovlm.output.versions import library_versions
from geovlm.pipeline.engines.local import LocalEngine
from geovlm.pipeline.plan import ChipTask, RunOptions
from geovlm.pipeline.run_scenes import RunScenes
from geovlm.pipeline.work_items import SceneWork

__all__ = ["RunSummary", "run_over_chips"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a run did, for the CLI's closing line and the plugin's JSON."""

    output: str
    run_id: str
    total: int
    written: int
    already_done: int
    skipped_invalid: int
    seconds: float
    #: The task's own counts (`ChipSteps.counts`), JSON-ready.
    counts: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values."""
        return {
            "output": self.output,
            "run_id": self.run_id,
            "total": self.total,
            "written": self.written,
            "already_done": self.already_done,
            "skipped_invalid": self.skipped_invalid,
            "seconds": round(self.seconds, 3),
            **self.counts,
        }


#: Scenes of an event warned about their scale before the rest are left out.
_MAX_SCALE_WARNINGS = 5

def _warn_about_scales(scenes: RunScenes) -> None:
    """Warn about the scale of each scene that does not suit its items, the first few only."""
    warned = 0
    for _, source in scenes.opened:
        if warned == _MAX_SCALE_WARNINGS:
            logger.warning("further scenes' scale warnings are left out")
            return
        warning = source.scale_warning()
        if warning is not None:
            logger.warning("%s", warning)
            warned += 1


def _work(scenes: RunScenes, done: Set[str], wanted: Set[str]) -> list[SceneWork]:
    """Each scene's items still to do, by id in the output: wanted, and not done before."""
    work = []
    for scene, source in scenes.opened:
        ids = tuple(item_id for item_id in source.item_ids()
                    if (item := scenes.item_id(scene, item_id)) not in done and item in wanted)
        if ids:
            work.append(SceneWork(scene, ids))
    return work


def run_over_chips(scenes: RunScenes, task: ChipTask, run: RunOptions) -> RunSummary:
    """Run a task's steps over the chips of a run's scenes and stream its records to a GeoPackage.

    Parameters
    ----------
    scenes
        The run's scenes, opened and cut (`geovlm.pipeline.run_scenes.one_scene` or
        `survey_scenes`).
    task
        The layer the task writes and its steps (`ChipTask.setup` runs once the scenes have been
        opened and the output checked, locked and found new or resumable, so a refusal never
        waits for it).
    run
        The output, batch size, progress, overwrite and engine.

    Returns
    -------
    RunSummary
        Counts and timing; `RunSummary.written` counts records of the task's layer; an event's
        counts add ``scenes`` (processed) and ``failed_scenes``.

    Raises
    ------
    OutputError
        The output is refused (see `GeoPackageWriter`), before `ChipTask.setup` is called.
    """
    start = time.perf_counter()
    if task.check is not None:
        for _, source in scenes.opened:
            task.check(source)
    output, chip_layer = run.output, task.chip_layer
    fields = scenes.layer_fields(task.fields) if chip_layer is None else task.fields
    id_field = task.id_field or scenes.id_field
    batch_size = run.batch_size or task.batch_size
    record = RunRecord(
        command=task.command,
        parameters={**scenes.run_parameters(), **task.parameters},
        versions={**library_versions(), **task.extra_versions},
        notes={"failed_scenes": [{"scene": f.scene, "reason": f.reason} for f in scenes.failed]}
        if scenes.failed else {},
    )
    writer = GeoPackageWriter(
        output, layer=task.layer, fields=fields, crs=scenes.crs, run=record,
        style_qml=task.style_qml, overwrite=run.overwrite, id_field=id_field,
        extra_layers=[chip_layer] if chip_layer else [],
    )
    layers = [task.layer] + ([chip_layer.name] if chip_layer else [])
    # The scenes are open already (header and grid): the local engine reads through them.
    engine = run.engine or LocalEngine({scene.key: source for scene, source in scenes.opened})
    with writer:
        steps = engine.start(task.setup)
        if steps is None and chip_layer is not None:
            raise ParameterError(
                f"{task.command} needs its steps in this process (for its layer {task.layer}),"
                " so it cannot run with --engine ray; use --engine local."
            )
        # After setup, so that a refusal or a missing model stays the only line printed.
        _warn_about_scales(scenes)
        writer.begin()
        done_chips = writer.done_ids_of(layers[-1])
        items = {scenes.item_id(scene, item_id)
                 for scene, source in scenes.opened for item_id in source.item_ids()}
        wanted = items if steps is None or steps.wanted is None else items & steps.wanted
        already_done = len(writer.done_ids)
        numbers = {scene.key: n for n, (scene, _) in enumerate(scenes.opened, 1)}
        context: dict[str, Any] = {"scenes": len(scenes.opened)} if scenes.event else {}
        skipped = 0
        with (
            ProgressReporter(run.progress, len(wanted), task.unit, output=str(output),
                             run_id=writer.run_id, layers=layers, **context) as reporter,
            OrderedWrites(writer, layers) as writes,
            contextlib.closing(engine.processed(_work(scenes, done_chips, wanted),
                                                scenes.opener, batch_size)) as results,
        ):
            reporter.resume(len(done_chips & wanted))
            for batch in results:
                others = [new_rows(writer, part) for part in batch.records.others]
                for part in others:
                    if steps is not None and steps.kept is not None:
                        steps.kept(part)
                chips = new_rows(writer, scenes.chip_rows(layers[-1], batch))
                finished = writes.submit([*others, chips]) if batch.records.chips else 0
                skipped += batch.skipped_invalid
                reporter.advance(finished + batch.skipped_invalid,
                                 **({"scene": numbers[batch.scene.key]} if scenes.event else {}))
            reporter.advance(writes.drain())
            writer.count_skipped(skipped)
            event_counts = ({"scenes": len(scenes.opened),
                             "failed_scenes": record.notes.get("failed_scenes", [])}
                            if scenes.event else {})
            summary = RunSummary(
                output=str(output),
                run_id=writer.run_id,
                total=len(wanted),
                written=writer.written - already_done,
                already_done=already_done,
                skipped_invalid=skipped,
                seconds=time.perf_counter() - start,
                counts={**(steps.counts(done_chips) if steps and steps.counts else {}),
                        **(task.counts(Path(output)) if task.counts else {}), **event_counts},
            )
            reporter.finish(**summary.as_dict())
    return summary
