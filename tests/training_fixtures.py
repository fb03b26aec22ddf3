"""Session fixtures for training: a synthetic disaster dataset and ONE tiny training run.

The dataset gives every `DisasterLabel` its own colour (plus noise), so a tiny random Qwen3-VL
can learn the label from the picture. `trained_qwen3_vl` runs ``geovlm train --config tiny-cpu``
once per session; tests of eval, from-map and classify reuse its output folder.
Registered as a plugin by ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geovlm.datasets import DatasetWriter, Sample, SplitRule, Task
from geovlm.prompts import DisasterLabel, Language, question
from geovlm.verbalizer import Verbalizer

#: The colour that tells each label apart.
COLOURS = {
    DisasterLabel.FIRE: (220, 50, 30),
    DisasterLabel.FLOOD: (30, 70, 200),
    DisasterLabel.WIND: (210, 210, 210),
    DisasterLabel.EARTHQUAKE: (130, 90, 40),
    DisasterLabel.TSUNAMI: (20, 180, 170),
    DisasterLabel.VOLCANO: (40, 40, 40),
}


def colour_chip(label: DisasterLabel, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """A ``size`` square RGB image of the label's colour with mild noise."""
    pixels = np.asarray(COLOURS[label], float) + rng.normal(0, 18, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def build_disaster_dataset(
    root: Path,
    *,
    tiles_per_label: int = 6,
    languages: tuple[Language, ...] = (Language.EN, Language.JA, Language.ZH),
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write a dataset: per label, tiles of its colour, each asked in every language.

    Answers are each label's first answer form (`Verbalizer.default`), questions
    `geovlm.prompts.question`; tiles are split 75/25 between train and test.
    """
    rng = np.random.default_rng(seed)
    verbalizer = Verbalizer.default()
    with DatasetWriter(root, "synthetic", SplitRule(test_fraction=0.25, seed=seed),
                       parameters={"chip_size": size}) as writer:
        for label in DisasterLabel:
            for t in range(tiles_per_label):
                tile = f"{label.value}-{t}"
                image = writer.add_image(tile, colour_chip(label, rng, size))
                for language in languages:
                    answer = next(f.text for f in verbalizer.forms(language) if f.label is label)
                    writer.add(Sample(image, question(language), answer, label.value, language,
                                      Task.DISASTER, tile, f"{label.value}-event"))
    return root


@pytest.fixture(scope="session")
def disaster_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic colour-coded disaster dataset (36 tiles, EN/JA/ZH)."""
    return build_disaster_dataset(tmp_path_factory.mktemp("datasets") / "colours")


@pytest.fixture(scope="session")
def trained_qwen3_vl(qwen3_vl_dir: Path, disaster_dataset: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output folder of ``geovlm train --config tiny-cpu`` on the tiny Qwen3-VL (CPU, once)."""
    from click.testing import CliRunner

    from geovlm.cli import cli

    output = tmp_path_factory.mktemp("training") / "tiny-run"
    result = CliRunner().invoke(cli, [
        "train", "--config", "tiny-cpu", "--data", str(disaster_dataset),
        "--model", str(qwen3_vl_dir), "--output", str(output), "--device", "cpu",
        "--progress", "none",
    ])
    assert result.exit_code == 0, result.output
    return output
