"""Checking and setting up the engine: version check, diagnostics, venv + pip install + check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_check_reports_the_engine(engine):
    from geovlm_qgis.engine_setup import verify_engine

    report = verify_engine(engine)
    assert report["engine"] == engine and report["protocol"] == 1
    assert report["libraries"]["torch"] and isinstance(report["cuda"]["available"], bool)


def test_diagnostics_for_a_bug_report(engine):
    from geovlm_qgis.engine_setup import diagnostics
    from geovlm_qgis.setup_dialog import host_facts

    text = diagnostics(host_facts(), engine)
    assert text.splitlines()[1].startswith("QGIS: 3.")
    for fact in (f"engine: {engine}", "geovlm: ", "event protocol 1", "torch: ",
                 "transformers: ", "CUDA: ", "xview2-qwen3vl (default): "):
        assert fact in text, text
    assert "engine: none found" in diagnostics(host_facts(), None)


def test_a_missing_engine_says_how_to_get_one(monkeypatch, tmp_path):
    from geovlm_qgis.engine import EngineError, find_engine

    monkeypatch.delenv("GEOVLM_ENGINE")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineError, match="Check / set up engine") as missing:
        find_engine("")
    assert missing.value.kind == "engine_missing"
    with pytest.raises(EngineError, match="not an executable file"):
        find_engine(str(tmp_path / "nowhere" / "geovlm"))


def test_set_up_creates_a_venv_installs_with_pip_and_checks(tmp_path):
    """pip installs the checkout's wheel offline without dependencies (torch would be GBs), so
    the check that follows must fail, naming what is missing and the kept log."""
    from geovlm_qgis.engine import EngineError
    from geovlm_qgis.engine_setup import create_engine, find_base_python, venv_engine

    wheel = os.environ.get("GEOVLM_TEST_WHEEL")
    if not wheel:
        pytest.fail("GEOVLM_TEST_WHEEL must name a geovlm wheel (tests/test_qgis_plugin.py)")
    venv, log = tmp_path / "engine", tmp_path / "engine-setup.log"
    lines: list[str] = []
    with pytest.raises(EngineError, match=r"set-up log is .*engine-setup\.log") as failed:
        create_engine(venv, log, python=find_base_python(), requirement=wheel,
                      pip_options=["--no-deps", "--no-index"],
                      on_line=lines.append)
    assert "No module named" in failed.value.message
    assert venv_engine(venv).exists()
    kept = log.read_text()
    assert "-m venv" in kept and "Successfully installed geovlm" in kept
    assert any("Successfully installed geovlm" in line for line in lines)
    assert Path(find_base_python()).name.startswith("python")
