"""The "Check / set up engine" dialog: choose, install or check the engine; copy diagnostics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtCore import QT_VERSION_STR
from qgis.PyQt.QtWidgets import (
    QApplication,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .base import tr
from .engine import EngineError, find_engine
from .engine_setup import create_engine, diagnostics, venv_engine, verify_engine
from .settings import configured_engine, server, set_engine_path, set_server
from .tasks import BackgroundTask

__all__ = ["EngineDialog", "default_venv", "host_facts"]


def default_venv() -> Path:
    """The engine's venv by default: ``geovlm-engine`` in the QGIS profile folder."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "geovlm-engine"


def host_facts() -> dict[str, str]:
    """QGIS's side of the diagnostics."""
    return {"QGIS": Qgis.QGIS_VERSION, "Qt": QT_VERSION_STR}


class EngineDialog(QDialog):
    """Engine path, set-up into a venv (pip, progress, kept log), check and diagnostics."""

    TITLE = "Check / set up engine"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(tr(self.TITLE))
        self.task: BackgroundTask | None = None
        self.engine_edit = QLineEdit(configured_engine())
        self.engine_edit.setPlaceholderText(tr("empty: geovlm on PATH"))
        browse = QPushButton(tr("Browse…"))
        browse.clicked.connect(self._browse)
        engine_row = QHBoxLayout()
        engine_row.addWidget(self.engine_edit)
        engine_row.addWidget(browse)
        self.venv_edit = QLineEdit(str(default_venv()))
        self.requirement_edit = QLineEdit("geovlm")
        url, key = server()
        self.server_edit = QLineEdit(url)
        self.server_edit.setPlaceholderText(tr("empty: classify runs the model here"))
        self.key_edit = QLineEdit(key)
        self.key_edit.setEchoMode(QLineEdit.Password)
        for edit in (self.server_edit, self.key_edit):
            edit.editingFinished.connect(
                lambda: set_server(self.server_edit.text().strip(), self.key_edit.text().strip()))
        form = QFormLayout()
        form.addRow(tr("Engine (geovlm executable)"), engine_row)
        form.addRow(tr("New engine folder (venv)"), self.venv_edit)
        form.addRow(tr("Install (pip requirement)"), self.requirement_edit)
        form.addRow(tr("geovlm serve URL (classify there)"), self.server_edit)
        form.addRow(tr("Server API key"), self.key_edit)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.check_button = QPushButton(tr("Check"))
        self.install_button = QPushButton(tr("Install / update engine"))
        self.report_button = QPushButton(tr("Diagnostics"))
        self.copy_button = QPushButton(tr("Copy log"))
        self.check_button.clicked.connect(self.check)
        self.install_button.clicked.connect(self.install)
        self.report_button.clicked.connect(self.report)
        self.copy_button.clicked.connect(
            lambda: QApplication.clipboard().setText(self.log.toPlainText()))
        buttons = QHBoxLayout()
        for button in (self.check_button, self.install_button, self.report_button,
                       self.copy_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.log)
        self.resize(640, 420)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, tr("The geovlm executable of an engine"))
        if path:
            self.engine_edit.setText(path)

    def _engine(self) -> str | None:
        try:
            return find_engine(self.engine_edit.text().strip())
        except EngineError as exc:
            self.log.appendPlainText(exc.message)
            return None

    def _start(self, description: str, work: Any, on_done: Any) -> None:
        for button in (self.check_button, self.install_button, self.report_button):
            button.setEnabled(False)
        self.progress.setRange(0, 0)  # busy: pip reports no overall fraction
        self.task = BackgroundTask(description, work)
        self.task.message.connect(lambda line: self.log.appendPlainText(str(line)))
        self.task.ended.connect(lambda result, error, kind: self._ended(on_done, result, error))
        QgsApplication.taskManager().addTask(self.task)

    def _ended(self, on_done: Any, result: Any, error: str | None) -> None:
        self.task = None
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if error is None else 0)
        for button in (self.check_button, self.install_button, self.report_button):
            button.setEnabled(True)
        if error is not None:
            self.log.appendPlainText(tr("Failed: {}").format(error))
        else:
            on_done(result)

    def check(self) -> None:
        """Run ``geovlm version --json`` on the chosen engine and save it if it works."""
        engine = self._engine()
        if engine is None:
            return

        def done(report: dict[str, Any]) -> None:
            set_engine_path(self.engine_edit.text().strip())
            cuda = report["cuda"]
            self.log.appendPlainText(tr("Engine OK: geovlm {} at {}, torch {}, CUDA {}").format(
                report["geovlm"], report["engine"], report["libraries"].get("torch"),
                ", ".join(cuda["devices"]) if cuda["available"] else tr("not available")))

        self._start(tr("Checking the geovlm engine"), lambda report, cancelled:
                    verify_engine(engine), done)

    def install(self) -> None:
        """Create the venv and pip install the requirement into it, then check and save it."""
        venv = Path(self.venv_edit.text().strip())
        log_path = venv.parent / f"{venv.name}-setup.log"
        requirement = self.requirement_edit.text().strip() or "geovlm"
        self.log.appendPlainText(tr("Set-up log: {}").format(log_path))

        def done(report: dict[str, Any]) -> None:
            self.engine_edit.setText(str(venv_engine(venv)))
            set_engine_path(str(venv_engine(venv)))
            self.log.appendPlainText(tr("Engine installed and saved: {}").format(report["engine"]))

        self._start(tr("Installing the geovlm engine"), lambda report, cancelled: create_engine(
            venv, log_path, requirement=requirement, on_line=report, cancelled=cancelled), done)

    def report(self) -> None:
        """Write the diagnostics report into the log, ready to copy."""
        try:
            engine: str | None = find_engine(self.engine_edit.text().strip())
        except EngineError:
            engine = None
        self._start(tr("geovlm diagnostics"), lambda report, cancelled:
                    diagnostics(host_facts(), engine), self.log.appendPlainText)
