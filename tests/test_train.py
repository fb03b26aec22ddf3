"""`geovlm train` on CPU: a tiny random Qwen3-VL learns the colour-coded disaster types.

One full fine-tuning run (`trained_qwen3_vl`, session-scoped) serves the learning proof, the
output layout, classify and resume; a few-step LoRA run checks the adapter output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from geovlm.cli import cli
from geovlm.datasets import read_dataset
from geovlm.models import FOLDER_PRESET, resolve_model
from geovlm.prompts import DisasterLabel, Language, question
from geovlm.verbalizer import label_probabilities

LABELS = list(DisasterLabel)


def _train(*args: str):
    return CliRunner().invoke(cli, ["train", "--device", "cpu", "--progress", "none", *args])


def held_out_accuracy(backend, preset, dataset: Path) -> dict[str, float]:
    """Share of test samples whose likeliest label (over all its forms) is right, per language."""
    data = read_dataset(dataset)
    scores = {}
    for language in Language:
        samples = [s for s in data.test if s.language is language]
        images = [Image.open(data.image_path(s)).convert("RGB") for s in samples]
        forms = preset.answers.forms(language)
        probs = backend.score(images, question(language), [f.text for f in forms])
        best = label_probabilities(probs, forms).argmax(axis=1)
        scores[language.value] = float(np.mean(
            [LABELS[i].value == s.label for i, s in zip(best, samples, strict=True)]
        ))
    return scores


@pytest.fixture(scope="module")
def trained_backend(trained_qwen3_vl):
    from geovlm.backends.hf import HFBackend

    preset = resolve_model(str(trained_qwen3_vl))
    backend = HFBackend.load(preset.model_id, adapter=preset.adapter_id, quantize="none",
                             device="cpu", template=preset.template,
                             image_max_pixels=preset.image_max_pixels)
    return preset, backend


def test_training_learns_what_the_untrained_model_cannot(
    trained_backend, qwen3_vl_backend, disaster_dataset
):
    preset, backend = trained_backend
    before = held_out_accuracy(qwen3_vl_backend, preset, disaster_dataset)
    after = held_out_accuracy(backend, preset, disaster_dataset)
    assert all(score >= 0.95 for score in after.values()), after
    assert np.mean(list(before.values())) <= 0.4, before  # chance is 1/6


def test_output_folder_layout_and_preset(trained_qwen3_vl, qwen3_vl_dir, disaster_dataset):
    out = trained_qwen3_vl
    for name in ("geovlm-train.json", "trainer_log.jsonl", "loss.png", "train_results.json",
                 FOLDER_PRESET, "config.json", "model.safetensors", "tokenizer.json",
                 "checkpoint-100", "checkpoint-210"):
        assert (out / name).exists(), name
    assert not list(out.glob(".*partial*"))
    rows = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, 211))
    assert set(rows[0]) == {"step", "epoch", "loss", "lr", "elapsed", "eta", "samples_per_s"}
    assert rows[-1]["loss"] < rows[0]["loss"] / 20
    assert rows[-1]["eta"] == 0 and rows[-1]["epoch"] == pytest.approx(10)
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "train_results.json").read_text())
    assert results["steps"] == 210 and results["finetuning"] == "full"
    raw = yaml.safe_load((out / FOLDER_PRESET).read_text())
    assert (raw["model_id"], raw["adapter_id"], raw["chip_size"]) == (".", None, 64)
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


def test_classify_uses_the_trained_folder(trained_qwen3_vl, geotiff_dir, tmp_path):
    out = tmp_path / "classified.gpkg"
    result = CliRunner().invoke(cli, [
        "classify", str(geotiff_dir / "rasterio/RGB.byte.tif"), "-o", str(out),
        "--model", str(trained_qwen3_vl), "--size", "64", "--device", "cpu", "-q",
    ])
    assert result.exit_code == 0, result.output
    frame = pyogrio.read_dataframe(out, layer="chips")
    assert len(frame) > 10
    assert set(frame["label"]) <= {label.value for label in DisasterLabel}


def test_resume_continues_from_the_last_checkpoint(
    trained_qwen3_vl, disaster_dataset, qwen3_vl_dir, tmp_path
):
    """A run killed after checkpoint-100 resumes there and ends where the whole run ended."""
    out = tmp_path / "killed"
    shutil.copytree(trained_qwen3_vl, out)
    for late in ("checkpoint-200", "checkpoint-210"):
        shutil.rmtree(out / late)
    for name in (FOLDER_PRESET, "model.safetensors", "train_results.json", "loss.png"):
        (out / name).unlink()
    args = ["--config", "tiny-cpu", "--data", str(disaster_dataset), "--model", str(qwen3_vl_dir),
            "--output", str(out)]
    assert "--resume" in _train(*args).output  # refused without --resume
    result = _train(*args, "--resume")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, 211))
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
