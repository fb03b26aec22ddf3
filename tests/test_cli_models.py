"""`geovlm models` and the CLI's global behaviour."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from geovlm.cli import cli
from tests.helpers import MODEL_FILES, cache_snapshot


def test_models_lists_presets_with_offline_availability(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    assert "xview2-qwen3vl (default)" in result.output
    assert "WayBob/Qwen3VL-8B-QLora-4bit-xView2-Disaster-Recognition" in result.output
    assert "alpharomercoma/vqwen3-4b" in result.output
    assert "luisml77/gemma-aerial-12b" in result.output
    assert "offline: model missing, adapter missing" in result.output


@pytest.mark.parametrize(
    ("files", "mark"), [(MODEL_FILES, "model ok"), (("config.json",), "model missing")],
    ids=["complete", "interrupted-download"],
)
def test_models_sees_a_cached_model(monkeypatch, tmp_path, files, mark):
    cache_snapshot(tmp_path, "alpharomercoma/vqwen3-4b", *files)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    result = CliRunner().invoke(cli, ["models"])
    block = result.output.split("vqwen3-4b:")[1].split("\n\n")[0]
    assert f"offline: {mark}" in block


def test_version_and_help():
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).output.startswith("geovlm, version")
    for command in ("tile", "classify", "models"):
        result = runner.invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output


def test_unknown_option_is_a_usage_error():
    result = CliRunner().invoke(cli, ["tile", "x.tif", "-o", "o.gpkg", "--sise", "3"])
    assert result.exit_code == 2 and "No such option" in result.output
