"""``geovlm:report`` against the real engine, in real QGIS: the page and the styled areas."""

from __future__ import annotations

import processing
import pytest
from qgis.core import QgsProcessingException, QgsProject, QgsVectorLayer

from .conftest import PLUGIN_ROOT


def test_report_writes_the_page_and_a_styled_layer_of_areas(plugin, engine, buildings,
                                                            tmp_path):
    layer = QgsVectorLayer(f"{buildings}|layername=buildings", "buildings", "ogr")
    result = processing.runAndLoadResults("geovlm:report", {
        "INPUT": layer, "CELL": 100, "REPORT": str(tmp_path / "report.html"),
        "OUTPUT": str(tmp_path / "areas.gpkg")})
    assert result["BUILDINGS"] == 43 and result["UNCERTAIN"] > 0
    assert "Verify before acting" in (tmp_path / "report.html").read_text(encoding="utf-8")
    assert (tmp_path / "report-areas.csv").is_file()
    # Loaded into the project with the style the GeoPackage stores.
    [areas] = [loaded for loaded in QgsProject.instance().mapLayers().values()
               if loaded.source().startswith(str(tmp_path / "areas.gpkg"))]
    assert areas.isValid() and areas.featureCount() > 1
    assert areas.renderer().type() == "categorizedSymbol"
    assert areas.renderer().classAttribute() == "worst"
    assert sum(f["total"] for f in areas.getFeatures()) == 43


def test_a_layer_that_is_not_buildings_is_refused(plugin, engine, tmp_path):
    footprints = PLUGIN_ROOT.parents[1] / "shared/data/vector/solaris/geotiff_labels.geojson"
    layer = QgsVectorLayer(str(footprints), "footprints", "ogr")
    with pytest.raises(QgsProcessingException, match="not the 'buildings' layer"):
        processing.run("geovlm:report", {"INPUT": layer, "REPORT": str(tmp_path / "r.html"),
                                         "OUTPUT": str(tmp_path / "a.gpkg")})
