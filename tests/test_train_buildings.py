"""`geovlm train` learns building damage from the change between pre and post crops (CPU).

The synthetic set (`tests.synthetic_xbd.write_change_xbd`) shows damage only as a change: every
post crop is a palette colour drawn uniformly whatever the grade, the grade is how far round
the palette the post colour lies from the pre one. The same buildings are built twice with
``geovlm dataset from-xbd --tasks building-damage`` (``--building-images pre-post`` and
``post``), split by tile with the same seed, and the tiny random Qwen3-VL is trained on each
with the same recipe (tiny-cpu, more epochs). Each trained folder is measured by ``geovlm eval``
on the held-out split, so the grades are scored as the product scores them (`GradeScorer`, the
model loaded from its output folder's preset). The two-image model must beat the post-only one,
which can do no better than chance, by a clear margin.
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

#: 8 tiles of 9 buildings, 2 tiles (18 buildings) held out; English only.
TILES = 8
#: The recipe's changes: 25 epochs of 54 samples in batches of 4 (350 steps), room for the longer
#: two-image question, and no checkpoints.
OVERRIDES = ("num_train_epochs=25", "cutoff_len=256", "save_steps=100000")
#: Seed of the synthetic set and of the split (the recipe keeps its own, 42).
SEED = 0


@pytest.fixture(scope="module")
def accuracies(qwen3_vl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Held-out accuracy and mean NLL of the grade, per ``--building-images`` choice."""
    root = tmp_path_factory.mktemp("building-damage")
    xbd = write_change_xbd(root / "xbd", TILES, seed=SEED)
    figures = {}
    for images in ("pre-post", "post"):
        data = root / f"ds-{images}"
        invoke("dataset", "from-xbd", str(xbd), "-o", str(data), "--tasks", "building-damage",
               "--building-images", images, "--languages", "en", "--test-fraction", "0.25",
               "--seed", str(SEED), "--progress", "none")
        out = root / f"run-{images}"
        invoke("train", "--config", "tiny-cpu", "--data", str(data), "--model", str(qwen3_vl_dir),
               "--output", str(out), "--device", "cpu", "--progress", "none",
               *[part for setting in OVERRIDES for part in ("--set", setting)])
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


def test_pre_and_post_beat_post_alone_on_held_out_tiles(accuracies):
    both, post = accuracies["pre-post"], accuracies["post"]
    assert both["tiles"] == post["tiles"] and len(both["tiles"]) == 2
    assert post["accuracy"] <= 0.45, accuracies  # chance is 1/4: a post crop tells nothing
    assert both["accuracy"] - post["accuracy"] >= 0.25, accuracies
    assert both["nll"] < post["nll"] - 0.2, accuracies
