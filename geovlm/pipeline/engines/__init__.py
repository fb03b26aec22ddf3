"""Engines: where a task's model runs over a run's work items, for the driver that alone writes.

``local`` (`geovlm.pipeline.engines.local.LocalEngine`): threads in this process. ``ray``
(`geovlm.pipeline.engines.ray`): Ray Data actor pools hold the model and read their own items.
Both take the same work (`geovlm.pipeline.work_items.SceneWork`: paths and item ids, never
pixels) and give back the same `geovlm.pipeline.work_items.ProcessedBatch`, so the driver's loop
is one, whether the items are chips of a grid or crops around buildings.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from typing import Protocol

from geovlm.pipeline.work_items import ChipSteps, ItemOpener, ProcessedBatch, SceneWork

__all__ = ["ChipEngine"]


class ChipEngine(Protocol):
    """Runs a task's steps over work items and gives back processed batches."""

    def start(self, setup: Callable[[], ChipSteps]) -> ChipSteps | None:
        """Get ready to process (load the model here, or connect to a cluster).

        Returns the steps when they run in this process, so the driver can use their
        `ChipSteps.wanted`, `ChipSteps.kept` and `ChipSteps.counts`; None when `setup` runs
        elsewhere (then the task must not need them).
        """
        ...

    def processed(self, work: Iterable[SceneWork], opener: ItemOpener,
                  batch_size: int) -> Generator[ProcessedBatch, None, None]:
        """Process every item of `work` (a scene not open yet is opened with `opener`).

        Each item id comes back exactly once, as a record or counted in
        `ProcessedBatch.skipped_invalid` (under ``--min-valid``); batches may come back in any
        order. Closing the iterator stops the work and waits for what is running.
        """
        ...
