"""Training inputs: sequences tokenized exactly as inference encodes, batches, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from geovlm.cli import cli
from geovlm.errors import ParameterError
from geovlm.labels.prompts import question
from geovlm.models.presets import FOLDER_PRESET, resolve_model
from geovlm.training.data import IGNORE_INDEX, Collator, SequenceBuilder

ANSWER = "A fire disaster occurred in this image."


@pytest.fixture(scope="module")
def builder(qwen3_vl_backend):
    return SequenceBuilder.for_processor(qwen3_vl_backend.loaded.processor, "qwen3_vl_nothink",
                                         None, 2048)


def test_a_sequence_is_the_scored_prompt_then_the_scored_answer(qwen3_vl_backend, builder):
    image = Image.new("RGB", (64, 96), (10, 200, 30))
    sequence = builder.build(question("ja"), ANSWER, image)
    prompt = qwen3_vl_backend.encode([image], [question("ja")])
    n = prompt["input_ids"].shape[1]
    reply = qwen3_vl_backend.answer_ids(ANSWER)
    assert sequence["input_ids"].tolist() == prompt["input_ids"][0].tolist() + reply
    assert sequence["labels"].tolist() == [IGNORE_INDEX] * n + reply
    assert sequence["mm_token_type_ids"][:n].tolist() == prompt["mm_token_type_ids"][0].tolist()
    assert sequence["mm_token_type_ids"][n:].eq(0).all()
    torch.testing.assert_close(sequence["pixel_values"], prompt["pixel_values"])
    assert torch.equal(sequence["image_grid_thw"], prompt["image_grid_thw"])


def test_cutoff_cuts_the_answer_never_the_prompt(builder):
    image = Image.new("RGB", (64, 64))
    full = builder.build(question("en"), ANSWER, image)
    n = int((full["labels"] == IGNORE_INDEX).sum())
    short = SequenceBuilder.for_processor(builder.processor, "qwen3_vl_nothink", None, n + 2)
    assert short.build(question("en"), ANSWER, image)["input_ids"].tolist() == (
        full["input_ids"][: n + 2].tolist())
    tight = SequenceBuilder.for_processor(builder.processor, "qwen3_vl_nothink", None, n)
    with pytest.raises(ParameterError, match="raise cutoff_len"):
        tight.build(question("en"), ANSWER, image)


def test_batches_pad_right_and_loss_falls_on_answers_only(qwen3_vl_backend, builder):
    images = [Image.new("RGB", (64, 64), (200, 0, 0)), Image.new("RGB", (96, 64), (0, 0, 200))]
    features = [builder.build(question("en"), ANSWER, images[0]),
                builder.build(question("zh"), "洪水", images[1])]
    batch = Collator(builder.pad_id)(features)
    lengths = [len(f["input_ids"]) for f in features]
    assert batch["input_ids"].shape == (2, max(lengths))
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    assert batch["input_ids"][1, lengths[1]:].eq(builder.pad_id).all()
    assert batch["pixel_values"].shape[0] == sum(f["pixel_values"].shape[0] for f in features)
    assert batch["image_grid_thw"].shape == (2, 3)
    model = qwen3_vl_backend.model
    with torch.no_grad():
        out = model(**batch)
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    mask = labels != IGNORE_INDEX
    manual = torch.nn.functional.cross_entropy(logits[mask], labels[mask])
    torch.testing.assert_close(out.loss, manual)


def test_a_folder_preset_reads_relative_to_its_folder(tmp_path, qwen3_vl_dir):
    folder = tmp_path / "my-run"
    folder.mkdir()
    (folder / FOLDER_PRESET).write_text(
        f"name: anything\nmodel_id: {qwen3_vl_dir}\nadapter_id: .\nfamily: qwen3_vl\n"
        "chip_size: 128\ngsd: 0.5\nsupports_images: true\n")
    preset = resolve_model(str(folder))
    assert (preset.model_id, preset.adapter_id) == (str(qwen3_vl_dir), str(folder.resolve()))
    assert (preset.name, preset.chip_size, preset.gsd) == ("anything", 128, 0.5)


@pytest.fixture
def no_weights(monkeypatch):
    """Refusals must come before any weights load."""
    def refuse(plan):
        raise AssertionError(f"weights of {plan.model} loaded before the refusal")

    monkeypatch.setattr("geovlm.training.model.load_weights", refuse)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--config", "nope"], "no training config nope"),
        (["--set", "lora_rnak=2"], "did you mean lora_rank?"),
        (["--set", "cutoff_len=8"], "raise cutoff_len"),
        (["--set", "template=llama3"], "unknown chat template"),
        (["--device", "tpu"], "--device tpu"),
        (["--resume"], "no training run to resume"),
        (["--resume", "--overwrite"], "pass one"),
        (["--model", "nobody/no-such-model"], "not in the Hugging Face cache"),
    ],
)
def test_wrong_arguments_exit_2_before_loading(
    no_weights, qwen3_vl_dir, disaster_dataset, tmp_path, extra, message
):
    args = ["train", "--config", "tiny-cpu", "--data", str(disaster_dataset), "--model",
            str(qwen3_vl_dir), "--output", str(tmp_path / "out"), *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_bad_data_model_and_output_are_refused(
    no_weights, qwen3_vl_dir, gemma_text_dir, disaster_dataset, tmp_path
):
    def run(data: Path, model: Path, output: Path) -> str:
        result = CliRunner().invoke(cli, ["train", "--config", "tiny-cpu", "--data", str(data),
                                          "--model", str(model), "--output", str(output)])
        assert result.exit_code == 2, result.output
        return result.output

    assert "no geovlm dataset" in run(tmp_path, qwen3_vl_dir, tmp_path / "a")
    assert "reads text only" in run(disaster_dataset, gemma_text_dir, tmp_path / "b")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert "holds no geovlm training run" in run(disaster_dataset, qwen3_vl_dir, foreign)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_a_recipe_without_a_model_asks_for_one(no_weights, disaster_dataset, tmp_path):
    result = CliRunner().invoke(cli, ["train", "--config", "tiny-cpu", "--data",
                                      str(disaster_dataset), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "names no base model: pass --model" in result.output


def test_help():
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0 and "--resume" in result.output and "--set" in result.output


def test_answers_that_name_two_labels_are_refused(no_weights, qwen3_vl_dir, tmp_path):
    from geovlm.datasets import DatasetWriter, Sample, SplitRule, Task
    from geovlm.labels.prompts import Language

    with DatasetWriter(tmp_path / "ds", "test", SplitRule(test_fraction=0)) as writer:
        for label in ("fire", "flood"):
            image = writer.add_image(label, Image.new("RGB", (64, 64)))
            writer.add(Sample(image, question("en"), "Disaster.", label, Language.EN,
                              Task.DISASTER, label, label))
    result = CliRunner().invoke(cli, ["train", "--config", "tiny-cpu", "--data",
                                      str(tmp_path / "ds"), "--model", str(qwen3_vl_dir),
                                      "--output", str(tmp_path / "out")])
    assert result.exit_code == 2 and "cannot be told apart" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_a_finished_run_is_not_resumed(tmp_path):
    """Trainer would run one step past the end of a finished run: --resume refuses it."""
    from geovlm.errors import OutputError
    from geovlm.training.outputs import RESULTS_FILE, OutputFolder

    run = {"config": {"seed": 1}, "model": "m", "data": "d"}
    folder = OutputFolder.claim(tmp_path / "out", run, resume=False, overwrite=False)
    assert OutputFolder.claim(folder.path, run, resume=True, overwrite=False) == folder
    (folder.path / RESULTS_FILE).write_text("{}")
    with pytest.raises(OutputError, match="finished run"):
        OutputFolder.claim(folder.path, run, resume=True, overwrite=False)


def test_a_two_image_sequence_masks_all_but_the_answer(qwen3_vl_backend, builder):
    """Pre and post crops in one prompt, in order; a batch may mix one- and two-image samples."""
    from geovlm.labels.building_damage import building_question, grade_answer

    pre, post = Image.new("RGB", (64, 64), (200, 0, 0)), Image.new("RGB", (64, 64), (0, 0, 200))
    ask, answer = building_question("en"), grade_answer("destroyed")
    sequence = builder.build(ask, answer, [pre, post])
    prompt = builder.chat.render(ask, image=2)
    assert prompt.count("<|image_pad|>") == 2
    encoded = builder.processor(text=[prompt], images=[pre, post], return_tensors="pt",
                                add_special_tokens=False, **builder.size_kwargs)
    n = encoded["input_ids"].shape[1]
    reply = qwen3_vl_backend.answer_ids(answer)
    assert sequence["input_ids"].tolist() == encoded["input_ids"][0].tolist() + reply
    assert sequence["labels"].tolist() == [IGNORE_INDEX] * n + reply
    image_id = builder.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((sequence["input_ids"] == image_id).sum()) == 2 * 4  # 4 tokens per 64 px image
    assert sequence["image_grid_thw"].tolist() == [[1, 4, 4], [1, 4, 4]]
    assert sequence["pixel_values"].shape[0] == 2 * 16
    swapped = builder.build(ask, answer, [post, pre])
    assert torch.equal(swapped["pixel_values"][:16], sequence["pixel_values"][16:])
    one = builder.build(question("en"), ANSWER, pre)
    batch = Collator(builder.pad_id)([sequence, one])
    assert batch["image_grid_thw"].shape == (3, 3)
    assert batch["pixel_values"].shape[0] == 3 * 16
    with torch.no_grad():
        out = qwen3_vl_backend.model(**batch)
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    mask = labels != IGNORE_INDEX
    assert int(mask.sum()) == len(reply) + len(qwen3_vl_backend.answer_ids(ANSWER))
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(logits[mask],
                                                                           labels[mask]))
