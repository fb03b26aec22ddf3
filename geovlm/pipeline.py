"""The loop every per-chip command shares: tile, skip what is done, process in batches, write.

A run writes one record per chip to its chip layer and, for tasks about the objects within
chips (``refer``), their records to a further layer, always before their chip's record: a chip
is done once its record is written, so a re-run resumes chip by chip and leaves out the objects
of an unfinished chip that are already written. Three stages overlap: a background thread
reads and prepares batch k+1 (e.g. encodes its images) while the model works on batch k, and
another writes the batches before. The input and then the output are checked (and the output
locked) before the task's costly setup, such as loading a model, so a refused output costs no
load. Batches are written in transactions of at most half a second's work (see
`geovlm.grouped_writes`), so a killed run loses at most that and a re-run picks up where it
stopped.
On any exception, including an interrupt, the background threads are joined, in order, before
the output and the scene close: what was processed is written and the run is marked
``interrupted``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geovlm.gpkg import FieldType, GeoPackageWriter, LayerSpec
from geovlm.grouped_writes import LayerRows, OrderedWrites, new_rows
from geovlm.prefetch import prepared_ahead
from geovlm.progress import ProgressMode, ProgressReporter
from geovlm.runs import RunRecord
from geovlm.scene import SceneInfo
from geovlm.tiling import Chip, SceneTiler, TilingOptions
from geovlm.versions import library_versions
from geovlm.work_items import ChipSteps

__all__ = ["RunSummary", "batched", "chip_run_record", "run_over_chips"]

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


#: Beyond this many times the scene's own resolution, --gsd upsampling only shows a model blur.
_MAX_UPSAMPLING = 4.0


def batched(items: Iterable[Chip], size: int) -> Iterator[list[Chip]]:
    """Group chips into lists of at most `size`."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _warn_about_scale(info: SceneInfo, tiling: TilingOptions) -> None:
    """Warn before any chip is read when the chosen ground distance does not suit the scene.

    Two cases: chips upsampled beyond `_MAX_UPSAMPLING` (a model's coarse training resolution
    on a coarser scene shows it only blur), and a whole scene too small for one chip, which
    gives one chip, mostly padding, that ``--min-valid`` then skips: a run that writes nothing.
    """
    res_x, res_y = info.resolution_m
    native = min(res_x, res_y)
    if tiling.gsd is not None and native / tiling.gsd > _MAX_UPSAMPLING:
        logger.warning(
            "the scene's pixels are %.1f m but chips are resampled to %.2f m, so they show"
            " %.0fx upsampled blur; pass a coarser --gsd (or --native-gsd to classify)",
            native, tiling.gsd, native / tiling.gsd,
        )
    chip_m = tiling.size * (tiling.gsd if tiling.gsd is not None else native)
    covered = min(1.0, info.width * res_x / chip_m) * min(1.0, info.height * res_y / chip_m)
    if covered < tiling.min_valid:
        logger.warning(
            "%s covers %.0f x %.0f m, %.0f%% of one %d px chip of %.0f m, so --min-valid %g"
            " skips it; pass --native-gsd (classify), a smaller --gsd or --size, or a lower"
            " --min-valid",
            info.path, info.width * res_x, info.height * res_y, 100 * covered, tiling.size,
            chip_m, tiling.min_valid,
        )


def chip_run_record(
    command: str,
    scene: str | Path,
    tiler: SceneTiler,
    parameters: Mapping[str, Any],
    extra_versions: Mapping[str, str] | None = None,
) -> RunRecord:
    """The ``runs`` record of a per-chip command: scene, tiling, scale, parameters, versions.

    Parameters
    ----------
    command
        The command's name.
    scene
        The input raster as given.
    tiler
        Its open chip grid.
    parameters
        The command's other parameters.
    extra_versions
        Versions of the libraries the command relies on beyond the base ones.

    Returns
    -------
    RunRecord
        Whose signature decides whether an existing output is resumed.
    """
    return RunRecord(
        command=command,
        parameters={
            "scene": str(Path(scene).resolve()) if Path(scene).exists() else str(scene),
            "tiling": tiler.options.as_dict(),
            # Chips are cut by ground distance: a scene whose measured scale changed (e.g. an
            # output of a version that took Web Mercator units for metres) has another grid.
            "scene_resolution_m": [round(r, 6) for r in tiler.info.resolution_m],
            **parameters,
        },
        versions={**library_versions(), **(extra_versions or {})},
    )


def run_over_chips(
    scene: str | Path,
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
    id_field: str = "chip_id",
    chip_layer: LayerSpec | None = None,
    check: Callable[[SceneTiler], None] | None = None,
) -> RunSummary:
    """Run a task's steps over the chips of a scene and stream its records to a GeoPackage.

    Parameters
    ----------
    scene
        The input raster.
    output
        The ``.gpkg`` to write or resume.
    command
        The command's name, recorded in the ``runs`` table.
    tiling
        How the scene is cut.
    parameters
        The command's other parameters; with `command`, `scene` and `tiling` they decide
        whether an existing output is resumed.
    layer, fields, style_qml, id_field
        The layer named in the ``runs`` table, its schema, style and id field: the chip layer,
        unless `chip_layer` is given. A chip layer's records also need ``chip_id``, ``row``,
        ``col`` and ``valid_fraction`` in its fields; a layer listing ``run_id`` gets it filled.
    setup
        Makes the task's steps (e.g. loads the model); called once the scene has been opened
        and the output checked, locked and found new or resumable, so a refusal never waits
        for it.
    batch_size
        Chips per call of `process`; a write takes one or more batches (`geovlm.grouped_writes`).
    progress
        How progress is reported.
    overwrite
        Start afresh, replacing an existing output instead of resuming it.
    extra_versions
        Versions of the libraries `process` relies on, recorded with the run.
    chip_layer
        The chip layer when `layer` holds the chips' objects (`ChipRecords.others`).
    check
        Reads and checks the task's other inputs against the open scene (e.g. footprints),
        before the output is touched.

    Returns
    -------
    RunSummary
        Counts and timing; `RunSummary.written` counts records of `layer`.

    Raises
    ------
    OutputError
        The output is refused (see `GeoPackageWriter`), before `setup` is called.
    """
    start = time.perf_counter()
    with SceneTiler(scene, tiling) as tiler:
        if check is not None:
            check(tiler)
        run = chip_run_record(command, scene, tiler, parameters, extra_versions)
        writer = GeoPackageWriter(
            output, layer=layer, fields=fields, crs=tiler.info.crs, run=run,
            style_qml=style_qml, overwrite=overwrite, id_field=id_field,
            extra_layers=[chip_layer] if chip_layer else [],
        )
        layers = [layer] + ([chip_layer.name] if chip_layer else [])
        with writer:
            steps = setup()
            # After setup, so that a refusal or a missing model stays the only line printed.
            _warn_about_scale(tiler.info, tiling)
            writer.begin()
            done_chips = writer.done_ids_of(layers[-1])
            cells = {cell.chip_id for cell in tiler.cells}
            wanted = cells if steps.wanted is None else cells & steps.wanted
            already_done = len(writer.done_ids)
            with (
                ProgressReporter(progress, len(wanted), "chips", output=str(output),
                                 run_id=writer.run_id, layers=layers) as reporter,
                OrderedWrites(writer, layers) as writes,
                # Closed first, in reverse order: the prepare thread, then the reads ahead.
                contextlib.closing(tiler.chips(skip=done_chips | (cells - wanted))) as chips,
                contextlib.closing(prepared_ahead(batched(chips, batch_size), steps.prepare))
                as prepared_batches,
            ):
                reporter.resume(len(done_chips & wanted))
                skipped_before = 0
                for batch, prepared in prepared_batches:
                    records = steps.process(batch, prepared)
                    others = [new_rows(writer, part) for part in records.others]
                    for part in others:
                        if steps.kept is not None:
                            steps.kept(part)
                    chips_part = LayerRows(layers[-1], records.chips,
                                           [chip.footprint for chip in batch])
                    finished = writes.submit([*others, new_rows(writer, chips_part)])
                    newly_skipped = tiler.skipped_invalid - skipped_before
                    skipped_before = tiler.skipped_invalid
                    reporter.advance(finished + newly_skipped)
                reporter.advance(writes.drain() + tiler.skipped_invalid - skipped_before)
                writer.count_skipped(tiler.skipped_invalid)
                summary = RunSummary(
                    output=str(output),
                    run_id=writer.run_id,
                    total=len(wanted),
                    written=writer.written - already_done,
                    already_done=already_done,
                    skipped_invalid=tiler.skipped_invalid,
                    seconds=time.perf_counter() - start,
                    counts=steps.counts(done_chips) if steps.counts else {},
                )
                reporter.finish(**summary.as_dict())
    return summary

