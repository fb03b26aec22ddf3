"""Encoding the next batch in one thread while another scores: no waiting, the same numbers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from tests.tiny_models import ANSWERS_EN, QUESTION_EN


@pytest.fixture(params=["qwen3_vl_backend", "llava_backend"])
def backend(request):
    return request.getfixturevalue(request.param)


def test_image_encoding_does_not_wait_for_the_tokenizer_lock(backend, chip_images):
    # Chips of different sizes take the processor's own path (image processing + tokenizer).
    prompts = [QUESTION_EN] * len(chip_images)
    # The lock is held as while scoring (and released before the pool joins, so a failing
    # encode times out instead of hanging): the encode must not need it.
    with ThreadPoolExecutor(1) as pool, backend._tokenizer_lock:
        inputs = pool.submit(backend.encode, chip_images, prompts).result(timeout=60)
    assert inputs["input_ids"].shape[0] == len(chip_images)


def test_encoding_beside_scoring_gives_the_sequential_results(backend, chip_images):
    prompts = [QUESTION_EN] * len(chip_images)
    answers = list(ANSWERS_EN)
    expected_inputs = backend.encode(chip_images, prompts)
    expected_ids = [backend.answer_ids(a) for a in answers]
    expected_probs = backend.score_encoded(expected_inputs, answers)

    rounds = 6
    start = threading.Barrier(2)

    def encode_many() -> list[dict[str, torch.Tensor]]:
        start.wait()
        return [backend.encode(chip_images, prompts) for _ in range(rounds)]

    def score_many() -> list[tuple[list[list[int]], np.ndarray]]:
        start.wait()
        return [
            ([backend.answer_ids(a) for a in answers],
             backend.score_encoded(expected_inputs, answers))
            for _ in range(rounds)
        ]

    with ThreadPoolExecutor(2) as pool:
        encoded, scored = pool.submit(encode_many), pool.submit(score_many)
        encodings, scores = encoded.result(timeout=300), scored.result(timeout=300)
    for inputs in encodings:
        assert inputs.keys() == expected_inputs.keys()
        for key in inputs:
            assert torch.equal(inputs[key], expected_inputs[key]), key
    for ids, probs in scores:
        assert ids == expected_ids
        np.testing.assert_array_equal(probs, expected_probs)
