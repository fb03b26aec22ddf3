"""Open a refer output's ``objects`` layer in real QGIS (run with /usr/bin/python3), print it.

Prints one JSON object: validity, count, the categorized renderer's attribute and colours, and
the field QGIS labels features with. Used by tests/test_refer_qgis.py.
"""

import json
import sys

from qgis.core import QgsApplication, QgsVectorLayer

if __name__ == "__main__":
    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    layer = QgsVectorLayer(f"{sys.argv[1]}|layername=objects", "objects", "ogr")
    renderer = layer.renderer()
    print(json.dumps({
        "valid": layer.isValid(), "count": layer.featureCount(), "renderer": renderer.type(),
        "attribute": renderer.classAttribute(),
        "categories": {c.value(): c.symbol().color().name() for c in renderer.categories()},
        "labels": layer.labelsEnabled(),
        "label_field": layer.labeling().settings().fieldName if layer.labeling() else None,
    }))
    sys.stdout.flush()
    del layer
    app.exitQgis()
