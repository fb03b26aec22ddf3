"""The Qwen-VL CPU fast paths give the processor's and the convolution's results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from geovlm.backends.qwen_fastpath import QwenPatches, patch_embeddings_as_matmul
from geovlm.scenes.tiling import iter_chips
from tests.tiny_models import QUESTION_EN


@pytest.fixture(scope="module")
def same_size_chips(geotiff_dir) -> list[Image.Image]:
    chips = list(iter_chips(geotiff_dir / "rasterio/cogeo.tif", 128))[:5]
    rng = np.random.default_rng(1)
    noise = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    return [chip.image for chip in chips] + [noise]


def test_fast_encoding_is_bit_identical_to_the_processor(qwen3_vl_backend, same_size_chips):
    backend = qwen3_vl_backend
    assert backend.encoder._patches is not None, "the tiny Qwen3-VL's processor takes the fast path"
    prompts = [QUESTION_EN] * len(same_size_chips)
    texts = [backend.chat.render(p, image=True) for p in prompts]
    reference = backend.encoder._processor(texts, same_size_chips)
    pixels = backend.encoder._patches(same_size_chips)
    assert torch.equal(pixels["pixel_values"], reference["pixel_values"])
    assert torch.equal(pixels["image_grid_thw"], reference["image_grid_thw"])
    fast = backend.encode(same_size_chips, prompts)
    assert backend.encoder._patches is not None, "the first-batch check kept the fast path on"
    assert fast.keys() == reference.keys()
    for key in reference:
        assert torch.equal(fast[key], reference[key]), key


def test_chips_the_processor_would_resize_take_the_processor_path(qwen3_vl_backend):
    patches = qwen3_vl_backend.encoder._patches
    odd = [Image.new("RGB", (100, 70))]
    mixed = [Image.new("RGB", (64, 64)), Image.new("RGB", (64, 96))]
    grey = [Image.new("L", (64, 64))]
    assert isinstance(patches, QwenPatches)
    assert not patches.fits(odd) and not patches.fits(mixed) and not patches.fits(grey)
    assert patches.fits([Image.new("RGB", (64, 64))] * 2)


def test_patch_embedding_matmul_equals_the_convolution():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv3d(3, 64, kernel_size=(2, 16, 16),
                                                stride=(2, 16, 16)))
    x = torch.randn(700, 3, 2, 16, 16)
    expected = model(x)
    patch_embeddings_as_matmul(model)
    got = model(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # Batch-invariant: a patch's embedding does not depend on the other rows.
    torch.testing.assert_close(model(x[:3]), got[:3], atol=0, rtol=0)


def test_overlapping_convolutions_are_left_alone():
    conv = torch.nn.Conv3d(3, 8, kernel_size=3, stride=1)
    patch_embeddings_as_matmul(torch.nn.Sequential(conv))
    assert "forward" not in vars(conv)


@pytest.mark.parametrize("normalisation", [{}, {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}])
def test_arithmetic_and_table_routes_both_give_the_processor_pixels(same_size_chips,
                                                                    normalisation):
    from transformers import Qwen2VLImageProcessor

    processor = Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2,
                                      **normalisation)
    expected = processor(images=same_size_chips, return_tensors="pt")["pixel_values"]
    patches = QwenPatches(processor, None)
    assert patches._affine is not None, "float32 (code - mean) / std reproduces all 256 codes"
    assert torch.equal(patches(same_size_chips)["pixel_values"], expected)
    patches._affine = None  # the table route
    assert torch.equal(patches(same_size_chips)["pixel_values"], expected)


def test_a_formula_that_misses_one_code_falls_back_to_the_table():
    from transformers import Qwen2VLImageProcessor

    from geovlm.backends.qwen_fastpath import _exact_affine

    processor = Qwen2VLImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3)
    table = QwenPatches(processor, None).table.copy()
    assert _exact_affine(processor, table) is not None
    table[1, 200] = np.nextafter(table[1, 200], np.float32(np.inf))
    assert _exact_affine(processor, table) is None


def test_pixel_buffers_are_reused_only_once_nobody_holds_them(qwen3_vl_backend,
                                                              same_size_chips):
    patches = QwenPatches(qwen3_vl_backend.loaded.processor.image_processor, None)
    first = patches(same_size_chips)["pixel_values"]
    kept = first.clone()
    second = patches(same_size_chips)["pixel_values"]
    assert second.data_ptr() != first.data_ptr(), "first is still held: a new buffer"
    address = first.data_ptr()
    del first
    third = patches(same_size_chips[::-1])["pixel_values"]
    assert third.data_ptr() == address, "first was freed: its buffer is reused"
    assert torch.equal(second, kept), "the batch still held was not touched"
    reversed_kept = patches(same_size_chips[::-1])["pixel_values"]
    assert torch.equal(third, reversed_kept)
