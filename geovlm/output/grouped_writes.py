"""Write a run's records on a background thread, in order, grouped into few transactions.

Each GDAL write reopens the GeoPackage and holds the GIL for about 10-15 ms whatever its size,
which stalls every other stage of `geovlm.pipeline.driver`, so records are held back and written a
few times a second, every layer of a group in one go, the chip layer last.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from shapely.geometry.base import BaseGeometry

from geovlm.output.geopackage import GeoPackageWriter

__all__ = ["LayerRows", "OrderedWrites", "new_rows"]

#: A write is queued once this long has passed since the previous one (or `_GROUP_ROWS` records
#: wait), so fast runs write a few large transactions a second.
_GROUP_SECONDS = 0.5
#: Most records held back for one write.
_GROUP_ROWS = 512


@dataclass(frozen=True, slots=True)
class LayerRows:
    """Records of one layer with their geometries, in the layer's CRS."""

    layer: str
    rows: list[dict[str, Any]]
    geometries: list[BaseGeometry]


class OrderedWrites:
    """Writes batches on one background thread while the next batches are being processed.

    Batches are grouped: one write takes every batch submitted since the previous write was
    queued, at most `_GROUP_SECONDS` (or `_GROUP_ROWS` records) later, so a slow run still writes
    each batch at once and a fast one no longer pays a GDAL write, and its hold on the GIL, per
    batch. A write goes through `layers` in order, the chip layer last, so a chip's record never
    lands before its objects'. At most one write is in flight, so batches land in order and a
    failure surfaces at the next write or at the end; leaving the block, even on an error,
    writes what is held back (unless the write in flight failed) and waits for it.

    Parameters
    ----------
    writer
        The output, begun.
    layers
        Its layers in the order a write goes through them, the chip layer last.
    """

    def __init__(self, writer: GeoPackageWriter, layers: list[str]) -> None:
        self._writer = writer
        self._layers = layers
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="geovlm-write")
        self._pending: Future[None] | None = None
        self._pending_chips = 0
        self._held = self._empty()
        self._queued_at = -math.inf
        self._failed = False

    def __enter__(self) -> OrderedWrites:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._pending is not None and self._pending.exception() is not None:
                return
            if self._held_rows() and not self._failed:
                self._queue().exception()
        finally:
            self._pool.shutdown(wait=True)

    def submit(self, batch: list[LayerRows]) -> int:
        """Hold a batch's records for the next write; returns how many chips writes finished."""
        for part in batch:
            held = self._held[part.layer]
            held.rows.extend(part.rows)
            held.geometries.extend(part.geometries)
        due = time.perf_counter() - self._queued_at >= _GROUP_SECONDS
        if due or self._held_rows() >= _GROUP_ROWS:
            finished = self._wait()
            self._queue()
            return finished
        if self._pending is not None and self._pending.done():
            return self._wait()
        return 0

    def drain(self) -> int:
        """Write what is held back and wait (raising a write's error); returns chips written."""
        finished = self._wait()
        if self._held_rows():
            self._queue()
        return finished + self._wait()

    def _empty(self) -> dict[str, LayerRows]:
        return {layer: LayerRows(layer, [], []) for layer in self._layers}

    def _held_rows(self) -> int:
        return sum(len(held.rows) for held in self._held.values())

    def _write(self, parts: list[LayerRows]) -> None:
        for part in parts:
            if part.rows:
                self._writer.write(part.rows, part.geometries, layer=part.layer)

    def _queue(self) -> Future[None]:
        """Start writing the held-back records (no write may be in flight)."""
        parts, self._held = list(self._held.values()), self._empty()
        self._pending = self._pool.submit(self._write, parts)
        self._pending_chips = len(parts[-1].rows)
        self._queued_at = time.perf_counter()
        return self._pending

    def _wait(self) -> int:
        """Wait for the write in flight (raising its error); returns how many chips it wrote."""
        if self._pending is None:
            return 0
        pending, self._pending = self._pending, None
        if pending.exception() is not None:
            self._failed = True
        pending.result()
        return self._pending_chips


def new_rows(writer: GeoPackageWriter, part: LayerRows) -> LayerRows:
    """`part` without the records already in its layer, each with the ``run_id`` it lists.

    Parameters
    ----------
    writer
        The output, begun.
    part
        Records of one of its layers.

    Returns
    -------
    LayerRows
        The records still to write (e.g. the objects of a chip a killed run left unfinished
        that it did not write), with ``run_id`` filled where the layer has that field.
    """
    spec = writer.layer_spec(part.layer)
    done = writer.done_ids_of(part.layer)
    kept = [i for i, row in enumerate(part.rows) if str(row[spec.id_field]) not in done]
    run_id = {"run_id": writer.run_id} if "run_id" in spec.fields else {}
    return LayerRows(part.layer, [{**part.rows[i], **run_id} for i in kept],
                     [part.geometries[i] for i in kept])
