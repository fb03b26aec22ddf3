"""Checking and setting up the engine: the dialog's check and diagnostics, venv + pip + check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_a_missing_engine_says_how_to_get_one(monkeypatch, tmp_path):
    from geovlm_qgis.engine import EngineError, find_engine
    from geovlm_qgis.engine_setup import diagnostics
    from geovlm_qgis.setup_dialog import host_facts

    monkeypatch.delenv("GEOVLM_ENGINE")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineError, match="Check / set up engine") as missing:
        find_engine("")
    assert missing.value.kind == "engine_missing"
    with pytest.raises(EngineError, match="not an executable file"):
        find_engine(str(tmp_path / "nowhere" / "geovlm"))
    assert "engine: none found" in diagnostics(host_facts(), None)


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


def test_the_dialog_checks_saves_and_reports_in_the_background(engine):
    from geovlm_qgis.settings import configured_engine, set_engine_path
    from geovlm_qgis.setup_dialog import EngineDialog
    from qgis.core import QgsApplication

    from .test_dock import _wait

    set_engine_path("")
    dialog = EngineDialog()
    dialog.engine_edit.setText(engine)
    dialog.check()
    assert not dialog.check_button.isEnabled()
    _wait(lambda: dialog.task is None)
    assert "Engine OK: geovlm " in dialog.log.toPlainText(), dialog.log.toPlainText()
    assert configured_engine() == engine
    dialog.log.clear()
    dialog.report()
    _wait(lambda: dialog.task is None)
    text = dialog.log.toPlainText()
    assert text.splitlines()[1].startswith("QGIS: 3.")
    for fact in (f"engine: {engine}", "geovlm: ", "event protocol 1", "torch: ",
                 "transformers: ", "CUDA: ", "xview2-qwen3vl (default): "):
        assert fact in text, text
    dialog.copy_button.click()
    assert "geovlm QGIS plugin diagnostics" in QgsApplication.clipboard().text()
    set_engine_path("")
