"""Training recipes: shipped files, typed overrides, one-sentence refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from geovlm.errors import ParameterError
from geovlm.training.config import (
    SHIPPED_CONFIGS,
    FinetuningType,
    LoraTarget,
    Schedule,
    TrainConfig,
    find_config,
)

REPO = Path(__file__).resolve().parents[1]


def test_the_seed_recipe_is_shipped_and_reads_as_the_model_card_says():
    config = TrainConfig.from_yaml("qwen3vl_8b_xview2_4bit")
    assert config.model_name_or_path == "Qwen/Qwen3-VL-8B-Instruct"
    assert config.template == "qwen3_vl_nothink"
    assert (config.finetuning_type, config.lora_target) == (FinetuningType.LORA, LoraTarget.ALL)
    assert (config.lora_rank, config.lora_alpha, config.lora_dropout) == (8, 16, 0.05)
    assert (config.learning_rate, config.per_device_train_batch_size,
            config.gradient_accumulation_steps, config.num_train_epochs) == (1e-4, 4, 2, 3.0)
    assert (config.lr_scheduler_type, config.warmup_ratio, config.bf16) == (Schedule.COSINE,
                                                                             0.1, True)
    assert (config.image_max_pixels, config.cutoff_len, config.quantization_bit) == (262144,
                                                                                     2048, 4)


def test_configs_train_is_the_package_folder():
    shipped = sorted(p.name for p in SHIPPED_CONFIGS.iterdir() if p.name.endswith(".yaml"))
    assert shipped == ["qwen3vl_8b_xview2_4bit.yaml", "tiny-cpu.yaml"]
    for name in shipped:
        path = REPO / "configs" / "train" / name
        assert path.read_text() == (SHIPPED_CONFIGS / name).read_text()
        assert TrainConfig.from_yaml(path) == TrainConfig.from_yaml(name.removesuffix(".yaml"))
    assert TrainConfig.from_yaml("tiny-cpu").finetuning_type is FinetuningType.FULL


def test_overrides_are_typed_by_their_field():
    config = TrainConfig.from_yaml("qwen3vl_8b_xview2_4bit").with_overrides([
        "learning_rate=2e-4", "num_train_epochs=1", "quantization_bit=null", "bf16=false",
        "finetuning_type=FULL", "template=none", "max_steps=7", "lr_scheduler_type=linear",
    ])
    assert config.learning_rate == 2e-4 and isinstance(config.num_train_epochs, float)
    assert config.quantization_bit is None and config.bf16 is False and config.template is None
    assert config.finetuning_type is FinetuningType.FULL and config.max_steps == 7
    assert config.as_dict()["lr_scheduler_type"] == "linear"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("learning_rat=1", "names no recipe setting: did you mean learning_rate?"),
        ("colour=red", "names no recipe setting: KEY is one of model_name_or_path,"),
        ("learning_rate", "must be KEY=VALUE, e.g."),
        ("lora_rank=2.5", "lora_rank must be int"),
        ("bf16=maybe", "bf16 must be bool"),
        ("finetuning_type=qlora", "unknown finetuning type 'qlora'"),
        ("lora_rank=0", "lora_rank must be positive"),
        ("quantization_bit=3", "quantization_bit must be 4, 8 or null"),
        ("warmup_ratio=1.5", "warmup_ratio must lie in [0, 1)"),
        ("cutoff_len=null", "cutoff_len cannot be null"),
    ],
)
def test_bad_overrides_are_one_sentence(assignment, message):
    with pytest.raises(ParameterError, match=message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")) as caught:
        TrainConfig.from_yaml("tiny-cpu").with_overrides([assignment])
    assert "\n" not in str(caught.value)


def test_unknown_keys_and_missing_files(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model_name_or_path: x\nlora_rnak: 8\n")
    with pytest.raises(ParameterError, match=r"unknown keys \['lora_rnak'\]"):
        TrainConfig.from_yaml(path)
    path.write_text("template: qwen3_vl_nothink\n")
    with pytest.raises(ParameterError, match="lacks model_name_or_path"):
        TrainConfig.from_yaml(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(ParameterError, match="YAML mapping"):
        TrainConfig.from_yaml(path)
    with pytest.raises(ParameterError, match="tiny-cpu"):
        find_config("no-such-recipe")
