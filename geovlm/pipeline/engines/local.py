"""The local engine: the model in this process, reads and preparation overlapping it on threads.

Three stages overlap: the scene's reader threads read chips ahead, a background thread groups
them into batches and prepares batch k+1 (e.g. encodes its images) while the model works on
batch k, and the driver writes the batches before. The stream runs through the scenes without
draining: the last batch of one scene is processed while the first of the next is read and
prepared, so the model never waits at a scene boundary. A batch holds chips of one scene.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass

from rasterio.crs import CRS

from geovlm.pipeline.work_items import ChipRecords, ChipSteps, ProcessedBatch, SceneWork
from geovlm.prefetch import prepared_ahead
from geovlm.scenes.entry import SceneEntry
from geovlm.scenes.tiling import Chip, SceneTiler, TilingOptions

__all__ = ["LocalEngine", "batched"]


def batched(items: Iterable[Chip], size: int) -> Iterator[list[Chip]]:
    """Group chips into lists of at most `size`."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


@dataclass(frozen=True, slots=True)
class _ReadBatch:
    """A batch of one scene's chips as read, and the chips left out under --min-valid before."""

    scene: SceneEntry
    crs: CRS
    chips: list[Chip]
    skipped_invalid: int


def _read_batches(work: Iterable[SceneWork], tiling: TilingOptions, batch_size: int,
                  opened: dict[str, SceneTiler]) -> Generator[_ReadBatch, None, None]:
    """The chips of the work, scene after scene, in batches of at most `batch_size`."""
    for item in work:
        wanted = set(item.chip_ids)
        tiler = opened.pop(item.scene.key, None) or SceneTiler(item.scene.path, tiling)
        with tiler:
            skip = {cell.chip_id for cell in tiler.cells if cell.chip_id not in wanted}
            counted = 0
            with contextlib.closing(tiler.chips(skip=skip)) as chips:
                for batch in batched(chips, batch_size):
                    yield _ReadBatch(item.scene, tiler.info.crs, batch,
                                     tiler.skipped_invalid - counted)
                    counted = tiler.skipped_invalid
            if tiler.skipped_invalid > counted:  # the scene ended on chips left out
                yield _ReadBatch(item.scene, tiler.info.crs, [], tiler.skipped_invalid - counted)


class LocalEngine:
    """Runs the task's steps in this process (see the module's description).

    Parameters
    ----------
    opened
        Scenes the driver has opened already, by `SceneEntry.key`: read through these tilers
        instead of opening them again (each is closed once its scene is read).
    """

    def __init__(self, opened: Mapping[str, SceneTiler] | None = None) -> None:
        self._opened = dict(opened or {})
        self._steps: ChipSteps | None = None

    def start(self, setup: Callable[[], ChipSteps]) -> ChipSteps:
        """Run `setup` (e.g. load the model) here and keep its steps."""
        self._steps = setup()
        return self._steps

    def processed(self, work: Iterable[SceneWork], tiling: TilingOptions,
                  batch_size: int) -> Generator[ProcessedBatch, None, None]:
        """Process the work's chips in order, each batch prepared while the one before runs."""
        steps = self._steps
        if steps is None:
            raise RuntimeError("LocalEngine.start must be called before processed")

        def prepare(batch: _ReadBatch) -> object:
            return steps.prepare(batch.chips) if batch.chips else None

        # Closed in reverse order: the prepare thread first, then the scene being read.
        with (
            contextlib.closing(_read_batches(work, tiling, batch_size, self._opened))
            as batches,
            contextlib.closing(prepared_ahead(batches, prepare)) as prepared_batches,
        ):
            for batch, prepared in prepared_batches:
                records = steps.process(batch.chips, prepared) if batch.chips else ChipRecords([])
                yield ProcessedBatch(batch.scene, batch.crs,
                                     [chip.footprint for chip in batch.chips], records,
                                     batch.skipped_invalid)
