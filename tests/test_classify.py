"""`geovlm classify` end to end with tiny offline models on real rasters."""

from __future__ import annotations

import json
import signal
import sqlite3

import numpy as np
import pyogrio
import pytest
from click.testing import CliRunner

from geovlm.backends.base import ModelRun
from geovlm.cli import cli
from geovlm.errors import OutputError
from geovlm.events.progress import ProgressMode
from geovlm.labels.prompts import DisasterLabel, Language, question
from geovlm.labels.verbalizer import Verbalizer, label_probabilities
from geovlm.pipeline.plan import RunOptions
from geovlm.pipeline.run_scenes import one_scene
from geovlm.scenes.tiling import TilingOptions, iter_chips
from geovlm.tasks.classify import ClassifyMode, ClassifySettings, classify_chips, classify_scenes
from tests.helpers import SignalledRun, assert_valid_geopackage, count_rows

LABELS = [label.value for label in DisasterLabel]
DEFAULT_FORMS = Verbalizer.default()


def _classify(scene, out, model, *extra):
    args = ["classify", str(scene), "-o", str(out), "--model", str(model), "--quantize", "none",
            "--device", "cpu", *extra]
    return CliRunner().invoke(cli, args)


def _layer(path):
    return pyogrio.read_dataframe(path, layer="chips")


@pytest.mark.parametrize("family", ["qwen3_vl_dir", "llava_qwen3_dir"])
def test_classify_writes_probabilities_for_every_label(request, geotiff_dir, tmp_path, family):
    model = request.getfixturevalue(family)
    out = tmp_path / "out.gpkg"
    result = _classify(geotiff_dir / "rasterio/RGB.byte.tif", out, model, "--size", "256")
    assert result.exit_code == 0, result.output
    frame = _layer(out)
    assert len(frame) == 10
    assert frame.crs.to_epsg() == 32618
    for _, row in frame.iterrows():
        probs = json.loads(row["probs"])
        assert list(probs) == LABELS
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert row["label"] == max(probs, key=probs.get)
        assert row["confidence"] == pytest.approx(probs[row["label"]], abs=1e-6)
        runner_up = sorted(probs.values())[-2]
        assert row["runner_up"] != row["label"]
        assert row["runner_up_confidence"] == pytest.approx(runner_up, abs=1e-6)
        assert probs[row["runner_up"]] == pytest.approx(runner_up, abs=1e-6)
        assert row["answer"] in DEFAULT_FORMS.table("en")[row["label"]]
        assert row["language"] == "en"
    with sqlite3.connect(out) as db:
        run = dict(zip(["status", "parameters", "versions", "run_id"], db.execute(
            "SELECT status, parameters, versions, run_id FROM runs").fetchone(), strict=True))
        qml = db.execute("SELECT styleQML FROM layer_styles").fetchone()[0]
    assert run["status"] == "complete"
    assert set(frame["run_id"]) == {run["run_id"]}
    parameters = json.loads(run["parameters"])
    assert parameters["mode"] == "score" and parameters["quantize"] == "none"
    assert parameters["prompt"] == "What type of disaster occurred in this image?"
    assert parameters["answers"] == DEFAULT_FORMS.table("en")
    assert {"torch", "transformers", "peft"} <= set(json.loads(run["versions"]))
    for value in [*LABELS, "uncertain"]:
        assert f'value="{value}"' in qml
    assert_valid_geopackage(out)


def test_generate_mode_stores_text_and_null_probabilities(qwen3_vl_dir, geotiff_dir, tmp_path):
    out = tmp_path / "gen.gpkg"
    result = _classify(geotiff_dir / "rasterio/cogeo.tif", out, qwen3_vl_dir, "--mode",
                       "generate", "--max-new-tokens", "4", "--language", "ja")
    assert result.exit_code == 0, result.output
    frame = _layer(out)
    assert len(frame) == 4
    assert frame["probs"].isna().all() and frame["confidence"].isna().all()
    assert frame["runner_up"].isna().all() and frame["runner_up_confidence"].isna().all()
    assert set(frame["label"]) <= {*LABELS, "uncertain"}
    assert (frame["language"] == "ja").all()
    assert_valid_geopackage(out)


def test_min_confidence_marks_uncertain(qwen3_vl_backend, geotiff_dir):
    chips = list(iter_chips(geotiff_dir / "rasterio/cogeo.tif", 256))[:4]
    sure = classify_chips(qwen3_vl_backend, chips, ClassifySettings())
    unsure = classify_chips(qwen3_vl_backend, chips, ClassifySettings(min_confidence=0.99))
    assert all(r["label"] in LABELS for r in sure)
    assert all(r["label"] == "uncertain" for r in unsure)
    assert [r["probs"] for r in sure] == [r["probs"] for r in unsure]


@pytest.mark.parametrize("language", list(Language))
def test_every_language_scores_its_own_answers(qwen3_vl_backend, geotiff_dir, language):
    chips = list(iter_chips(geotiff_dir / "rasterio/cogeo.tif", 256))[:2]
    records = classify_chips(qwen3_vl_backend, chips, ClassifySettings(language=language))
    for record in records:
        assert record["answer"] in DEFAULT_FORMS.table(language)[record["label"]]
        assert record["language"] == language.value


def test_scores_sum_each_labels_forms_and_answer_its_likeliest_form(qwen3_vl_backend, geotiff_dir):
    chips = list(iter_chips(geotiff_dir / "rasterio/cogeo.tif", 256))[:3]
    verbalizer = Verbalizer.from_mapping({"en": {"fire": ["Fire", "Wildfire", "Burn scar"]}})
    records = classify_chips(qwen3_vl_backend, chips, ClassifySettings(verbalizer=verbalizer))
    forms = verbalizer.forms("en")
    form_probs = qwen3_vl_backend.score(
        [chip.image for chip in chips], question("en"), [form.text for form in forms]
    )
    for record, form_row, row in zip(
        records, form_probs, label_probabilities(form_probs, forms), strict=True
    ):
        assert list(json.loads(record["probs"]).values()) == pytest.approx(list(row), abs=1e-6)
        own = [(p, f.text) for p, f in zip(form_row, forms, strict=True)
               if f.label == record["label"]]
        assert record["answer"] == max(own)[1]


def _classify_scene(backend, scene, out, verbalizer):
    return classify_scenes(
        one_scene(scene, TilingOptions(size=256)),
        RunOptions(out, batch_size=4, progress=ProgressMode.NONE),
        ModelRun(lambda: backend, {"model": "tiny"}), ClassifySettings(verbalizer=verbalizer),
    )


def test_resume_with_other_answer_forms_is_refused(qwen3_vl_backend, geotiff_dir, tmp_path):
    scene, out = geotiff_dir / "rasterio/cogeo.tif", tmp_path / "forms.gpkg"
    first = _classify_scene(qwen3_vl_backend, scene, out, DEFAULT_FORMS)
    again = _classify_scene(qwen3_vl_backend, scene, out, Verbalizer.default())
    assert again.already_done == first.written == 16 and again.written == 0
    other = Verbalizer.from_mapping({"en": {"wind": ["Hurricane damage"]}})
    with pytest.raises(OutputError, match="different command or parameters"):
        _classify_scene(qwen3_vl_backend, scene, out, other)
    japanese_only = Verbalizer.from_mapping({"ja": {"wind": ["台風"]}})  # not the language asked
    assert _classify_scene(qwen3_vl_backend, scene, out, japanese_only).written == 0


def test_batch_size_does_not_change_results(qwen3_vl_dir, geotiff_dir, tmp_path):
    scene = geotiff_dir / "rasterio/cogeo.tif"
    one = _classify(scene, tmp_path / "one.gpkg", qwen3_vl_dir, "--size", "256",
                    "--batch-size", "1")
    many = _classify(scene, tmp_path / "many.gpkg", qwen3_vl_dir, "--size", "256",
                     "--batch-size", "7")
    assert one.exit_code == many.exit_code == 0
    a, b = _layer(tmp_path / "one.gpkg"), _layer(tmp_path / "many.gpkg")
    assert list(a["label"]) == list(b["label"])
    assert np.allclose(a["confidence"], b["confidence"], atol=1e-5)


def test_text_only_model_is_refused_before_any_output(gemma_text_dir, geotiff_dir, tmp_path):
    out = tmp_path / "o.gpkg"
    result = _classify(geotiff_dir / "rasterio/cogeo.tif", out, gemma_text_dir)
    assert result.exit_code == 2
    assert "text only" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_missing_model_gives_one_sentence_and_no_output(geotiff_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "o.gpkg"
    result = _classify(geotiff_dir / "rasterio/cogeo.tif", out, "example-org/no-such-model")
    assert result.exit_code == 2
    assert "example-org/no-such-model" in result.output and "--model PATH" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_scene_is_reported_before_the_model_loads(tmp_path):
    result = _classify(tmp_path / "missing.tif", tmp_path / "o.gpkg", "example-org/never-loaded")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_classify_resumes_after_kill_9(qwen3_vl_dir, geotiff_dir, tmp_path):
    scene = geotiff_dir / "solaris/sample_geotiff.tif"  # 900 x 900 uint16 panchromatic
    extra = ["--size", "100", "--batch-size", "4", "--mode", "score"]  # 81 chips
    out = tmp_path / "killed.gpkg"
    # Killed at its first progress event with chips written; it starts first, and loads its
    # model while this process classifies the reference.
    run = SignalledRun(["classify", scene, "-o", out, "--model", qwen3_vl_dir, "--quantize",
                        "none", "--device", "cpu", *extra], signal.SIGKILL)
    reference = tmp_path / "reference.gpkg"
    assert _classify(scene, reference, qwen3_vl_dir, *extra).exit_code == 0
    total = len(_layer(reference))
    killed_at = run.wait()
    assert run.process.returncode == -signal.SIGKILL
    partial = count_rows(out)
    assert 0 < killed_at["done"] <= partial < total, "the run must be killed part-way"
    assert_valid_geopackage(out)

    resumed = _classify(scene, out, qwen3_vl_dir, *extra, "--progress", "json")
    assert resumed.exit_code == 0, resumed.output
    done = json.loads(resumed.output.strip().splitlines()[-1])
    assert done["already_done"] == partial and done["written"] == total - partial
    a = _layer(reference).sort_values("chip_id").reset_index(drop=True)
    b = _layer(out).sort_values("chip_id").reset_index(drop=True)
    assert list(a["chip_id"]) == list(b["chip_id"])
    assert list(a["label"]) == list(b["label"])
    assert np.allclose(a["confidence"], b["confidence"], atol=1e-5)
    assert a.geometry.geom_equals(b.geometry).all()
    assert_valid_geopackage(out)


def test_classify_settings_validate():
    with pytest.raises(ValueError, match="between 0 and 1"):
        ClassifySettings(min_confidence=2.0)
    with pytest.raises(ValueError):
        ClassifyMode("vote")


def test_classify_with_4bit_weights_and_a_lora_adapter_on_cpu(
    qwen3_vl_dir, qwen3_vl_adapter_dir, geotiff_dir, tmp_path
):
    out = tmp_path / "nf4.gpkg"
    result = CliRunner().invoke(cli, [
        "classify", str(geotiff_dir / "rasterio/cogeo.tif"), "-o", str(out), "--model",
        str(qwen3_vl_dir), "--adapter", str(qwen3_vl_adapter_dir), "--quantize", "4bit",
        "--device", "cpu", "--size", "256", "--batch-size", "4",
    ])
    assert result.exit_code == 0, result.output
    frame = _layer(out)
    assert len(frame) == 16
    assert all(sum(json.loads(p).values()) == pytest.approx(1.0, abs=1e-4) for p in frame["probs"])
    with sqlite3.connect(out) as db:
        parameters = json.loads(db.execute("SELECT parameters FROM runs").fetchone()[0])
    assert parameters["quantize"] == "4bit"
    assert parameters["adapter"] == str(qwen3_vl_adapter_dir)
