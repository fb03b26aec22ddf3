"""`geovlm eval` end to end on the untrained tiny Qwen3-VL, and calibrated `classify`."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pyogrio
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from geovlm.cli import cli
from geovlm.datasets import DatasetWriter, Sample, SplitRule, Task, read_dataset
from geovlm.evaluation.model_scores import score_samples
from geovlm.evaluation.scoring import LABELS, select_samples
from geovlm.labels.calibration import Calibration
from geovlm.labels.prompts import DisasterLabel, Language, question
from geovlm.labels.verbalizer import Verbalizer, label_probabilities
from geovlm.models.presets import ModelPreset

TILES = 8


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """8 tiles x 2 chips x (en, ja), labels cycling, plus two damage questions."""
    root = tmp_path_factory.mktemp("eval") / "ds"
    rng = np.random.default_rng(0)
    with DatasetWriter(root, "test", SplitRule(test_fraction=0.5, seed=1)) as writer:
        for t in range(TILES):
            for c in range(2):
                pixels = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
                image = writer.add_image(f"t{t}c{c}", Image.fromarray(pixels))
                label = list(DisasterLabel)[(2 * t + c) % 6]
                for language in (Language.EN, Language.JA):
                    writer.add(Sample(image, question(language), "answer", label.value,
                                      language, Task.DISASTER, f"tile{t}", "event"))
        writer.add(Sample(image, "Damage?", "no-damage", "no-damage", Language.EN, Task.DAMAGE,
                          f"tile{TILES - 1}", "event"))
    return root


def _eval(dataset, model, out, *extra):
    args = ["eval", "--data", str(dataset), "--model", str(model), "--quantize", "none",
            "--device", "cpu", "-o", str(out), "--progress", "none", *extra]
    return CliRunner().invoke(cli, args)


def test_scores_match_classify_scoring(qwen3_vl_backend, dataset):
    chosen = select_samples(read_dataset(dataset), None, Language.JA)
    assert len(chosen.samples) == 2 * TILES and chosen.skipped == {}
    verbalizer = Verbalizer.default()
    scored = score_samples(qwen3_vl_backend, chosen, verbalizer, batch_size=3)
    again = score_samples(qwen3_vl_backend, chosen, verbalizer, batch_size=16)
    assert np.allclose(scored.probs, again.probs, atol=1e-6)
    assert scored.probs.sum(1) == pytest.approx(np.ones(len(chosen.samples)))
    forms = verbalizer.forms("ja")
    data = chosen.data
    first = [Image.open(data.image_path(s)).convert("RGB") for s in chosen.samples[:2]]
    direct = qwen3_vl_backend.score(first, question("ja"), [f.text for f in forms])
    assert np.allclose(label_probabilities(direct, forms), scored.probs[:2], atol=1e-6)
    assert [LABELS[i] for i in scored.truth] == [s.label for s in chosen.samples]


def test_eval_writes_a_report_and_is_deterministic(qwen3_vl_dir, dataset, tmp_path):
    result = _eval(dataset, qwen3_vl_dir, tmp_path / "a", "--split", "all")
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "report.html" in result.output
    for name in ("report.json", "report.html", "confusion.png", "reliability.png",
                 "predictions.jsonl"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["samples"] == 4 * TILES and report["tiles"] == TILES
    assert report["context"]["skipped"] == {"damage": 1}
    assert report["classification"]["labels"] == list(LABELS)
    assert sum(map(sum, report["classification"]["confusion"])) == 4 * TILES
    assert 0 <= report["classification"]["accuracy"] <= 0.5  # an untrained model: near chance
    assert 0 <= report["calibration"]["ece"] <= 1
    assert len(report["calibration"]["bins"]) == 15
    assert [row["language"] for row in report["per_language"]] == ["en", "ja"]
    assert report["fitted_calibration"] is None and report["preset_calibration"] is None
    with Image.open(tmp_path / "a" / "reliability.png") as image:
        assert image.size[0] > 300
    html = (tmp_path / "a" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "<script" not in html
    predictions = (tmp_path / "a" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 4 * TILES
    # Determinism: the same command gives the same numbers (other batch sizes agree to 1e-6,
    # test_scores_match_classify_scoring).
    result = _eval(dataset, qwen3_vl_dir, tmp_path / "b", "--split", "all")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b" / "report.json").read_text()) == report


def test_fit_calibration_writes_the_model_folders_preset(qwen3_vl_dir, dataset, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(qwen3_vl_dir, model)
    result = _eval(dataset, model, tmp_path / "report", "--split", "all", "--fit-calibration",
                   "--language", "en")
    assert result.exit_code == 0, result.output
    assert "calibrated (held-out tiles)" in result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    fitted = report["fitted_calibration"]
    assert fitted["folds"] == 5
    assert fitted["calibration"]["ece_before"] == pytest.approx(report["calibration"]["ece"],
                                                                abs=1e-6)
    assert fitted["calibration"]["ece_after"] == pytest.approx(fitted["held_out"]["ece"],
                                                               abs=1e-6)
    preset = ModelPreset.from_yaml(model / "geovlm-preset.yaml")
    assert preset.calibration == Calibration.from_mapping(fitted["calibration"])
    assert preset.model_id == str(model.resolve()) and preset.adapter_id is None
    # A second fit replaces only the calibration key of an existing file.
    text = (model / "geovlm-preset.yaml").read_text()
    (model / "geovlm-preset.yaml").write_text(text.replace("calibrated by geovlm eval", "mine"))
    result = _eval(dataset, model, tmp_path / "report", "--split", "test", "--fit-calibration",
                   "--overwrite")
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((model / "geovlm-preset.yaml").read_text())
    assert "mine" in data["description"] and "split test" in data["calibration"]["fitted_on"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--split", "sideways"], "Invalid value for '--split'"),
        (["--language", "fr"], "Invalid value for '--language'"),
        (["--batch-size", "0"], "Invalid value for '--batch-size'"),
        (["--fit-calibration"], "no local folder"),
        (["--adapter", "some/adapter", "--no-adapter"], "pass one"),
        (["--language", "zh"], "no disaster samples"),
    ],
)
def test_wrong_arguments_exit_2_before_the_model_loads(dataset, tmp_path, extra, message):
    # The default preset's weights are not here: any of these reaching the model would fail
    # on them instead.
    result = CliRunner().invoke(cli, ["eval", "--data", str(dataset), "-o", str(tmp_path / "r"),
                                      *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "r").exists()


def test_bad_data_and_outputs_exit_2(dataset, tmp_path, geotiff_dir):
    xbd = geotiff_dir.parent / "xbd" / "real"
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    (tmp_path / "model").mkdir()
    with DatasetWriter(tmp_path / "hail", "test", SplitRule(test_fraction=0)) as writer:
        image = writer.add_image("x", Image.new("RGB", (8, 8)))
        writer.add(Sample(image, "Q?", "Hail.", "hail", Language.EN, Task.DISASTER, "t", "e"))
    (tmp_path / "model" / "geovlm-preset.yaml").write_text("[1, 2]\n")
    for args, message in [
        (["--data", str(tmp_path / "nowhere")], "does not exist"),
        (["--data", str(xbd / "images")], "no geovlm dataset"),
        (["--data", str(geotiff_dir)], "no geovlm dataset"),
        (["--data", str(tmp_path / "hail"), "--split", "train"], "label 'hail'"),
        (["--data", str(dataset), "-o", str(tmp_path / "taken")], "--overwrite"),
        (["--data", str(dataset), "-o", str(tmp_path / "taken"), "--overwrite"],
         "no geovlm report"),
        (["--data", str(dataset), "--split", "all", "--fit-calibration", "--model",
          str(tmp_path / "model")], "must hold a YAML mapping"),
    ]:
        full = [*args] if "-o" in args else [*args, "-o", str(tmp_path / "r")]
        result = CliRunner().invoke(cli, ["eval", *full])
        assert result.exit_code == 2, (args, result.output)
        assert result.output.count("Error:") == 1 and message in result.output, result.output
        assert "Traceback" not in result.output


def test_eval_help():
    result = CliRunner().invoke(cli, ["eval", "--help"])
    assert result.exit_code == 0
    for option in ("--data", "--split", "--fit-calibration", "--language", "--adapter"):
        assert option in result.output


@pytest.fixture()
def calibrated_preset(qwen3_vl_dir, tmp_path, monkeypatch):
    """A site preset for the tiny model carrying a strong calibration; returns its path."""
    folder = tmp_path / "presets"
    folder.mkdir()
    monkeypatch.setenv("GEOVLM_PRESETS", str(folder))
    path = folder / "tiny-calibrated.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny-calibrated", "model_id": str(qwen3_vl_dir), "family": "qwen3_vl",
        "chip_size": 256, "supports_images": True, "quantize": "none",
        "calibration": {"temperature": 0.25, "log_prior": {"volcano": 2.0}},
    }))
    return path


def _classify(scene, out, *extra):
    return CliRunner().invoke(cli, ["classify", str(scene), "-o", str(out), "--model",
                                    "tiny-calibrated", "--device", "cpu", *extra])


def _run_parameters(path):
    with sqlite3.connect(path) as db:
        return json.loads(db.execute("SELECT parameters FROM runs").fetchone()[0])


def test_classify_applies_and_records_the_presets_calibration(calibrated_preset, geotiff_dir,
                                                               tmp_path):
    scene = geotiff_dir / "rasterio" / "cogeo.tif"
    assert _classify(scene, tmp_path / "cal.gpkg").exit_code == 0
    result = _classify(scene, tmp_path / "raw.gpkg", "--no-calibration")
    assert result.exit_code == 0, result.output
    calibration = ModelPreset.from_yaml(calibrated_preset).calibration
    assert calibration is not None
    calibrated = pyogrio.read_dataframe(tmp_path / "cal.gpkg", layer="chips")
    raw = pyogrio.read_dataframe(tmp_path / "raw.gpkg", layer="chips")
    for cal_row, raw_row in zip(calibrated["probs"], raw["probs"], strict=True):
        cal_probs = np.array(list(json.loads(cal_row).values()))
        raw_probs = np.array(list(json.loads(raw_row).values()))
        assert not np.allclose(cal_probs, raw_probs, atol=1e-3)
        assert cal_probs == pytest.approx(calibration.apply(raw_probs), abs=1e-3)
    assert _run_parameters(tmp_path / "cal.gpkg")["calibration"] == calibration.to_mapping()
    assert "calibration" not in _run_parameters(tmp_path / "raw.gpkg")
    # Resuming with another calibration is refused like any other parameter change.
    text = calibrated_preset.read_text().replace("temperature: 0.25", "temperature: 0.5")
    calibrated_preset.write_text(text)
    result = _classify(scene, tmp_path / "cal.gpkg")
    assert result.exit_code == 2 and "different command or parameters" in result.output


def test_eval_measures_the_presets_calibration(calibrated_preset, dataset, tmp_path):
    result = CliRunner().invoke(cli, ["eval", "--data", str(dataset), "--model",
                                      "tiny-calibrated", "--device", "cpu", "-o",
                                      str(tmp_path / "r"), "--language", "en"])
    assert result.exit_code == 0, result.output
    assert "with the preset's calibration" in result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    applied = report["preset_calibration"]
    assert applied["calibration"]["temperature"] == 0.25
    assert applied["calibration_metrics"]["ece"] != report["calibration"]["ece"]


def test_an_xbd_folder_is_evaluated_whole(qwen3_vl_dir, geotiff_dir, tmp_path):
    xbd = geotiff_dir.parent / "xbd" / "real"
    result = CliRunner().invoke(cli, [
        "eval", "--data", str(xbd), "--model", str(qwen3_vl_dir), "--quantize", "none",
        "--device", "cpu", "--language", "en", "-o", str(tmp_path / "r"), "--progress", "none",
    ])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    post_tiles = len(list((xbd / "labels").glob("*_post_disaster.json")))
    assert report["samples"] == post_tiles and report["context"]["split"] == "all"
