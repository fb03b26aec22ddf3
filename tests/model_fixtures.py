"""Session-scoped pytest fixtures: tiny offline models of the three real families, built once.

Registered as a plugin by ``tests/conftest.py`` (``pytest_plugins``). Building all three models
and the adapter takes about a second; importing torch and transformers costs ~6 s once per
process, so `tests.tiny_models` is imported by the fixtures that build, not on import: the
pytest-xdist controller loads this plugin too and runs no test. Nothing is ever downloaded: the
hub is switched to offline mode on import.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers/huggingface_hub are imported

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def tiny_model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder holding every tiny model built in this session."""
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def qwen3_vl_dir(tiny_model_root: Path) -> Path:
    """Folder of a tiny Qwen3-VL (``Qwen3VLForConditionalGeneration`` + ``Qwen3VLProcessor``)."""
    from tests import tiny_models

    return tiny_models.build_qwen3_vl(tiny_model_root / "qwen3_vl")


@pytest.fixture(scope="session")
def llava_qwen3_dir(tiny_model_root: Path) -> Path:
    """Folder of a tiny LLaVA with a CLIP vision tower and a Qwen3 text model."""
    from tests import tiny_models

    return tiny_models.build_llava_qwen3(tiny_model_root / "llava_qwen3")


@pytest.fixture(scope="session")
def gemma_text_dir(tiny_model_root: Path) -> Path:
    """Folder of a tiny text-only Gemma 3 (``Gemma3ForCausalLM``) with Gemma's chat template."""
    from tests import tiny_models

    return tiny_models.build_gemma_text(tiny_model_root / "gemma_text")


@pytest.fixture(scope="session")
def qwen3_vl_adapter_dir(qwen3_vl_dir: Path, tiny_model_root: Path) -> Path:
    """Folder of a random, non-zero LoRA adapter for the tiny Qwen3-VL's language model."""
    from tests import tiny_models

    return tiny_models.build_lora_adapter(qwen3_vl_dir, tiny_model_root / "qwen3_vl_lora")


@pytest.fixture(scope="session")
def qwen3_vl_backend(qwen3_vl_dir: Path):
    """`HFBackend` of the tiny Qwen3-VL, float32 on CPU, with the ``qwen3_vl_nothink`` format."""
    from geovlm.backends.hf import HFBackend

    return HFBackend.load(
        str(qwen3_vl_dir), quantize="none", device="cpu", template="qwen3_vl_nothink"
    )


@pytest.fixture(scope="session")
def llava_backend(llava_qwen3_dir: Path):
    """`HFBackend` of the tiny LLaVA-Qwen3, float32 on the CPU, with its own chat template."""
    from geovlm.backends.hf import HFBackend

    return HFBackend.load(str(llava_qwen3_dir), quantize="none", device="cpu")


@pytest.fixture(scope="session")
def gemma_backend(gemma_text_dir: Path):
    """`HFBackend` of the tiny text-only Gemma, float32 on the CPU."""
    from geovlm.backends.hf import HFBackend

    return HFBackend.load(str(gemma_text_dir), quantize="none", device="cpu")


@pytest.fixture(scope="session")
def chip_images() -> list[Image.Image]:
    """Three deterministic random RGB chips of different sizes (so batches need padding)."""
    rng = np.random.default_rng(0)
    sizes = [(64, 64), (96, 64), (64, 128)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
