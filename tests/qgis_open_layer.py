"""Open a geovlm GeoPackage in real QGIS (run with /usr/bin/python3) and print what QGIS sees.

Prints one JSON object: validity, feature count, CRS and the renderer QGIS built from the style
stored in ``layer_styles``. Used by tests/test_qgis_style.py; QGIS's Python has no torch.
"""

import json
import sys

from qgis.core import QgsApplication, QgsVectorLayer


def describe(path: str) -> dict:
    layer = QgsVectorLayer(f"{path}|layername=chips", "chips", "ogr")
    info = {"valid": layer.isValid(), "count": layer.featureCount(), "crs": layer.crs().authid()}
    renderer = layer.renderer()
    info["renderer"] = renderer.type()
    if renderer.type() == "categorizedSymbol":
        info["attribute"] = renderer.classAttribute()
        info["categories"] = {c.value(): c.symbol().color().name() for c in renderer.categories()}
    else:
        props = renderer.symbol().symbolLayer(0).properties()
        info["fill_style"] = props.get("style")
        info["outline_color"] = props.get("outline_color")
    del layer
    return info


if __name__ == "__main__":
    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    print(json.dumps([describe(p) for p in sys.argv[1:]]))
    sys.stdout.flush()
    app.exitQgis()
