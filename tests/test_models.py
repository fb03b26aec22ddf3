"""Model presets: the shipped YAML files, resolution by name/folder/id, offline availability."""

import dataclasses
import doctest
import json
from pathlib import Path

import pytest

import geovlm
import geovlm.models.presets
from geovlm.errors import GeovlmError, ModelNotFoundError, PresetError
from geovlm.labels.verbalizer import Verbalizer
from geovlm.models.preset_files import SHIPPED_PRESETS
from geovlm.models.presets import (
    DEFAULT_MODEL,
    ModelFamily,
    ModelPreset,
    availability,
    list_presets,
    resolve_model,
)
from geovlm.models.quantization import Quantization
from tests.helpers import ADAPTER_FILES, MODEL_FILES, cache_snapshot

EXPECTED = {
    "xview2-qwen3vl": dict(
        model_id="Qwen/Qwen3-VL-8B-Instruct",
        adapter_id="WayBob/Qwen3VL-8B-QLora-4bit-xView2-Disaster-Recognition",
        family=ModelFamily.QWEN3_VL,
        template="qwen3_vl_nothink",
        image_max_pixels=262144,
        chip_size=512,
        gsd=3.5,
        supports_images=True,
    ),
    "vqwen3-4b": dict(
        model_id="alpharomercoma/vqwen3-4b",
        adapter_id=None,
        family=ModelFamily.LLAVA,
        template=None,
        chip_size=336,
        gsd=None,
        supports_images=True,
    ),
    "gemma-aerial": dict(
        model_id="luisml77/gemma-aerial-12b",
        adapter_id=None,
        family=ModelFamily.GEMMA,
        supports_images=False,
    ),
}

GOOD_YAML = """\
name: {name}
model_id: org/model
family: qwen3_vl
chip_size: 256
supports_images: true
"""


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache in a temp dir, so the real one never matters."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _cache_repo(cache: Path, repo_id: str, filename: str, content: dict) -> Path:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    sha = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / sha
    snapshot.mkdir(parents=True)
    (snapshot / filename).write_text(json.dumps(content))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    return snapshot


def test_presets_ship_inside_the_package():
    assert Path(str(SHIPPED_PRESETS)) == Path(geovlm.__file__).parent / "presets"
    shipped = sorted(p.name for p in SHIPPED_PRESETS.iterdir())
    assert shipped == sorted(f"{name}.yaml" for name in EXPECTED)


def test_every_preset_loads_with_documented_ids():
    presets = {p.name: p for p in list_presets()}
    assert list(presets) == sorted(EXPECTED)
    for name, fields in EXPECTED.items():
        preset = presets[name]
        for key, value in fields.items():
            assert getattr(preset, key) == value, (name, key)
        assert preset.quantize is Quantization.AUTO
        assert preset.description
        assert resolve_model(name) == preset


def test_default_model_is_the_seed_adapter():
    preset = resolve_model(DEFAULT_MODEL)
    assert preset.adapter_id is not None
    assert preset.family is ModelFamily.QWEN3_VL


def test_preset_is_frozen():
    preset = resolve_model(DEFAULT_MODEL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.chip_size = 1


def test_resolve_local_model_folder(tmp_path, hub_cache):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3_vl", "vision_config": {}}))
    preset = resolve_model(str(folder))
    assert preset.name == preset.model_id == str(folder)
    assert preset.adapter_id is None
    assert preset.family is ModelFamily.QWEN3_VL
    assert preset.supports_images
    assert (preset.chip_size, preset.gsd, preset.template) == (512, None, None)


@pytest.mark.parametrize(
    ("model_type", "family", "images"),
    [
        ("llava", ModelFamily.LLAVA, True),
        ("gemma2", ModelFamily.GEMMA, False),
        ("gemma3_text", ModelFamily.GEMMA, False),
        ("bert", ModelFamily.UNKNOWN, False),
    ],
)
def test_family_from_folder_config(tmp_path, hub_cache, model_type, family, images):
    config = {"model_type": model_type}
    if images:
        config["vision_config"] = {}
    (tmp_path / "config.json").write_text(json.dumps(config))
    preset = resolve_model(str(tmp_path))
    assert preset.family is family
    assert preset.supports_images is images


def test_resolve_adapter_folder(tmp_path, hub_cache):
    (tmp_path / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "Qwen/Qwen3-VL-8B-Instruct", "peft_type": "LORA"})
    )
    preset = resolve_model(str(tmp_path))
    assert preset.model_id == "Qwen/Qwen3-VL-8B-Instruct"
    assert preset.adapter_id == str(tmp_path)


def test_resolve_unknown_hub_id(hub_cache):
    preset = resolve_model("someone/some-vlm")
    assert preset.name == preset.model_id == "someone/some-vlm"
    assert preset.family is ModelFamily.UNKNOWN
    assert preset.adapter_id is None
    assert (preset.chip_size, preset.gsd, preset.template) == (512, None, None)
    assert preset.quantize is Quantization.AUTO


def test_resolve_cached_hub_id_reads_its_config(hub_cache):
    _cache_repo(hub_cache, "org/cached-llava", "config.json", {"model_type": "llava"})
    assert resolve_model("org/cached-llava").family is ModelFamily.LLAVA


def test_resolve_missing_path_fails(tmp_path):
    with pytest.raises(ModelNotFoundError, match="is not a folder"):
        resolve_model(str(tmp_path / "nowhere"))


def test_availability_false_for_real_ids_offline(hub_cache):
    for preset in list_presets():
        assert availability(preset.model_id) is False
        if preset.adapter_id:
            assert availability(preset.adapter_id) is False


def test_availability_local_folders(tmp_path):
    assert availability(str(tmp_path)) is False  # no config
    for name in MODEL_FILES:
        assert availability(str(tmp_path)) is False
        (tmp_path / name).write_text("{}")
    assert availability(str(tmp_path)) is True
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "x/y"}')
    assert availability(str(adapter)) is False  # no adapter weights
    (adapter / "adapter_model.safetensors").write_text("")
    assert availability(str(adapter)) is True
    assert availability(str(tmp_path / "missing")) is False


def test_availability_fake_hf_cache(hub_cache):
    assert availability("org/name") is False
    cache_snapshot(hub_cache, "org/name", *MODEL_FILES)
    assert availability("org/name") is True
    cache_snapshot(hub_cache, "org/adapter", *ADAPTER_FILES)
    assert availability("org/adapter") is True
    assert availability("org/other") is False


def test_interrupted_download_is_not_available(hub_cache):
    """A snapshot with config.json only is what an interrupted download leaves."""
    cache_snapshot(hub_cache, "org/partial", "config.json")
    assert availability("org/partial") is False
    cache_snapshot(hub_cache, "org/partial-adapter", "adapter_config.json")
    assert availability("org/partial-adapter") is False
    # Its config.json still tells the family.
    assert resolve_model("org/partial").family is ModelFamily.LLAVA


def test_broken_config_is_ignored_by_ad_hoc_presets(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    preset = resolve_model(str(tmp_path))
    assert preset.family is ModelFamily.UNKNOWN and preset.supports_images


def test_custom_preset_folder(tmp_path):
    (tmp_path / "mine.yaml").write_text(GOOD_YAML.format(name="mine"))
    [preset] = list_presets(tmp_path)
    assert preset == ModelPreset.from_yaml(tmp_path / "mine.yaml")
    assert (preset.adapter_id, preset.gsd, preset.description) == (None, None, "")
    assert resolve_model("mine", folder=tmp_path) == preset


def test_preset_answers_replace_the_listed_labels(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        GOOD_YAML.format(name="mine") + "answers:\n  en:\n    fire: [Wildfire, Burn scar]\n"
    )
    [preset] = list_presets(tmp_path)
    assert preset.answers.table("en")["fire"] == ["Wildfire", "Burn scar"]
    assert preset.answers.table("en")["flood"] == Verbalizer.default().table("en")["flood"]
    assert preset.answers.table("ja") == Verbalizer.default().table("ja")


def test_presets_without_answers_use_the_built_in_forms(tmp_path, hub_cache):
    (tmp_path / "plain.yaml").write_text(GOOD_YAML.format(name="plain") + "answers:\n")
    assert ModelPreset.from_yaml(tmp_path / "plain.yaml").answers == Verbalizer.default()
    assert resolve_model("vqwen3-4b").answers == Verbalizer.default()
    assert resolve_model("someone/some-vlm").answers == Verbalizer.default()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: [unclosed", "not readable YAML"),
        ("- a\n- b\n", "mapping"),
        (GOOD_YAML.format(name="bad") + "colour: red\n", r"unknown keys \['colour'\]"),
        ("name: bad\nmodel_id: org/model\n", "lacks the keys"),
        (GOOD_YAML.format(name="bad").replace("256", "big"), "chip_size must be int"),
        (GOOD_YAML.format(name="bad").replace("256", "-4"), "chip_size must be positive"),
        (GOOD_YAML.format(name="bad").replace("true", "yes please"), "supports_images"),
        (GOOD_YAML.format(name="bad").replace("qwen3_vl", "mamba"), "qwen3_vl, llava, gemma"),
        (GOOD_YAML.format(name="bad") + "quantize: 3bit\n", "auto, 4bit, 8bit, none"),
        (GOOD_YAML.format(name="bad") + "gsd: fine\n", "gsd must be float"),
        (GOOD_YAML.format(name="other"), "rename it 'bad'"),
        (GOOD_YAML.format(name="bad") + "answers: [en]\n", "answers must be dict"),
        (GOOD_YAML.format(name="bad") + "answers:\n  fr:\n    fire: [Feu]\n",
         "unknown language 'fr'"),
        (GOOD_YAML.format(name="bad") + "answers:\n  en:\n    hail: [Hail]\n",
         "unknown disaster label 'hail'"),
        (GOOD_YAML.format(name="bad") + "answers:\n  en:\n    fire: []\n",
         r"answers\.en\.fire must be a non-empty list"),
        (GOOD_YAML.format(name="bad") + "answers:\n  en:\n    fire: [Fire, 3]\n",
         "non-blank strings"),
        (GOOD_YAML.format(name="bad") + "answers:\n  ja:\n    wind: [火災]\n",
         "lists '火災' under both fire and wind"),
    ],
)
def test_malformed_yaml(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PresetError, match=match) as info:
        list_presets(tmp_path)
    assert isinstance(info.value, GeovlmError)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message


def test_enum_errors_list_options():
    with pytest.raises(ValueError, match="qwen3_vl, llava, gemma, unknown"):
        ModelFamily("mamba")
    assert Quantization("4BIT") is Quantization.NF4


def test_doctests():
    result = doctest.testmod(geovlm.models.presets)
    assert result.attempted > 0
    assert result.failed == 0
