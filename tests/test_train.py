"""`geovlm train` on CPU: a tiny random Qwen3-VL learns the disaster types of synthetic xBD.

The proof runs the user's path (`tests.training_fixtures`): synthetic xBD, ``geovlm dataset
from-xbd --split event``, ``geovlm train --config tiny-cpu`` once per session
(`trained_qwen3_vl`), then ``geovlm eval`` on the held-out events, ``--fit-calibration`` and
``geovlm classify`` with the calibrated folder. The same run serves the output layout and
resume; a few-step LoRA run checks the adapter output.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pyogrio
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from geovlm.cli import cli
from geovlm.datasets import read_dataset
from geovlm.labels.calibration import Calibration
from geovlm.labels.prompts import DisasterLabel, Language, question
from geovlm.models.presets import FOLDER_PRESET, ModelPreset, resolve_model
from tests.training_fixtures import HELD_OUT_EVENTS, invoke

#: Steps of the tiny-cpu recipe on `disaster_dataset`: 10 epochs of 72 samples in batches of 4.
STEPS = 180


def _train(*args: str):
    return CliRunner().invoke(cli, ["train", "--device", "cpu", "--progress", "none", *args])


def _eval_report(data: Path, model: Path, out: Path, *extra: str) -> dict:
    """``geovlm eval`` of the test split of ``data``: the report.json it writes."""
    invoke("eval", "--data", str(data), "--model", str(model), "--device", "cpu",
           "-o", str(out), "--progress", "none", *extra)
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def calibrated(trained_qwen3_vl, disaster_dataset, tmp_path_factory) -> tuple[Path, dict]:
    """A copy of the trained folder calibrated by ``geovlm eval --fit-calibration`` on the
    held-out events, and that evaluation's report."""
    root = tmp_path_factory.mktemp("calibrated")
    model = shutil.copytree(trained_qwen3_vl, root / "model")
    return model, _eval_report(disaster_dataset, model, root / "report", "--fit-calibration")


def test_training_learns_what_the_untrained_model_cannot(
    calibrated, qwen3_vl_dir, disaster_dataset, tmp_path
):
    _, after = calibrated
    held_out = read_dataset(disaster_dataset).manifest["test"]["events"]
    assert sorted(held_out) == sorted(HELD_OUT_EVENTS)
    assert after["samples"] == 72 and after["context"]["split"] == "test"
    assert after["classification"]["accuracy"] >= 0.95, after["classification"]
    by_language = {row["language"]: row["accuracy"] for row in after["per_language"]}
    assert set(by_language) == {language.value for language in Language}
    assert min(by_language.values()) >= 0.9, by_language
    before = _eval_report(disaster_dataset, qwen3_vl_dir, tmp_path / "untrained")
    assert before["samples"] == after["samples"]
    assert before["classification"]["accuracy"] <= 0.45, before["classification"]  # chance: 1/6


def test_fit_calibration_lands_in_the_preset_and_classify_applies_it(
    calibrated, geotiff_dir, tmp_path
):
    model, report = calibrated
    fitted = report["fitted_calibration"]
    assert fitted["folds"] >= 2 and 0 <= fitted["held_out"]["ece"] <= 1
    calibration = ModelPreset.from_yaml(model / FOLDER_PRESET).calibration
    assert calibration is not None
    assert calibration == Calibration.from_mapping(fitted["calibration"])
    assert calibration.temperature != 1.0
    out = tmp_path / "classified.gpkg"
    invoke("classify", str(geotiff_dir / "rasterio/RGB.byte.tif"), "-o", str(out),
           "--model", str(model), "--size", "64", "--device", "cpu", "-q")
    frame = pyogrio.read_dataframe(out, layer="chips")
    assert len(frame) > 10
    assert set(frame["label"]) <= {label.value for label in DisasterLabel}
    with sqlite3.connect(out) as db:
        parameters = json.loads(db.execute("SELECT parameters FROM runs").fetchone()[0])
    assert parameters["calibration"] == calibration.to_mapping()


def test_output_folder_layout_and_preset(trained_qwen3_vl, qwen3_vl_dir, disaster_dataset):
    out = trained_qwen3_vl
    for name in ("geovlm-train.json", "trainer_log.jsonl", "loss.png", "train_results.json",
                 FOLDER_PRESET, "config.json", "model.safetensors", "tokenizer.json",
                 "checkpoint-100", f"checkpoint-{STEPS}"):
        assert (out / name).exists(), name
    assert not list(out.glob(".*partial*"))
    rows = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, STEPS + 1))
    assert set(rows[0]) == {"step", "epoch", "loss", "lr", "elapsed", "eta", "samples_per_s"}
    assert rows[-1]["loss"] < rows[0]["loss"] / 20
    assert rows[-1]["eta"] == 0 and rows[-1]["epoch"] == pytest.approx(10)
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "train_results.json").read_text())
    assert results["steps"] == STEPS and results["finetuning"] == "full"
    raw = yaml.safe_load((out / FOLDER_PRESET).read_text())
    # An xBD set names no chip size: the base's stays.
    base_chip = resolve_model(str(qwen3_vl_dir)).chip_size
    assert (raw["model_id"], raw["adapter_id"], raw["chip_size"]) == (".", None, base_chip)
    assert raw["answers"]["en"]["fire"][0] == "A fire disaster occurred in this image."
    preset = resolve_model(str(out))
    assert preset.model_id == str(out.resolve()) and preset.adapter_id is None
    assert (preset.template, preset.image_max_pixels, preset.gsd) == ("qwen3_vl_nothink", 4096,
                                                                      None)
    # The vision tower and merger are frozen; the language model learned.
    base = load_file(qwen3_vl_dir / "model.safetensors")
    tuned = load_file(out / "model.safetensors")
    visual = [k for k in base if ".visual." in k]
    assert visual and all(torch.equal(base[k], tuned[k]) for k in visual)
    assert not torch.equal(base["model.language_model.layers.0.mlp.up_proj.weight"],
                           tuned["model.language_model.layers.0.mlp.up_proj.weight"])


def test_resume_continues_from_the_last_checkpoint(
    trained_qwen3_vl, disaster_dataset, qwen3_vl_dir, tmp_path
):
    """A run killed after checkpoint-100 resumes there and ends where the whole run ended."""
    out = tmp_path / "killed"
    shutil.copytree(trained_qwen3_vl, out)
    shutil.rmtree(out / f"checkpoint-{STEPS}")
    for name in (FOLDER_PRESET, "model.safetensors", "train_results.json", "loss.png"):
        (out / name).unlink()
    args = ["--config", "tiny-cpu", "--data", str(disaster_dataset), "--model", str(qwen3_vl_dir),
            "--output", str(out)]
    assert "--resume" in _train(*args).output  # refused without --resume
    result = _train(*args, "--resume")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, STEPS + 1))
    whole = [json.loads(line) for line in
             (trained_qwen3_vl / "trainer_log.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] == pytest.approx(whole[-1]["loss"], rel=1e-5)
    assert rows[100]["elapsed"] > rows[99]["elapsed"]  # the clock continues
    assert (out / FOLDER_PRESET).is_file()
    resumed = load_file(out / "model.safetensors")
    uninterrupted = load_file(trained_qwen3_vl / "model.safetensors")
    for key, value in uninterrupted.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-5, atol=1e-6)


def test_resume_with_other_settings_is_refused(
    trained_qwen3_vl, disaster_dataset, qwen3_vl_dir, tmp_path
):
    out = tmp_path / "copy"
    shutil.copytree(trained_qwen3_vl, out)
    result = _train("--config", "tiny-cpu", "--data", str(disaster_dataset), "--output", str(out),
                    "--model", str(qwen3_vl_dir), "--resume", "--set", "learning_rate=1e-3")
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "learning_rate" in result.output and "--resume" not in result.output


def test_lora_output_is_a_standard_peft_adapter(qwen3_vl_dir, disaster_dataset, tmp_path):
    from peft import PeftModel
    from transformers import Qwen3VLForConditionalGeneration

    from geovlm.backends.hf import HFBackend

    out = tmp_path / "lora"
    result = _train("--config", "tiny-cpu", "--data", str(disaster_dataset), "--model",
                    str(qwen3_vl_dir), "--output", str(out), "--set", "finetuning_type=lora",
                    "--set", "max_steps=3", "--set", "save_steps=3", "--set", "lora_rank=4",
                    "--set", "gradient_checkpointing=true",
                    "--progress", "json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == ["start", "progress", "progress", "progress", "done"]
    assert events[0]["total"] == 3 and "loss" in events[-2] and events[-2]["eta_s"] == 0
    assert events[-1]["steps"] == 3 and events[-1]["finetuning"] == "lora"
    assert not (out / "model.safetensors").exists()
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(qwen3_vl_dir.resolve())
    assert adapter["r"] == 4 and adapter["peft_type"] == "LORA"
    weights = load_file(out / "adapter_model.safetensors")
    assert weights and all(".language_model." in key for key in weights)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items())
    checkpoint = load_file(out / "checkpoint-3" / "adapter_model.safetensors")
    assert all(torch.equal(checkpoint[k], weights[k]) for k in weights)
    preset = resolve_model(str(out))
    assert (preset.model_id, preset.adapter_id) == (str(qwen3_vl_dir.resolve()), str(out.resolve()))

    # peft reloads it on the base; geovlm's loader (adapter merged) gives the same logits.
    backend = HFBackend.load(preset.model_id, adapter=preset.adapter_id, quantize="none",
                             device="cpu", template=preset.template)
    inputs = backend.encode([Image.new("RGB", (64, 64), (200, 40, 30))], [question("en")])
    peft = PeftModel.from_pretrained(
        Qwen3VLForConditionalGeneration.from_pretrained(qwen3_vl_dir), out).eval()
    base = Qwen3VLForConditionalGeneration.from_pretrained(qwen3_vl_dir).eval()
    with torch.no_grad():
        reloaded = peft(**inputs).logits
        merged = backend.model(**inputs).logits
        plain = base(**inputs).logits
    torch.testing.assert_close(reloaded, merged, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(reloaded, plain, atol=1e-6)


def test_qlora_wraps_4bit_language_layers_only_and_gets_gradients(qwen3_vl_dir, disaster_dataset):
    """The CUDA recipe's set-up (NF4 base, k-bit preparation, checkpointing, LoRA), on the CPU.

    `plan_training` never quantizes on the CPU; here the plan asks for 4-bit directly, on a
    freshly loaded model (the notes: bitsandbytes' CPU gradients are right only then).
    """
    import bitsandbytes as bnb

    from geovlm.backends.preflight import plan_model
    from geovlm.training.config import TrainConfig
    from geovlm.training.data import Collator, SequenceBuilder
    from geovlm.training.model import load_for_training

    config = TrainConfig.from_yaml("qwen3vl_8b_xview2_4bit")
    net, processor = load_for_training(plan_model(str(qwen3_vl_dir), quantize="4bit",
                                                  device="cpu"), config)
    wrapped = {name.removesuffix(".lora_A") for name, _ in net.named_modules()
               if name.endswith(".lora_A")}
    assert len(wrapped) == 2 * 7  # 2 layers x q, k, v, o, gate, up, down
    assert all(".language_model." in name for name in wrapped)
    assert isinstance(net.get_submodule(next(iter(wrapped))).base_layer, bnb.nn.Linear4bit)
    assert net.peft_config["default"].base_model_name_or_path == str(qwen3_vl_dir.resolve())
    builder = SequenceBuilder.for_processor(processor, config.template, config.image_max_pixels,
                                            config.cutoff_len)
    data = read_dataset(disaster_dataset)
    batch = Collator(builder.pad_id)([
        builder.build(s.question, s.answer, Image.open(data.image_path(s))) for s in data.train[:2]
    ])
    net(**batch).loss.backward()
    grads = {n: p.grad for n, p in net.named_parameters() if p.requires_grad}
    assert grads and all("lora_" in n for n in grads)
    # lora_B starts at zero, so only its gradients are non-zero at the first step.
    assert all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)
