"""Overlap CPU-side preparation with the caller's work: one item prepared ahead on a thread."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["prepared_ahead"]

T = TypeVar("T")
U = TypeVar("U")


def prepared_ahead(
    items: Iterable[T], prepare: Callable[[T], U]
) -> Generator[tuple[T, U], None, None]:
    """Yield ``(item, prepare(item))`` in order, fetching and preparing the next item on a thread.

    While the caller works on one item (e.g. a model forward, which releases the GIL), the next
    is taken from `items` and prepared in the background, so reading and encoding cost no wall
    time beyond the first item. Only the worker thread advances `items`; closing the generator
    waits for that thread, so `items` can be closed safely afterwards.

    Parameters
    ----------
    items
        The work, possibly a lazy iterator (e.g. chips still to be read).
    prepare
        The CPU-side step applied to each item.

    Yields
    ------
    tuple
        Each item with its prepared form.

    Examples
    --------
    >>> list(prepared_ahead([1, 2, 3], lambda x: x * 10))
    [(1, 10), (2, 20), (3, 30)]
    """
    iterator = iter(items)

    def pull() -> tuple[T, U] | None:
        try:
            item = next(iterator)
        except StopIteration:
            return None
        return item, prepare(item)

    with ThreadPoolExecutor(1, thread_name_prefix="geovlm-prepare") as pool:
        pending = pool.submit(pull)
        while (result := pending.result()) is not None:
            pending = pool.submit(pull)
            yield result
