"""Site presets: GEOVLM_PRESETS or the platform config folder, and which file wins a name."""

import logging
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from geovlm.cli import cli
from geovlm.errors import PresetError
from geovlm.models.preset_files import (
    SHIPPED_PRESETS,
    PresetOrigin,
    find_preset_files,
    site_preset_folders,
)
from geovlm.models.presets import list_presets, resolve_model

SHIPPED = ["gemma-aerial", "vqwen3-4b", "xview2-qwen3vl"]


def _preset(folder: Path, name: str, model_id: str = "org/model") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmodel_id: {model_id}\nfamily: qwen3_vl\nchip_size: 256\n"
        "supports_images: true\n"
    )
    return path


def test_shipped_presets_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("GEOVLM_PRESETS", str(tmp_path))
    found = find_preset_files()
    assert [f.name for f in found] == SHIPPED
    assert {f.origin for f in found} == {PresetOrigin.SHIPPED}
    assert all(f.path.name == f"{f.name}.yaml" and not f.replaces for f in found)


def test_site_preset_joins_the_shipped_ones(monkeypatch, tmp_path):
    path = _preset(tmp_path, "mine")
    (tmp_path / "notes.txt").write_text("not a preset")
    monkeypatch.setenv("GEOVLM_PRESETS", str(tmp_path))
    found = {f.name: f for f in find_preset_files()}
    assert sorted(found) == sorted([*SHIPPED, "mine"])
    assert (found["mine"].path, found["mine"].origin) == (path, PresetOrigin.SITE)
    assert resolve_model("mine").model_id == "org/model"
    assert [p.name for p in list_presets()] == sorted(found)


def test_site_preset_replaces_a_shipped_name_and_says_so(monkeypatch, tmp_path, caplog):
    path = _preset(tmp_path, "xview2-qwen3vl", model_id="/mirror/qwen3-vl-8b")
    monkeypatch.setenv("GEOVLM_PRESETS", str(tmp_path))
    with caplog.at_level(logging.INFO, logger="geovlm.models.preset_files"):
        found = {f.name: f for f in find_preset_files()}
    winner = found["xview2-qwen3vl"]
    assert (winner.path, winner.origin) == (path, PresetOrigin.SITE)
    assert winner.replaces == (SHIPPED_PRESETS / "xview2-qwen3vl.yaml",)
    assert f"{path} replaces {SHIPPED_PRESETS / 'xview2-qwen3vl.yaml'}" in caplog.text
    assert resolve_model("xview2-qwen3vl").model_id == "/mirror/qwen3-vl-8b"
    assert found["vqwen3-4b"].origin is PresetOrigin.SHIPPED


def test_earlier_site_folder_wins(monkeypatch, tmp_path):
    first = _preset(tmp_path / "team", "mine", model_id="org/team")
    second = _preset(tmp_path / "site", "mine", model_id="org/site")
    monkeypatch.setenv("GEOVLM_PRESETS", os.pathsep.join([str(first.parent), str(second.parent)]))
    [mine] = [f for f in find_preset_files() if f.name == "mine"]
    assert (mine.path, mine.replaces) == (first, (second,))
    assert resolve_model("mine").model_id == "org/team"


def test_missing_site_folder_is_one_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("GEOVLM_PRESETS", os.pathsep.join([str(tmp_path), str(tmp_path / "typo")]))
    with pytest.raises(PresetError, match=r"GEOVLM_PRESETS names .*typo, which is not a folder"):
        find_preset_files()
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "typo" in result.output


@pytest.mark.parametrize("value", [None, "", " "])
def test_config_folder_when_the_variable_is_unset_or_empty(monkeypatch, tmp_path, value):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # click.get_app_dir's base on Linux
    if value is None:
        monkeypatch.delenv("GEOVLM_PRESETS")
    else:
        monkeypatch.setenv("GEOVLM_PRESETS", value)
    folder = Path(click.get_app_dir("geovlm")) / "presets"
    if not folder.is_relative_to(tmp_path):
        pytest.skip("the platform config folder does not follow XDG_CONFIG_HOME here")
    assert site_preset_folders() == [folder]
    assert [f.name for f in find_preset_files()] == SHIPPED  # the folder need not exist
    path = _preset(folder, "mine")
    assert [f.path for f in find_preset_files() if f.name == "mine"] == [path]


def test_a_broken_site_preset_spoils_only_itself(monkeypatch, tmp_path):
    (tmp_path / "broken.yaml").write_text("name: [unclosed")
    monkeypatch.setenv("GEOVLM_PRESETS", str(tmp_path))
    assert resolve_model("xview2-qwen3vl").model_id == "Qwen/Qwen3-VL-8B-Instruct"
    with pytest.raises(PresetError, match=r"broken\.yaml is not readable YAML"):
        resolve_model("broken")
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 2 and "broken.yaml" in result.output


def test_models_command_names_each_file(monkeypatch, tmp_path):
    site = _preset(tmp_path, "vqwen3-4b", model_id="org/mirror")
    monkeypatch.setenv("GEOVLM_PRESETS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    shipped = SHIPPED_PRESETS / "vqwen3-4b.yaml"
    assert f"file     {site} (site, replaces {shipped})" in result.output
    assert f"file     {SHIPPED_PRESETS / 'xview2-qwen3vl.yaml'} (shipped)" in result.output
    assert "org/mirror" in result.output and "alpharomercoma/vqwen3-4b" not in result.output
