"""The loop every per-chip command shares: tile, skip what is done, process in batches, write.

Three stages overlap: a background thread reads and prepares batch k+1 (e.g. encodes its images)
while the model works on batch k, and another writes the batches before. The input and then the
output are checked (and the output locked) before the task's costly setup, such as loading a
model, so a refused output costs no load. Batches are written in transactions of at most half a
second's work (see `_OrderedWrites`), so a killed run loses at most that and a re-run picks up
where it stopped. On any exception, including an interrupt, the background threads are joined,
in order, before the output and the scene close: what was processed is written and the run is
marked ``interrupted``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shapely.geometry.base import BaseGeometry

from geovlm.gpkg import FieldType, GeoPackageWriter
from geovlm.prefetch import prepared_ahead
from geovlm.progress import ProgressMode, ProgressReporter
from geovlm.runs import RunRecord
from geovlm.scene import SceneInfo
from geovlm.tiling import Chip, SceneTiler, TilingOptions
from geovlm.versions import library_versions

__all__ = [
    "ChipPreparer", "ChipProcessor", "ChipSteps", "RunSummary", "batched", "chip_run_record",
    "run_over_chips",
]

logger = logging.getLogger(__name__)

#: The CPU-side work on a batch (e.g. encoding images for the model); runs in a background
#: thread one batch ahead of `ChipProcessor`, together with reading the batch's chips.
ChipPreparer = Callable[[list[Chip]], Any]
#: Turns a batch of chips and what `ChipPreparer` made of it into one record per chip, in order.
ChipProcessor = Callable[[list[Chip], Any], list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class ChipSteps:
    """A task's two steps on a batch, made by its setup once the output has been accepted.

    Attributes
    ----------
    prepare
        CPU-side work on a batch, done one batch ahead on a background thread.
    process
        Turns a batch of chips and its prepared form into records, one per chip, in order.
    """

    prepare: ChipPreparer
    process: ChipProcessor


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
        }


#: A write is queued once this long has passed since the previous one (or `_GROUP_ROWS` records
#: wait): each GDAL write reopens the GeoPackage and holds the GIL for about 10-15 ms whatever its
#: size, which stalls every other stage, so fast runs write a few large transactions a second.
_GROUP_SECONDS = 0.5
#: Most records held back for one write.
_GROUP_ROWS = 512
#: Beyond this many times the scene's own resolution, --gsd upsampling only shows a model blur.
_MAX_UPSAMPLING = 4.0


class _OrderedWrites:
    """Writes batches on one background thread while the next batches are being processed.

    Batches are grouped: one write takes every batch submitted since the previous write was
    queued, at most `_GROUP_SECONDS` (or `_GROUP_ROWS` records) later, so a slow run still writes
    each batch at once and a fast one no longer pays a GDAL write, and its hold on the GIL, per
    batch. At most one write is in flight, so batches land in order and a failure surfaces at
    the next write or at the end; leaving the block, even on an error, writes what is held back
    (unless the write in flight failed) and waits for it.
    """

    def __init__(self, writer: GeoPackageWriter) -> None:
        self._writer = writer
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="geovlm-write")
        self._pending: Future[None] | None = None
        self._pending_size = 0
        self._rows: list[dict[str, Any]] = []
        self._geometries: list[BaseGeometry] = []
        self._queued_at = -math.inf
        self._failed = False

    def __enter__(self) -> _OrderedWrites:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._pending is not None and self._pending.exception() is not None:
                return
            if self._rows and not self._failed:
                self._queue().exception()
        finally:
            self._pool.shutdown(wait=True)

    def submit(self, rows: list[dict[str, Any]], geometries: list[BaseGeometry]) -> int:
        """Hold a batch for the next write; returns how many records writes finished since."""
        self._rows.extend(rows)
        self._geometries.extend(geometries)
        due = time.perf_counter() - self._queued_at >= _GROUP_SECONDS
        if due or len(self._rows) >= _GROUP_ROWS:
            finished = self._wait()
            self._queue()
            return finished
        if self._pending is not None and self._pending.done():
            return self._wait()
        return 0

    def drain(self) -> int:
        """Write what is held back and wait (raising a write's error); returns records written."""
        finished = self._wait()
        if self._rows:
            self._queue()
        return finished + self._wait()

    def _queue(self) -> Future[None]:
        """Start writing the held-back records (no write may be in flight)."""
        rows, geometries = self._rows, self._geometries
        self._rows, self._geometries = [], []
        self._pending = self._pool.submit(self._writer.write, rows, geometries)
        self._pending_size = len(rows)
        self._queued_at = time.perf_counter()
        return self._pending

    def _wait(self) -> int:
        """Wait for the write in flight (raising its error); returns how many records it wrote."""
        if self._pending is None:
            return 0
        pending, self._pending = self._pending, None
        if pending.exception() is not None:
            self._failed = True
        pending.result()
        return self._pending_size


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
) -> RunSummary:
    """Run `process` over every valid chip of a scene and stream its records to a GeoPackage.

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
    layer, fields, style_qml
        The layer written and its schema and style; every record also gets ``chip_id``,
        ``row``, ``col`` and ``valid_fraction``, which `fields` must list, and ``run_id``
        where `fields` lists it.
    setup
        Makes the task's steps (e.g. loads the model); called once the scene has been opened
        and the output checked, locked and found new or resumable, so a refusal never waits
        for it.
    batch_size
        Chips per call of `process`; a write takes one or more batches (`_OrderedWrites`).
    progress
        How progress is reported.
    overwrite
        Start afresh, replacing an existing output instead of resuming it.
    extra_versions
        Versions of the libraries `process` relies on, recorded with the run.

    Returns
    -------
    RunSummary
        Counts and timing.

    Raises
    ------
    OutputError
        The output is refused (see `GeoPackageWriter`), before `setup` is called.
    """
    start = time.perf_counter()
    with SceneTiler(scene, tiling) as tiler:
        run = chip_run_record(command, scene, tiler, parameters, extra_versions)
        writer = GeoPackageWriter(
            output, layer=layer, fields=fields, crs=tiler.info.crs, run=run,
            style_qml=style_qml, overwrite=overwrite,
        )
        with writer:
            steps = setup()
            # After setup, so that a refusal or a missing model stays the only line printed.
            _warn_about_scale(tiler.info, tiling)
            writer.begin()
            with (
                ProgressReporter(progress, len(tiler), "chips", output=str(output),
                                 run_id=writer.run_id, layers=[layer]) as reporter,
                _OrderedWrites(writer) as writes,
                # Closed first, in reverse order: the prepare thread, then the reads ahead.
                contextlib.closing(tiler.chips(skip=writer.done_ids)) as chips,
                contextlib.closing(prepared_ahead(batched(chips, batch_size), steps.prepare))
                as prepared_batches,
            ):
                already_done = len(writer.done_ids)
                reporter.resume(already_done)
                skipped_before = 0
                for batch, prepared in prepared_batches:
                    records = steps.process(batch, prepared)
                    if "run_id" in fields:
                        records = [{**record, "run_id": writer.run_id} for record in records]
                    finished = writes.submit(records, [chip.footprint for chip in batch])
                    newly_skipped = tiler.skipped_invalid - skipped_before
                    skipped_before = tiler.skipped_invalid
                    reporter.advance(finished + newly_skipped)
                reporter.advance(writes.drain() + tiler.skipped_invalid - skipped_before)
                writer.count_skipped(tiler.skipped_invalid)
                summary = RunSummary(
                    output=str(output),
                    run_id=writer.run_id,
                    total=len(tiler),
                    written=writer.written - already_done,
                    already_done=already_done,
                    skipped_invalid=tiler.skipped_invalid,
                    seconds=time.perf_counter() - start,
                )
                reporter.finish(**summary.as_dict())
    return summary
