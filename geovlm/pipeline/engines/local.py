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
from typing import TypeVar

from rasterio.crs import CRS

from geovlm.pipeline.work_items import (
    ChipRecords,
    ChipSteps,
    ItemOpener,
    ItemSource,
    ProcessedBatch,
    SceneWork,
    WorkItem,
)
from geovlm.prefetch import prepared_ahead
from geovlm.scenes.entry import SceneEntry

__all__ = ["LocalEngine", "batched"]

T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Group items into lists of at most `size`."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


@dataclass(frozen=True, slots=True)
class _ReadBatch:
    """A batch of one scene's items as read, and the items left out under --min-valid before."""

    scene: SceneEntry
    crs: CRS
    items: list[WorkItem]
    skipped_invalid: int


def _read_batches(work: Iterable[SceneWork], opener: ItemOpener, batch_size: int,
                  opened: dict[str, ItemSource]) -> Generator[_ReadBatch, None, None]:
    """The items of the work, scene after scene, in batches of at most `batch_size`."""
    for item in work:
        wanted = set(item.item_ids)
        source = opened.pop(item.scene.key, None) or opener(item.scene.path)
        with source:
            skip = {item_id for item_id in source.item_ids() if item_id not in wanted}
            counted = 0
            with contextlib.closing(source.items(skip=skip)) as items:
                for batch in batched(items, batch_size):
                    yield _ReadBatch(item.scene, source.info.crs, batch,
                                     source.skipped_invalid - counted)
                    counted = source.skipped_invalid
            if source.skipped_invalid > counted:  # the scene ended on items left out
                yield _ReadBatch(item.scene, source.info.crs, [],
                                 source.skipped_invalid - counted)


class LocalEngine:
    """Runs the task's steps in this process (see the module's description).

    Parameters
    ----------
    opened
        Scenes the driver has opened already, by `SceneEntry.key`: read through these sources
        instead of opening them again (each is closed once its scene is read).
    """

    def __init__(self, opened: Mapping[str, ItemSource] | None = None) -> None:
        self._opened = dict(opened or {})
        self._steps: ChipSteps | None = None

    def start(self, setup: Callable[[], ChipSteps]) -> ChipSteps:
        """Run `setup` (e.g. load the model) here and keep its steps."""
        self._steps = setup()
        return self._steps

    def processed(self, work: Iterable[SceneWork], opener: ItemOpener,
                  batch_size: int) -> Generator[ProcessedBatch, None, None]:
        """Process the work's items in order, each batch prepared while the one before runs."""
        steps = self._steps
        if steps is None:
            raise RuntimeError("LocalEngine.start must be called before processed")

        def prepare(batch: _ReadBatch) -> object:
            return steps.prepare(batch.items) if batch.items else None

        # Closed in reverse order: the prepare thread first, then the scene being read.
        with (
            contextlib.closing(_read_batches(work, opener, batch_size, self._opened))
            as batches,
            contextlib.closing(prepared_ahead(batches, prepare)) as prepared_batches,
        ):
            for batch, prepared in prepared_batches:
                records = steps.process(batch.items, prepared) if batch.items else ChipRecords([])
                yield ProcessedBatch(batch.scene, batch.crs,
                                     [item.footprint for item in batch.items], records,
                                     batch.skipped_invalid)
