"""`geovlm eval` on a building-damage set built from the real xBD tiles, with the tiny Qwen3-VL.

The set is ``geovlm dataset from-xbd --tasks building-damage`` of ../shared/data/xbd/real (pre
and post crops). One evaluation writes the report, the xView2 rasters and a damage calibration
into a copy of the model folder; the tests check them against the per-building probabilities.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from geovlm.backends.choice import ModelChoice
from geovlm.backends.grade_scoring import grade_probabilities
from geovlm.cli import cli
from geovlm.datasets import read_dataset
from geovlm.evaluation.damage_metrics import GRADE_LABELS, damage_metrics
from geovlm.evaluation.xview2_rasters import tile_id
from geovlm.evaluation.xview2_score import score_folders
from geovlm.models.presets import FOLDER_PRESET
from geovlm.sources.xbd import Phase, read_xbd
from tests.training_fixtures import invoke

MIN_CONFIDENCE = 0.3


@pytest.fixture(scope="module")
def buildings(real_xbd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The graded buildings of the real tiles, pre and post crops, English only."""
    out = tmp_path_factory.mktemp("eval-buildings") / "ds"
    invoke("dataset", "from-xbd", str(real_xbd), "-o", str(out), "--tasks", "building-damage",
           "--languages", "en", "--progress", "none")
    return out


def _eval(data: Path, model: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, [
        "eval", "--data", str(data), "--model", str(model), "--quantize", "none", "--device",
        "cpu", "-o", str(out), "--progress", "none", "--split", "all", *extra])


@pytest.fixture(scope="module")
def evaluated(buildings: Path, qwen3_vl_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One ``geovlm eval --xview2-dir --fit-calibration`` run: (report folder, xview2, model)."""
    root = tmp_path_factory.mktemp("eval-buildings-run")
    model = root / "model"
    shutil.copytree(qwen3_vl_dir, model)
    result = _eval(buildings, model, root / "report", "--xview2-dir", str(root / "xview2"),
                   "--min-confidence", str(MIN_CONFIDENCE), "--fit-calibration",
                   "--batch-size", "16")
    assert result.exit_code == 0, result.output
    assert "xView2 pixel score" in result.output
    return root / "report", root / "xview2", model


def _predictions(report: Path) -> list[dict]:
    lines = (report / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_damage_metrics_follow_the_per_building_probabilities(evaluated, buildings):
    report_dir, _, _ = evaluated
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    rows = _predictions(report_dir)
    data = read_dataset(buildings)
    assert len(rows) == report["samples"] == len(data.samples()) > 100
    assert report["context"]["skipped"] == {}
    probs = np.array([[row["probs"][label] for label in GRADE_LABELS] for row in rows])
    truth = np.array([GRADE_LABELS.index(row["label"]) for row in rows])
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    accuracy = float((probs.argmax(axis=1) == truth).mean())
    assert report["classification"]["accuracy"] == pytest.approx(accuracy)
    assert report["classification"]["labels"] == list(GRADE_LABELS)
    expected = damage_metrics(truth, probs, MIN_CONFIDENCE).to_dict()
    assert report["damage"]["uncertain"] == expected["uncertain"]
    assert report["damage"]["xview2_f1"] == pytest.approx(expected["xview2_f1"], abs=1e-5)
    assert report["damage"]["classification"]["accuracy"] == pytest.approx(accuracy)
    assert report["preset_calibration"] is None  # none fitted before this run
    assert {row["building"] for row in rows} == {s.building for s in data.samples()}
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert "Building damage" in page and "xView2 score (pixels)" in page


def test_scores_are_the_grade_scorers_on_the_samples_images(evaluated, buildings):
    """The first samples' probabilities are GradeScorer's on their (pre, post) crops, the model
    loaded as eval loads it."""
    rows = _predictions(evaluated[0])
    backend = ModelChoice.resolve(str(evaluated[2]), quantize="none", device="cpu").load_backend()
    data = read_dataset(buildings)
    first = data.samples()[:3]
    images = [tuple(Image.open(p).convert("RGB") for p in data.image_paths(s)) for s in first]
    assert all(len(pair) == 2 for pair in images)
    direct = grade_probabilities(backend, images, "en")
    stored = np.array([[row["probs"][label] for label in GRADE_LABELS] for row in rows[:3]])
    assert np.allclose(direct, stored, atol=1e-5)


def test_xview2_rasters_are_written_and_scored(evaluated, real_xbd):
    report_dir, xview2, _ = evaluated
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    graded = [t for t in read_xbd(real_xbd, Phase.POST)
              if any(b.damage is not None and b.damage.value in GRADE_LABELS
                     for b in t.buildings)]
    ids = sorted(tile_id(t.name) for t in graded)
    assert len(ids) == 5  # guatemala-volcano_00000005 holds one un-classified building only
    assert sorted(p.name for p in (xview2 / "predictions").iterdir()) == sorted(
        f"test_{kind}_{i}_prediction.png" for i in ids for kind in ("damage", "localization"))
    assert sorted(p.name for p in (xview2 / "targets").iterdir()) == sorted(
        f"test_{kind}_{i}_target.png" for i in ids for kind in ("damage", "localization"))
    predicted = {GRADE_LABELS.index(row["predicted"]) + 1 for row in _predictions(report_dir)}
    for path in (xview2 / "predictions").glob("test_damage_*"):
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == (1024, 1024)
            assert set(np.unique(np.asarray(image)).tolist()) <= {0, *predicted}
    score = score_folders(xview2 / "predictions", xview2 / "targets").to_dict()
    assert report["xview2"] == json.loads(json.dumps(score))  # the same numbers, exactly


def test_fit_calibration_writes_damage_calibration(evaluated):
    report_dir, _, model = evaluated
    preset = yaml.safe_load((model / FOLDER_PRESET).read_text(encoding="utf-8"))
    assert "calibration" not in preset
    fitted = json.loads((report_dir / "report.json").read_text())["fitted_calibration"]
    assert preset["damage_calibration"] == fitted["calibration"]
    assert set(preset["damage_calibration"]["log_prior"]) == set(GRADE_LABELS)


@pytest.mark.parametrize(("extra", "message"), [
    (("--task", "disaster"), "no disaster samples"),
    (("--xview2-dir", "X", "--xbd", "."), "names none with labels/"),
])
def test_refusals_exit_2_before_the_model_loads(buildings, qwen3_vl_dir, tmp_path, extra,
                                                message):
    extra = tuple(str(tmp_path / e) if e == "X" else e for e in extra)
    result = _eval(buildings, qwen3_vl_dir, tmp_path / "r", *extra)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()
