"""One queue in front of one model: concurrent requests' items grouped into batches.

Items that can share a model call carry the same key (e.g. the same question and candidate
answers). One thread takes the oldest item, waits at most ``max_wait`` for up to
``max_batch`` items of its key and prepares them together (CPU work: image processing,
tokenizing); another runs the prepared batches on the model, so the next batch is prepared
while the model runs this one.
Cancelled items (a client gone, a timeout) are dropped before they are prepared and free their
place in the queue at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batcher", "QueueFull"]

log = logging.getLogger(__name__)

Prepare = Callable[[Any, list[Any]], Any]
RunBatch = Callable[[Any, Any], Sequence[Any]]


class QueueFull(Exception):
    """More items than the queue holds (answered 503 with ``Retry-After``)."""


@dataclass(slots=True)
class _Item:
    key: Hashable
    payload: Any
    arrived: float
    future: Future[Any] = field(default_factory=Future)


class Batcher:
    """Groups items by key into batches of at most `max_batch`, run one at a time.

    Parameters
    ----------
    prepare
        ``prepare(key, payloads)`` returns the batch's model inputs (run in the taking thread).
    run_batch
        ``run_batch(key, inputs)`` returns one result per payload, in order.
    max_batch
        Most items per call.
    max_wait_s
        Longest the oldest item waits for its batch to fill.
    max_queue
        Most items waiting; `submit` raises `QueueFull` beyond it.
    """

    def __init__(
        self, prepare: Prepare, run_batch: RunBatch, *, max_batch: int, max_wait_s: float,
        max_queue: int,
    ) -> None:
        self._prepare = prepare
        self._run_batch = run_batch
        self._prepared: queue.Queue[tuple[list[_Item], Any] | None] = queue.Queue(maxsize=1)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._queue: list[_Item] = []
        self._changed = threading.Condition()
        self._closed = False
        #: Sizes of the batches run so far (for tests and the benchmark).
        self.batch_sizes: list[int] = []
        self._threads = [
            threading.Thread(
                target=self._take_and_prepare, name="geovlm-serve-prepare", daemon=True
            ),
            threading.Thread(target=self._run, name="geovlm-serve-model", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, key: Hashable, payloads: Sequence[Any]) -> list[Future[Any]]:
        """Queue items that share `key`; each future gets its result.

        Parameters
        ----------
        key
            Items with equal keys may run in one batch.
        payloads
            What `run_batch` receives.

        Returns
        -------
        list of concurrent.futures.Future
            Cancel one to drop its item if it has not started.

        Raises
        ------
        QueueFull
            If the items do not fit in the queue (none is queued).
        """
        now = time.monotonic()
        items = [_Item(key, payload, now) for payload in payloads]
        with self._changed:
            self._queue = [item for item in self._queue if not item.future.cancelled()]
            if len(self._queue) + len(items) > self.max_queue:
                raise QueueFull(f"{len(self._queue)} items are waiting")
            self._queue += items
            self._changed.notify()
        return [item.future for item in items]

    def pending(self) -> int:
        """Items waiting, not counting cancelled ones."""
        with self._changed:
            return sum(not item.future.cancelled() for item in self._queue)

    def close(self) -> None:
        """Stop the worker after the batch it runs; waiting items are cancelled."""
        with self._changed:
            self._closed = True
            for item in self._queue:
                item.future.cancel()
            self._queue.clear()
            self._changed.notify()
        for thread in self._threads:
            thread.join(timeout=30)

    def _take(self) -> list[_Item] | None:
        """Wait for the next batch: the oldest item's key, full or out of waiting time."""
        with self._changed:
            while True:
                self._queue = [item for item in self._queue if not item.future.cancelled()]
                if self._closed:
                    return None
                if not self._queue:
                    self._changed.wait()
                    continue
                first = self._queue[0]
                same = [item for item in self._queue if item.key == first.key]
                left = first.arrived + self.max_wait_s - time.monotonic()
                if len(same) >= self.max_batch or left <= 0:
                    batch = same[: self.max_batch]
                    taken = {id(item) for item in batch}
                    self._queue = [item for item in self._queue if id(item) not in taken]
                    return batch
                self._changed.wait(left)

    def _take_and_prepare(self) -> None:
        while (batch := self._take()) is not None:
            batch = [item for item in batch if item.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                inputs = self._prepare(batch[0].key, [item.payload for item in batch])
            # Any failure goes to every request of the batch; the worker lives on.
            except Exception as exc:
                _fail(batch, exc)
                continue
            self._prepared.put((batch, inputs))
        self._prepared.put(None)

    def _run(self) -> None:
        while (prepared := self._prepared.get()) is not None:
            batch, inputs = prepared
            self.batch_sizes.append(len(batch))
            try:
                results = self._run_batch(batch[0].key, inputs)
            except Exception as exc:
                _fail(batch, exc)
                continue
            for item, result in zip(batch, results, strict=True):
                item.future.set_result(result)


def _fail(batch: list[_Item], exc: Exception) -> None:
    for item in batch:
        item.future.set_exception(exc)
