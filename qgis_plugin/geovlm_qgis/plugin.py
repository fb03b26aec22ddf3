"""The plugin object QGIS loads: Processing provider, dock panel and engine actions."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QAction

from .provider import GeovlmProvider

__all__ = ["GeovlmPlugin"]

MENU = "&geovlm"


class GeovlmPlugin:
    """Registers the provider (also under ``qgis_process``, where `iface` is None) and the GUI.

    Parameters
    ----------
    iface
        QGIS's interface, or None outside the desktop application.
    """

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: GeovlmProvider | None = None
        self.dock: Any = None
        self.actions: list[QAction] = []

    def initProcessing(self) -> None:  # noqa: N802
        """Register the Processing provider (called by qgis_process and by `initGui`)."""
        if self.provider is None:
            self.provider = GeovlmProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        """Provider, dock panel and the Plugins > geovlm menu."""
        self.initProcessing()
        from .dock import GeovlmDock
        from .setup_dialog import EngineDialog

        self.dock = GeovlmDock(self.iface)
        self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        panel = QAction(self.dock.windowTitle(), self.iface.mainWindow())
        panel.triggered.connect(self.dock.show)
        check = QAction(EngineDialog.TITLE, self.iface.mainWindow())
        check.triggered.connect(lambda: EngineDialog(self.iface.mainWindow()).exec_())
        for action in (panel, check):
            self.iface.addPluginToMenu(MENU, action)
            self.actions.append(action)

    def unload(self) -> None:
        """Remove everything `initGui` / `initProcessing` added."""
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
        self.actions.clear()
        if self.dock is not None:
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
