"""`geovlm train` learns building damage from the change between pre and post crops (CPU).

The synthetic set (`tests.synthetic_xbd.write_change_xbd`) shows damage only as a change: each
building's crop is one flat colour, red low or high and blue low or high; the grade is which of
the two the post colour flipped (none, red, blue, both), so every post crop is a palette colour
drawn uniformly whatever the grade. The same buildings are built twice with ``geovlm dataset
from-xbd --tasks building-damage`` (``--building-images pre-post`` and ``post``), split by tile
with the same seed, and the tiny random Qwen3-VL is trained on each with the same recipe
(tiny-cpu with `OVERRIDES`). Each trained folder is measured by ``geovlm eval`` on the held-out
split, so the grades are scored as the product scores them (`GradeScorer`, the model loaded
from its output folder's preset). The two-image model must beat the post-only one, which can do
no better than chance (1/4; 1/3 by always naming no-damage, a tile's most common grade), by a
clear margin.

Measured for seeds 0-4 (`held_out_figures` with ``seed=``; 54 held-out buildings each), as
accuracy pre+post / post and mean NLL pre+post / post:

====  ===========  ===========
seed  accuracy     NLL
====  ===========  ===========
0     1.000 0.333  0.191 1.378
1     0.704 0.333  0.748 1.372
2     0.833 0.333  0.897 1.555
3     1.000 0.315  0.044 1.460
4     0.944 0.259  0.401 1.542
====  ===========  ===========

tiny-cpu's constant 3e-3 rate without clipping left the grade on a loss plateau whose exit was
random, and spikes threw a found solution away (seed 2 at 0.50 / 0.39 on the earlier mod-4 hue
set); the cosine decay and clipping at 1.0 keep it. The same recipe on that hue set gave seeds
0 and 2 0.89 and 0.83 (18 held-out buildings). Fewer steps fall short: 20 epochs gave seed 0
0.57 / 0.33, and 20 epochs at 5e-3 seed 3 0.39 / 0.31.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geovlm.datasets import read_dataset
from geovlm.evaluation.damage_metrics import GRADE_LABELS
from tests.synthetic_xbd import write_change_xbd
from tests.training_fixtures import invoke

#: 12 tiles of 9 buildings, half (6 tiles, 54 buildings) held out; English only.
TILES = 12
#: The recipe's changes: 25 epochs of 54 samples in batches of 4 (350 steps) on a cosine
#: schedule from tiny-cpu's rate, gradients clipped at 1.0, room for the longer two-image
#: question, and no checkpoints.
OVERRIDES = (
    "num_train_epochs=25", "lr_scheduler_type=cosine", "max_grad_norm=1.0", "cutoff_len=256",
    "save_steps=100000",
)
#: Seed of the synthetic set and of the split (the recipe keeps its own, 42).
SEED = 0
#: Share of the tiles held out for test.
TEST_FRACTION = "0.5"


def held_out_figures(model: Path, root: Path, seed: int = SEED, tiles: int = TILES,
                     overrides: tuple[str, ...] = OVERRIDES) -> dict:
    """Held-out accuracy and mean NLL of the grade, per ``--building-images`` choice."""
    xbd = write_change_xbd(root / "xbd", tiles, seed=seed)
    figures = {}
    for images in ("pre-post", "post"):
        data = root / f"ds-{images}"
        invoke("dataset", "from-xbd", str(xbd), "-o", str(data), "--tasks", "building-damage",
               "--building-images", images, "--languages", "en", "--test-fraction", TEST_FRACTION,
               "--seed", str(seed), "--progress", "none")
        out = root / f"run-{images}"
        invoke("train", "--config", "tiny-cpu", "--data", str(data), "--model", str(model),
               "--output", str(out), "--device", "cpu", "--progress", "none",
               *[part for setting in overrides for part in ("--set", setting)])
        report = root / f"eval-{images}"
        invoke("eval", "--data", str(data), "--model", str(out), "--split", "test",
               "--device", "cpu", "--quantize", "none", "-o", str(report), "--progress", "none")
        rows = [json.loads(line) for line in
                (report / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
        measured = json.loads((report / "report.json").read_text(encoding="utf-8"))
        assert measured["classification"]["labels"] == list(GRADE_LABELS)
        true_probs = np.array([row["probs"][row["label"]] for row in rows])
        figures[images] = {
            "tiles": sorted({s.tile for s in read_dataset(data).test}),
            "accuracy": measured["damage"]["classification"]["accuracy"],
            "nll": float(-np.log(np.maximum(true_probs, 1e-12)).mean()),
        }
    return figures


@pytest.fixture(scope="module")
def accuracies(qwen3_vl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`held_out_figures` of the committed seed."""
    return held_out_figures(qwen3_vl_dir, tmp_path_factory.mktemp("building-damage"))


def test_pre_and_post_beat_post_alone_on_held_out_tiles(accuracies):
    both, post = accuracies["pre-post"], accuracies["post"]
    assert both["tiles"] == post["tiles"] and len(both["tiles"]) == 6
    assert post["accuracy"] <= 0.45, accuracies  # chance is 1/4: a post crop tells nothing
    assert both["accuracy"] - post["accuracy"] >= 0.25, accuracies
    assert both["nll"] < post["nll"] - 0.2, accuracies
