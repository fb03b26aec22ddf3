"""CPU fast paths for Qwen-VL models, each exact within float rounding; see ``bench/classify.py``.

- `QwenPatches`: chips that Qwen-VL's image processor would not resize are cut into patches
  straight from their uint8 pixels, bit-identical to the processor (the backend checks it against
  the processor on its first batch), instead of the processor's generic convert-rescale-normalise
  pipeline. Each value depends only on its channel and 8-bit code, so the processor's results for
  the 256 codes decide it: where ``(code - mean) / std`` in float32 reproduces all of them, that
  arithmetic runs (about twice as fast as a table lookup); otherwise the table itself is used.
- `patch_embeddings_as_matmul`: a vision tower's Conv3d patch embedding, whose kernel equals its
  stride, runs as the matrix product it is (float64 accumulation, so the same numbers whatever the
  batch) instead of a 3-D convolution over 1x1x1 outputs, several times slower on CPUs.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = ["QwenPatches", "patch_embeddings_as_matmul"]


#: Rows per matrix product in `_conv3d_as_linear`. Every product has exactly this many rows
#: (the last padded with zeros), so a patch's result does not depend on what else is in the batch.
_PATCH_ROWS = 512


def _conv3d_as_linear(self: torch.nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A float32 patch Conv3d (kernel == stride, one output per patch) as matrix products.

    Each output is one dot product, accumulated in float64 and rounded once: closer to exact
    than the convolution's own float32 sum, and independent of the batch, because BLAS's
    blocking (which depends on the row count) no longer shows in the rounded result. Blocks
    of `_PATCH_ROWS` rows keep the float64 copy small and every product the same shape.
    """
    if x.dtype != torch.float32 or tuple(x.shape[-3:]) != tuple(self.kernel_size):
        return torch.nn.Conv3d.forward(self, x)
    weight = self.weight.reshape(self.out_channels, -1).double()
    bias = None if self.bias is None else self.bias.double()
    rows = x.reshape(x.shape[0], -1)
    n = rows.shape[0]
    block = rows.new_empty((_PATCH_ROWS, rows.shape[1]), dtype=torch.float64)  # reused
    out = rows.new_empty((n, self.out_channels))
    for start in range(0, n, _PATCH_ROWS):
        size = min(_PATCH_ROWS, n - start)
        block[:size].copy_(rows[start : start + size])
        if size < _PATCH_ROWS:
            block[size:].zero_()
        out[start : start + size] = torch.nn.functional.linear(block, weight, bias)[:size]
    return out.view(n, self.out_channels, 1, 1, 1)


def patch_embeddings_as_matmul(model: torch.nn.Module) -> None:
    """Run every non-overlapping Conv3d patch embedding (Qwen-VL vision towers) as `linear`.

    Same mathematics (float rounding aside): each output is the dot product of one flattened
    input patch with one flattened kernel. On CPUs the 3-D convolution computes them one patch
    at a time and is several times slower. Modules wrapped by accelerate hooks are left alone;
    the state dict is unchanged.
    """
    for module in model.modules():
        if (
            type(module) is torch.nn.Conv3d
            and tuple(module.kernel_size) == tuple(module.stride)
            and tuple(module.padding) == (0, 0, 0)
            and tuple(module.dilation) == (1, 1, 1)
            and module.groups == 1
            and not hasattr(module, "_hf_hook")
        ):
            module.forward = types.MethodType(_conv3d_as_linear, module)  # type: ignore[method-assign]


def _exact_affine(
    image_processor: Any, table: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel float32 ``mean`` and ``std`` with ``(code - mean) / std == table``, or None.

    The candidate is the processor's own fusion of rescaling into normalisation (mean and std
    divided by the rescale factor, in float32); it is used only where it reproduces all 256
    codes of every channel bit for bit, which proves it for every pixel.
    """
    if not image_processor.do_normalize:
        return None
    scale = np.float32(1.0 / image_processor.rescale_factor) if image_processor.do_rescale else 1
    mean = (np.asarray(image_processor.image_mean, np.float32) * scale).astype(np.float32)
    std = (np.asarray(image_processor.image_std, np.float32) * scale).astype(np.float32)
    mean, std = np.broadcast_to(mean, (3,)), np.broadcast_to(std, (3,))
    codes = np.arange(256, dtype=np.float32)
    candidate = (codes[None, :] - mean[:, None]) / std[:, None]
    if candidate.dtype != np.float32 or not np.array_equal(
        candidate.view(np.uint32), table.view(np.uint32)
    ):
        return None
    return mean.reshape(3, 1, 1).copy(), std.reshape(3, 1, 1).copy()


class _Recycled:
    """Output arrays handed out again once nothing but this pool refers to them.

    A batch's ``pixel_values`` (about 6 MiB per 512 px chip) would otherwise be fresh memory
    every time, which the kernel must map and zero before the first write: about a tenth of the
    host's CPU time per chip. An array is reused only when its reference count shows that every
    tensor made from it has been freed (e.g. once it was copied to the GPU or scored), so reuse
    never changes a batch somebody still holds.
    """

    def __init__(self, keep: int = 4) -> None:
        self._keep = keep
        self._arrays: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 array of `shape` that nobody else holds, reused where one is free."""
        with self._lock:
            for array in self._arrays:
                # References: the list, the loop variable and getrefcount's argument only.
                if array.shape == shape and sys.getrefcount(array) == 3:
                    return array
            array = np.empty(shape, dtype=np.float32)
            self._arrays = [*self._arrays[-(self._keep - 1) :], array]
            return array


class QwenPatches:
    """Qwen-VL ``pixel_values`` cut straight from uint8 chips the processor would not resize.

    The processor's own path converts, rescales, normalises and patchifies each image through a
    generic pipeline; here one uint8 transpose puts pixels in patch order, then each value comes
    from the processor's own ``rescale_and_normalize`` of the 256 codes: by float32 arithmetic
    proven to give exactly those 256 results, or else by looking them up. Either way the result
    is bit-identical.
    """

    def __init__(self, image_processor: Any, size: dict[str, int] | None) -> None:
        self.patch = image_processor.patch_size
        self.merge = image_processor.merge_size
        self.temporal = image_processor.temporal_patch_size
        self.do_resize = image_processor.do_resize
        bounds = size or image_processor.size
        self.min_pixels, self.max_pixels = bounds["shortest_edge"], bounds["longest_edge"]

        def hashable(value: Any) -> Any:
            return tuple(value) if isinstance(value, list) else value

        codes = torch.arange(256, dtype=torch.uint8).expand(1, 3, 1, 256).contiguous()
        table = image_processor.rescale_and_normalize(
            codes,
            image_processor.do_rescale,
            image_processor.rescale_factor,
            image_processor.do_normalize,
            hashable(image_processor.image_mean),
            hashable(image_processor.image_std),
        )
        self.table = table[0, :, 0].to(torch.float32).numpy()
        self._affine = _exact_affine(image_processor, self.table)
        self._buffers = _Recycled()
        self._pool = ThreadPoolExecutor(
            max(1, torch.get_num_threads()), thread_name_prefix="geovlm-patches"
        )

    @classmethod
    def for_processor(cls, processor: Any, size: dict[str, int] | None) -> QwenPatches | None:
        """The fast path for a Qwen-VL torchvision image processor, or None for any other."""
        try:
            from transformers.models.qwen2_vl.image_processing_qwen2_vl import (
                Qwen2VLImageProcessor,
            )
        except ImportError:  # pragma: no cover - older or newer transformers layouts
            return None
        image_processor = getattr(processor, "image_processor", None)
        if not isinstance(image_processor, Qwen2VLImageProcessor):
            return None
        if getattr(image_processor, "backend", None) != "torchvision":
            return None
        if not (image_processor.do_rescale or image_processor.do_normalize):
            return None
        if not hasattr(processor, "replace_image_token") or not processor.image_token:
            return None
        return cls(image_processor, size)

    def fits(self, images: Sequence[Image.Image]) -> bool:
        """Whether all images are RGB, of one size, and left unresized by the processor."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        width, height = images[0].size
        if any(im.size != (width, height) or im.mode != "RGB" for im in images):
            return False
        factor = self.patch * self.merge
        if height % factor or width % factor:
            return False
        if not self.do_resize:
            return True
        resized = smart_resize(
            height, width, factor=factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )
        return tuple(resized) == (height, width)

    def __call__(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        """``pixel_values`` (patches x channels*temporal*patch*patch) and ``image_grid_thw``.

        Images are cut in parallel on `_pool` (numpy releases the GIL while it copies), each
        into its own rows of one output array.
        """
        width, height = images[0].size
        p, m, t = self.patch, self.merge, self.temporal
        per_image = (height // p) * (width // p)
        out = self._buffers.take((len(images) * per_image, 3, t, p, p))

        def fill(i: int) -> None:
            pixels = np.asarray(images[i])
            blocks = pixels.reshape(height // (p * m), m, p, width // (p * m), m, p, 3)
            # (merged row, merged col, row in merge, col in merge, channel, y, x)
            order = np.ascontiguousarray(blocks.transpose(0, 3, 1, 4, 6, 2, 5))
            order = order.reshape(per_image, 3, p, p)
            rows = out[i * per_image : (i + 1) * per_image]
            if self._affine is not None:
                mean, std = self._affine
                frame = np.subtract(order, mean, dtype=np.float32)
                np.divide(frame, std, out=frame)
            else:
                frame = np.stack([self.table[c][order[:, c]] for c in range(3)], axis=1)
            np.copyto(rows, frame[:, :, None])  # every temporal frame is the same image

        for _ in self._pool.map(fill, range(len(images))):
            pass
        grid = torch.tensor([[1, height // p, width // p]] * len(images), dtype=torch.long)
        flat = torch.from_numpy(out).view(out.shape[0], -1)
        return {"pixel_values": flat, "image_grid_thw": grid}
