"""Shared-prefix label scoring equals brute force, per family, batched or not, with positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geovlm.backends.scoring import score_candidates
from tests.tiny_models import (
    ANSWERS_EN,
    ANSWERS_JA,
    ANSWERS_ZH,
    QUESTION_EN,
    QUESTION_JA,
    QUESTION_ZH,
)

CASES = [(QUESTION_EN, ANSWERS_EN), (QUESTION_JA, ANSWERS_JA), (QUESTION_ZH, ANSWERS_ZH)]


def _full_inputs(inputs: dict, answer_ids: list[int]) -> dict:
    """One unpadded prompt with the answer's tokens appended; the model computes positions."""
    extra = torch.tensor([answer_ids], dtype=torch.long)
    full = dict(inputs)
    full["input_ids"] = torch.cat([inputs["input_ids"], extra], dim=1)
    full["attention_mask"] = torch.ones_like(full["input_ids"])
    if "mm_token_type_ids" in inputs:
        full["mm_token_type_ids"] = torch.cat(
            [inputs["mm_token_type_ids"], torch.zeros_like(extra)], dim=1
        )
    return full


@torch.inference_mode()
def _brute_force_logp(backend, image, prompt: str, answers) -> np.ndarray:
    """Sum of answer-token log-probs from one full forward per answer."""
    inputs = backend.encode(None if image is None else [image], [prompt])
    n = inputs["input_ids"].shape[1]
    totals = []
    for answer in answers:
        ids = backend.answer_ids(answer)
        logits = backend.model(**_full_inputs(inputs, ids)).logits[0].float()
        logp = torch.log_softmax(logits[n - 1 : n - 1 + len(ids)], dim=-1)
        totals.append(logp[torch.arange(len(ids)), torch.tensor(ids)].sum().item())
    return np.array(totals)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


@pytest.mark.parametrize(("question", "answers"), CASES, ids=["en", "ja", "zh"])
@pytest.mark.parametrize("family", ["qwen3_vl_backend", "llava_backend"])
def test_score_equals_brute_force(request, family, chip_images, question, answers):
    backend = request.getfixturevalue(family)
    fast = backend.score(chip_images, question, answers)
    assert fast.shape == (len(chip_images), len(answers))
    assert fast.dtype == np.float64
    np.testing.assert_allclose(fast.sum(axis=1), 1.0, atol=1e-12)
    for row, image in zip(fast, chip_images, strict=True):
        slow = _softmax(_brute_force_logp(backend, image, question, answers))
        np.testing.assert_allclose(row, slow, atol=1e-5)


def test_text_model_scorer_equals_brute_force(gemma_backend):
    """The shared-prefix scorer on a text model with sliding-window layers, left-padded."""
    prompts = [QUESTION_EN, QUESTION_JA]
    candidates = [gemma_backend.answer_ids(a) for a in ANSWERS_EN]
    inputs = gemma_backend.encode(None, prompts)
    fast = score_candidates(
        gemma_backend.model, inputs, candidates, pad_id=gemma_backend.tokenizer.pad_token_id
    ).numpy()
    for row, prompt in zip(fast, prompts, strict=True):
        np.testing.assert_allclose(
            row, _brute_force_logp(gemma_backend, None, prompt, ANSWERS_EN), atol=1e-4
        )


@pytest.mark.parametrize("family", ["qwen3_vl_backend", "llava_backend"])
def test_score_batch_equals_one_by_one(request, family, chip_images):
    backend = request.getfixturevalue(family)
    batched = backend.score(chip_images, QUESTION_EN, ANSWERS_EN)
    single = np.concatenate([backend.score([im], QUESTION_EN, ANSWERS_EN) for im in chip_images])
    np.testing.assert_allclose(batched, single, atol=1e-6)
    assert np.array_equal(batched, backend.score(chip_images, QUESTION_EN, ANSWERS_EN))


def test_score_batches_of_one_equal_one_batch(qwen3_vl_dir, qwen3_vl_backend, chip_images):
    from geovlm.backends.hf import HFBackend

    small = HFBackend(
        qwen3_vl_backend.loaded, template=qwen3_vl_backend.chat.template, batch_size=1
    )
    np.testing.assert_allclose(
        small.score(chip_images, QUESTION_ZH, ANSWERS_ZH),
        qwen3_vl_backend.score(chip_images, QUESTION_ZH, ANSWERS_ZH),
        atol=1e-6,
    )


def test_qwen3_vl_scorer_positions_match_model(qwen3_vl_backend, chip_images):
    """Positions the fast scorer feeds equal those the model computes for each full sequence."""
    backend = qwen3_vl_backend
    language_model = backend.model.model.language_model
    seen: list[torch.Tensor] = []

    def grab(_module, _args, kwargs):
        seen.append(kwargs["position_ids"].clone())

    answers = ANSWERS_EN[:3]
    candidates = [backend.answer_ids(a) for a in answers]
    inputs = backend.encode(chip_images, [QUESTION_EN] * len(chip_images))
    assert "mm_token_type_ids" in inputs
    handle = language_model.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        score_candidates(backend.model, inputs, candidates, pad_id=0)
    finally:
        handle.remove()
    prefill, continuation = seen
    assert prefill.dim() == continuation.dim() == 3
    mask = inputs["attention_mask"].bool()
    for b, image in enumerate(chip_images):
        single = backend.encode([image], [QUESTION_EN])
        n = single["input_ids"].shape[1]
        assert torch.equal(prefill[:, b, mask[b]], _model_positions(backend, single, [])[:, 0])
        for a, ids in enumerate(candidates):
            full = _model_positions(backend, single, ids)[:, 0]
            got = continuation[:, b * len(candidates) + a, : len(ids) - 1]
            assert torch.equal(got, full[:, n : n + len(ids) - 1])


def _model_positions(backend, single: dict, ids: list[int]) -> torch.Tensor:
    """Positions Qwen3-VL computes itself (no position_ids given) for prompt + ``ids``."""
    language_model = backend.model.model.language_model
    captured: list[torch.Tensor] = []
    handle = language_model.register_forward_pre_hook(
        lambda _m, _a, kw: captured.append(kw["position_ids"].clone()), with_kwargs=True
    )
    try:
        with torch.inference_mode():
            backend.model(**_full_inputs(single, ids))
    finally:
        handle.remove()
    return captured[-1]


def test_mrope_positions_are_not_one_dimensional(qwen3_vl_backend, chip_images):
    """Image tokens get 2-D positions: the height and width axes differ inside the image."""
    inputs = qwen3_vl_backend.encode(chip_images[:1], [QUESTION_EN])
    positions = _model_positions(qwen3_vl_backend, inputs, [])
    assert not torch.equal(positions[1], positions[2])
