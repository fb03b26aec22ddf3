"""Read windows of one scene into RGB images: threaded, bounded ahead, one handle per thread.

GDAL releases the GIL while it decodes, so reads run on a small thread pool, each thread with
its own dataset handle (GDAL datasets must not be shared between threads), at most a few
windows ahead of the consumer, so memory does not grow with the scene. GDAL's block cache is
capped for as long as a read runs. What a window is (a grid cell, the box around a building)
is the caller's business: `geovlm.scenes.tiling` lays out the chip grid.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import rasterio
from PIL import Image
from rasterio.enums import MaskFlags, Resampling
from rasterio.env import get_gdal_config, set_gdal_config
from rasterio.errors import RasterioError
from rasterio.windows import Window

from geovlm.errors import InputError
from geovlm.scenes.scene import PixelStretch, SceneInfo, pixel_stretch

__all__ = ["SceneReader", "WindowImage"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class WindowImage:
    """A window read as an RGB image, and the share of its pixels that hold data."""

    image: Image.Image
    valid_fraction: float


@contextmanager
def _block_cache_cap(cap: object) -> Iterator[None]:
    """Hold GDAL's process-wide block cache at `cap` bytes while a scene is read.

    The reader threads' own `rasterio.Env` sets the cap on entry but restores the previous one on
    exit, so without this the cap would lapse between reads while another thread decodes.
    """
    previous = get_gdal_config("GDAL_CACHEMAX")
    set_gdal_config("GDAL_CACHEMAX", cap)
    try:
        yield
    finally:
        if previous is not None:
            set_gdal_config("GDAL_CACHEMAX", previous)


class SceneReader:
    """Reads windows of an opened scene into images; `close` it (or use it as a context manager).

    Parameters
    ----------
    info
        The scene, opened and checked (`geovlm.scenes.scene.open_scene`).
    nodata
        A fill value to treat as invalid, for scenes that use one without declaring it.
    workers
        Reader threads; None uses one per CPU core, at most four.
    """

    def __init__(self, info: SceneInfo, nodata: float | None = None,
                 workers: int | None = None) -> None:
        self.info = info
        self.nodata = nodata
        self.workers = workers or min(4, os.cpu_count() or 1)
        # Computed on the first read (it reads an overview of the whole scene): a scene opened
        # for its grid alone, e.g. to survey an event's scenes, costs a header read.
        self._stretch: PixelStretch | None = None
        self._local = threading.local()
        self._handles: list[rasterio.DatasetReader] = []
        self._pools: set[ThreadPoolExecutor] = set()
        self._lock = threading.Lock()  # guards the handles, the pools and the stretch

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the reader threads, then close their dataset handles.

        A `read_ahead` iteration left open (e.g. by an error in the caller's loop) still has
        reads queued and running: they are cancelled or awaited first, so no handle is ever
        closed under a running read.
        """
        with self._lock:
            pools = list(self._pools)
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._close_handles()

    def read_ahead(self, items: Iterable[T], read: Callable[[T], R]) -> Generator[R, None, None]:
        """``read(item)`` for every item on the thread pool, yielded in order, a few ahead.

        Parameters
        ----------
        items
            What to read (e.g. grid cells), in the order wanted.
        read
            Reads one item, typically through `read_window`; runs on a reader thread.

        Yields
        ------
        object
            Each item's result, in order.
        """
        todo = iter(items)
        ahead = 2 * self.workers
        with (
            _block_cache_cap(self.info.gdal_options["GDAL_CACHEMAX"]),
            ThreadPoolExecutor(self.workers, thread_name_prefix="geovlm-read") as pool,
        ):
            with self._lock:
                self._pools.add(pool)
            try:
                pending: deque[Future[R]] = deque()
                for item in todo:
                    pending.append(pool.submit(read, item))
                    if len(pending) >= ahead:
                        break
                while pending:
                    result = pending.popleft().result()
                    following = next(todo, None)
                    if following is not None:
                        pending.append(pool.submit(read, following))
                    yield result
            finally:
                # Left early (closed, or an error): drop the reads not started yet.
                pool.shutdown(wait=True, cancel_futures=True)
                with self._lock:
                    self._pools.discard(pool)
                    if not self._pools:
                        # The pool's threads are gone and a later call has threads (and so
                        # handles) of its own: an actor reading a scene row by row
                        # (`geovlm.pipeline.engines.ray`) would otherwise pile up open files.
                        self._close_handles()

    def read_window(self, window: Window, out_shape: tuple[int, int], size: int,
                    min_valid: float = 0.0) -> WindowImage | None:
        """Read a window resampled to `out_shape`, padded with black to `size` x `size`.

        Parameters
        ----------
        window
            Source pixels, inside the scene.
        out_shape
            ``(height, width)`` the window is resampled to (averaging when shrinking).
        size
            Edge of the square image; the padding beyond `out_shape` counts as invalid.
        min_valid
            Below this valid fraction no image is made and None is returned.

        Returns
        -------
        WindowImage or None
            The image and its valid fraction, or None under `min_valid`.

        Raises
        ------
        InputError
            A block of the scene cannot be read (truncated or corrupt file).
        """
        out_h, out_w = out_shape
        resampling = Resampling.average if window.width > out_w else Resampling.bilinear
        try:
            with rasterio.Env(**self.info.gdal_options):
                dataset = self._dataset()
                data = dataset.read(self.info.bands, window=window,
                                    out_shape=(len(self.info.bands), out_h, out_w),
                                    resampling=resampling)
                mask = self._valid_mask(dataset, window, data, out_shape)
        except RasterioError as exc:
            raise InputError(
                f"{self.info.path} is truncated or corrupt: GDAL could not read"
                f" {window!r} ({exc})."
            ) from exc
        valid = (float(np.count_nonzero(mask)) if mask is not None else out_h * out_w)
        valid_fraction = valid / (size * size)
        if valid_fraction < min_valid:
            return None
        return WindowImage(self._image(data, mask, size), valid_fraction)

    @property
    def stretch(self) -> PixelStretch:
        """The scene-wide pixel stretch, computed on first use (it reads an overview)."""
        with self._lock:
            if self._stretch is None:
                self._stretch = pixel_stretch(self.info, self.nodata)
            return self._stretch

    def _close_handles(self) -> None:
        """Close the reader threads' dataset handles; call with the lock held, no read running."""
        for handle in self._handles:
            handle.close()
        self._handles.clear()

    def _dataset(self) -> rasterio.DatasetReader:
        """Return this thread's own handle: GDAL datasets must not be shared between threads."""
        handle = getattr(self._local, "dataset", None)
        if handle is None:
            handle = rasterio.open(self.info.path)
            self._local.dataset = handle
            with self._lock:
                self._handles.append(handle)
        return handle

    def _image(self, data: np.ndarray, valid: np.ndarray | None, size: int) -> Image.Image:
        """The RGB image of band-first pixels, padded to `size`."""
        _, out_h, out_w = data.shape
        stretch = self.stretch
        if stretch.low is None and data.dtype == np.uint8 and out_h == out_w == size:
            # uint8 pass-through: PIL interleaves the planes itself, which saves numpy's strided
            # band-first to pixel-interleaved copy and the padding copy (same pixels).
            if valid is not None:
                data[:, ~valid] = 0
            planes = [Image.fromarray(band) for band in data]
            return Image.merge("RGB", planes * 3 if len(planes) == 1 else planes)
        rgb = stretch.to_rgb(data, valid)
        if out_h != size or out_w != size:
            padded = np.zeros((size, size, 3), dtype=np.uint8)
            padded[:out_h, :out_w] = rgb
            rgb = padded
        return Image.fromarray(rgb)

    def _valid_mask(self, dataset: rasterio.DatasetReader, window: Window, data: np.ndarray,
                    shape: tuple[int, int]) -> np.ndarray | None:
        """Boolean validity of the read pixels, or None where every pixel is valid."""
        nodata = self.nodata if self.nodata is not None else dataset.nodata
        if nodata is not None:
            invalid = np.isnan(data) if math.isnan(nodata) else data == nodata
            return ~invalid.all(axis=0)
        flags = dataset.mask_flag_enums[self.info.bands[0] - 1]
        if MaskFlags.all_valid in flags:
            return None
        masks = dataset.read_masks(self.info.bands[0], window=window, out_shape=shape,
                                   resampling=Resampling.nearest)
        return masks > 0
