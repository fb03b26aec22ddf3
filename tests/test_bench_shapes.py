"""``bench/classify.py --shape 8b``: Qwen3-VL-8B's size is built right, and refused without CUDA."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH / "classify.py"), *args],
                          capture_output=True, text=True, timeout=300, check=False)


def _qwen3vl_8b():
    spec = importlib.util.spec_from_file_location("qwen3vl_8b", BENCH / "qwen3vl_8b.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_counts_the_published_parameters_on_the_meta_device():
    result = _bench("--shape", "8b", "--dry-run")
    assert result.returncode == 0, result.stderr
    # Qwen/Qwen3-VL-8B-Instruct's safetensors hold 8,767,123,696 parameters.
    assert "8,767,123,696 parameters" in result.stdout
    assert "36 layers, hidden 4096, heads 32/8 KV" in result.stdout
    assert "deepstack [8, 16, 24]" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="refusal is for machines without CUDA")
def test_8b_without_cuda_is_refused_in_one_sentence():
    result = _bench("--shape", "8b")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "needs a CUDA GPU" in result.stderr and "--dry-run" in result.stderr


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="no bitsandbytes")
def test_4bit_build_quantizes_the_language_model_and_still_runs(qwen3_vl_dir):
    import bitsandbytes as bnb
    from transformers import AutoConfig

    module = _qwen3vl_8b()
    model = module.build_8b(AutoConfig.from_pretrained(qwen3_vl_dir), "cpu", "4bit")
    quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    language = model.model.language_model
    assert quantized and all(any(m is q for m in language.modules()) for q in quantized)
    assert not any(type(m) is torch.nn.Linear for m in language.modules())
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([[7, 8, 9, 10]])).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


@pytest.mark.parametrize("quantize", ["none", "4bit"])
def test_the_built_model_scores_through_geovlms_backend(qwen3_vl_dir, chip_images, quantize):
    # The --shape 8b glue, run on the tiny configuration on the CPU.
    if quantize == "4bit" and importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("no bitsandbytes")
    from transformers import AutoConfig, AutoProcessor

    from tests.tiny_models import ANSWERS_EN, QUESTION_EN

    module = _qwen3vl_8b()
    processor = AutoProcessor.from_pretrained(qwen3_vl_dir)
    config = AutoConfig.from_pretrained(qwen3_vl_dir)
    backend = module.backend(processor, config, "cpu", quantize, batch_size=2)
    probabilities = backend.score(chip_images, QUESTION_EN, list(ANSWERS_EN))
    assert probabilities.shape == (len(chip_images), len(ANSWERS_EN))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-9)
