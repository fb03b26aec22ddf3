"""Greedy generation: batched (left-padded) equals one by one, deterministic, for every family."""

from __future__ import annotations

import pytest

from geovlm.backends.base import Backend
from geovlm.errors import GeovlmError, ModelCapabilityError, ParameterError
from tests.tiny_models import QUESTION_EN, QUESTION_JA, QUESTION_ZH

PROMPTS = [QUESTION_EN, QUESTION_JA, QUESTION_ZH]


@pytest.mark.parametrize("family", ["qwen3_vl_backend", "llava_backend"])
def test_generate_batch_equals_one_by_one(request, family, chip_images):
    backend = request.getfixturevalue(family)
    batched = backend.generate(chip_images, PROMPTS, max_new_tokens=6)
    single = [
        backend.generate([im], [p], max_new_tokens=6)[0]
        for im, p in zip(chip_images, PROMPTS, strict=True)
    ]
    assert batched == single
    assert len(batched) == 3 and all(isinstance(t, str) for t in batched)
    assert backend.generate(chip_images, PROMPTS, max_new_tokens=6) == batched


def test_text_generate_batch_equals_one_by_one(gemma_backend):
    batched = gemma_backend.generate(None, PROMPTS, max_new_tokens=6)
    assert batched == [gemma_backend.generate(None, [p], max_new_tokens=6)[0] for p in PROMPTS]


def test_backends_keep_the_protocol(qwen3_vl_backend, llava_backend, gemma_backend):
    assert all(isinstance(b, Backend) for b in (qwen3_vl_backend, llava_backend, gemma_backend))
    assert qwen3_vl_backend.supports_images and llava_backend.supports_images
    assert not gemma_backend.supports_images


def test_text_model_given_images_is_refused(gemma_backend, chip_images):
    with pytest.raises(ModelCapabilityError) as caught:
        gemma_backend.generate(chip_images[:1], [QUESTION_EN])
    with pytest.raises(ModelCapabilityError):
        gemma_backend.score(chip_images[:1], QUESTION_EN, ["a", "b"])
    assert isinstance(caught.value, GeovlmError)
    assert "\n" not in str(caught.value)


def test_mismatched_images_and_prompts(qwen3_vl_backend, chip_images):
    with pytest.raises(ParameterError):
        qwen3_vl_backend.generate(chip_images[:2], [QUESTION_EN])
    with pytest.raises(ParameterError):
        qwen3_vl_backend.score(chip_images[:1], QUESTION_EN, [])


def test_prefetched_batches_equal_one_batch(qwen3_vl_backend, gemma_backend, chip_images):
    """With several batches the next is encoded in a thread; results and errors are unchanged."""
    from geovlm.backends.hf import HFBackend

    small = HFBackend(
        qwen3_vl_backend.loaded, template=qwen3_vl_backend.chat.template, batch_size=1
    )
    assert small.generate(chip_images, PROMPTS, 5) == qwen3_vl_backend.generate(
        chip_images, PROMPTS, 5
    )
    small_text = HFBackend(gemma_backend.loaded, batch_size=1)
    with pytest.raises(ModelCapabilityError):
        small_text.generate(chip_images, PROMPTS)
