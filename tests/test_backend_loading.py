"""Loading: quantization options, offline not-found errors, LoRA adapters, 4-bit on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geovlm.backends.hf import HFBackend
from geovlm.backends.loading import bnb_config
from geovlm.errors import ModelNotFoundError
from geovlm.models.quantization import Quantization
from tests.tiny_models import ANSWERS_EN, QUESTION_EN, QUESTION_ZH


def test_quantization_options():
    assert Quantization("auto").resolve("cuda") is Quantization.NF4
    assert Quantization("auto").resolve("cpu") is Quantization.NONE
    assert Quantization("8bit").resolve("cpu") is Quantization.INT8
    config = bnb_config(Quantization.NF4)
    assert config.load_in_4bit and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_compute_dtype == torch.bfloat16
    assert bnb_config(Quantization.INT8).load_in_8bit
    assert bnb_config(Quantization.NONE) is None
    assert Quantization("4BIT") is Quantization.NF4


def test_bad_quantize_lists_options(qwen3_vl_dir):
    with pytest.raises(ValueError, match="auto, 4bit, 8bit, none"):
        HFBackend.load(str(qwen3_vl_dir), quantize="3bit")


def test_bad_template_lists_options(qwen3_vl_dir):
    with pytest.raises(ValueError, match="qwen3_vl_nothink"):
        HFBackend.load(str(qwen3_vl_dir), template="qwen2_vl")


def _one_sentence(message: str) -> bool:
    return "\n" not in message and message.count(". ") == 0 and len(message) < 300


def test_unknown_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as caught:
        HFBackend.load("geovlm-tests/no-such-model")
    message = str(caught.value)
    assert "geovlm-tests/no-such-model" in message
    assert "--model PATH" in message
    assert "`hf download geovlm-tests/no-such-model`" in message
    assert _one_sentence(message)
    assert caught.value.__suppress_context__


def test_missing_folder(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no model folder at"):
        HFBackend.load(str(tmp_path / "absent"))


def test_unknown_adapter_offline(monkeypatch, qwen3_vl_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as caught:
        HFBackend.load(str(qwen3_vl_dir), adapter="geovlm-tests/no-such-adapter")
    assert "--adapter PATH" in str(caught.value) and _one_sentence(str(caught.value))


def _logits(backend: HFBackend, images) -> torch.Tensor:
    with torch.inference_mode():
        return backend.model(**backend.encode(images, [QUESTION_EN] * len(images))).logits


def test_adapter_attach_and_reload_give_identical_logits(
    qwen3_vl_dir, qwen3_vl_adapter_dir, chip_images
):
    from peft import PeftModel

    base = HFBackend.load(str(qwen3_vl_dir), quantize="none", device="cpu")
    base_logits = _logits(base, chip_images)
    attached = PeftModel.from_pretrained(base.model, str(qwen3_vl_adapter_dir)).eval()
    with torch.inference_mode():
        attached_logits = attached(**base.encode(chip_images, [QUESTION_EN] * 3)).logits
    reloaded = HFBackend.load(
        str(qwen3_vl_dir), adapter=str(qwen3_vl_adapter_dir), quantize="none", device="cpu"
    )
    reloaded_logits = _logits(reloaded, chip_images)
    assert not torch.allclose(attached_logits, base_logits, atol=1e-3)  # the adapter acts
    torch.testing.assert_close(reloaded_logits, attached_logits)
    again = HFBackend.load(
        str(qwen3_vl_dir), adapter=str(qwen3_vl_adapter_dir), quantize="none", device="cpu"
    )
    assert torch.equal(_logits(again, chip_images), reloaded_logits)


def test_4bit_loads_and_runs_on_cpu(
    qwen3_vl_dir, qwen3_vl_adapter_dir, qwen3_vl_backend, chip_images
):
    import bitsandbytes as bnb

    backend = HFBackend.load(
        str(qwen3_vl_dir),
        adapter=str(qwen3_vl_adapter_dir),
        quantize="4bit",
        device="cpu",
        template="qwen3_vl_nothink",
    )
    assert backend.loaded.quantization is Quantization.NF4
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in backend.model.modules())
    probs = backend.score(chip_images, QUESTION_EN, ANSWERS_EN)
    assert probs.shape == (3, len(ANSWERS_EN))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    single = np.concatenate([backend.score([im], QUESTION_EN, ANSWERS_EN) for im in chip_images])
    np.testing.assert_allclose(probs, single, atol=1e-4)
    texts = backend.generate(chip_images, [QUESTION_EN, QUESTION_ZH, QUESTION_EN], 4)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)


@pytest.mark.filterwarnings("ignore:MatMul8bitLt")
def test_8bit_loads_and_scores_on_cpu(qwen3_vl_dir, chip_images):
    backend = HFBackend.load(str(qwen3_vl_dir), quantize="8bit", device="cpu")
    assert backend.loaded.quantization is Quantization.INT8
    probs = backend.score(chip_images[:2], QUESTION_EN, ANSWERS_EN)
    assert probs.shape == (2, len(ANSWERS_EN))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_image_max_pixels_caps_tokens(qwen3_vl_dir, chip_images):
    from PIL import Image

    big = Image.new("RGB", (256, 256), (120, 30, 200))
    capped = HFBackend.load(
        str(qwen3_vl_dir), quantize="none", device="cpu", image_max_pixels=128 * 128
    )
    grid = capped.encode([big], [QUESTION_EN])["image_grid_thw"][0].tolist()
    assert grid == [1, 8, 8]  # 128x128 after one resize, patch 16
    free = HFBackend.load(str(qwen3_vl_dir), quantize="none", device="cpu")
    assert free.encode([big], [QUESTION_EN])["image_grid_thw"][0].tolist() == [1, 16, 16]


def test_cached_hub_ids_load_offline(
    monkeypatch, tmp_path, qwen3_vl_dir, qwen3_vl_adapter_dir, chip_images
):
    """A model and adapter in the Hugging Face cache load by id with no network."""
    import shutil

    import huggingface_hub.constants

    for repo, folder in [("tiny/qwen3-vl", qwen3_vl_dir), ("tiny/lora", qwen3_vl_adapter_dir)]:
        root = tmp_path / f"models--{repo.replace('/', '--')}"
        shutil.copytree(folder, root / "snapshots" / ("0" * 40))
        (root / "refs").mkdir()
        (root / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)  # the one geovlm reads first
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backend = HFBackend.load("tiny/qwen3-vl", adapter="tiny/lora", quantize="none", device="cpu")
    direct = HFBackend.load(
        str(qwen3_vl_dir), adapter=str(qwen3_vl_adapter_dir), quantize="none", device="cpu"
    )
    assert torch.equal(_logits(backend, chip_images[:1]), _logits(direct, chip_images[:1]))


def test_template_for_another_family_is_refused(gemma_text_dir):
    from geovlm.errors import ParameterError

    with pytest.raises(ParameterError, match="does not fit"):
        HFBackend.load(str(gemma_text_dir), quantize="none", template="qwen3_vl_nothink")
