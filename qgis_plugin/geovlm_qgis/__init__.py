"""geovlm for QGIS: Processing algorithms and a dock panel running the engine out of process.

QGIS's Python never imports torch, transformers, rasterio or geovlm itself: the engine is the
``geovlm`` executable of its own environment (see engine.py), followed through its JSON events.
"""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """QGIS's entry point: the plugin object for the running application."""
    from .plugin import GeovlmPlugin

    return GeovlmPlugin(iface)
