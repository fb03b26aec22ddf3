"""``geovlm:damage`` against the real engine, in real QGIS: a grade per building, loaded styled.

The buildings are a few squares over the real scene, written in WGS 84 (the scene is in Web
Mercator); the pre raster is the scene warped to UTM, so nothing aligns pixel for pixel.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from contextlib import closing

import processing
import pytest
from osgeo import gdal, ogr, osr
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsProject

#: The grades in the engine's order (its summary counts them so), and the set with uncertain.
GRADE_ORDER = ("no-damage", "minor-damage", "major-damage", "destroyed")
GRADES = {*GRADE_ORDER, "uncertain"}
FIELDS = {"object_id", "damage", "confidence", "runner_up", "runner_up_confidence", "probs",
          "answer", "language", "scene", "run_id"}
#: South-west corners (lon, lat) of the squares, inside the scene, and their side in degrees.
CORNERS = [(128.6560 + 0.0008 * i, 37.6690 - 0.0003 * i) for i in range(4)]
SIDE = 0.0001


@pytest.fixture(scope="module")
def footprints(tmp_path_factory) -> str:
    """A GeoPackage of four square footprints in EPSG:4326."""
    path = str(tmp_path_factory.mktemp("footprints") / "footprints.gpkg")
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    dataset = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    layer = dataset.CreateLayer("footprints", srs, ogr.wkbPolygon)
    for x, y in CORNERS:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(
            f"POLYGON(({x} {y},{x + SIDE} {y},{x + SIDE} {y + SIDE},{x} {y + SIDE},{x} {y}))"))
        layer.CreateFeature(feature)
    dataset = None
    return path


@pytest.fixture(scope="module")
def pre(scene, tmp_path_factory) -> str:
    """The scene warped to UTM zone 52N: another CRS and grid."""
    path = str(tmp_path_factory.mktemp("pre") / "pre.tif")
    gdal.Warp(path, str(scene), dstSRS="EPSG:32652")
    return path


class Messages(QgsProcessingFeedback):
    """Feedback that keeps the algorithm's info messages."""

    def __init__(self) -> None:
        super().__init__()
        self.infos: list[str] = []

    def pushInfo(self, info: str) -> None:  # noqa: N802
        self.infos.append(info)
        super().pushInfo(info)


def _buildings(gpkg):
    """Per building: id, grade, probabilities, language and pre valid share; the run parameters."""
    with closing(sqlite3.connect(gpkg)) as db:
        rows = db.execute("SELECT object_id, damage, probs, language, pre_valid_fraction"
                          " FROM buildings ORDER BY object_id").fetchall()
        return rows, json.loads(db.execute("SELECT parameters FROM runs").fetchone()[0])


def test_damage_loads_a_styled_buildings_layer_into_the_project(plugin, engine, scene,
                                                                footprints, tiny_model, tmp_path):
    out = tmp_path / "damage.gpkg"
    feedback = Messages()
    result = processing.runAndLoadResults("geovlm:damage", {
        "INPUT": str(scene), "FOOTPRINTS": footprints, "MODEL": tiny_model, "DEVICE": "cpu",
        "QUANTIZE": "none", "MIN_CONFIDENCE": 0.3, "OUTPUT": str(out)}, feedback=feedback)
    assert result["STATUS"] == "complete" and result["WRITTEN"] == 4
    assert ("Graded 4 buildings (0 already done, 0 under the minimum valid share, 0 outside the"
            " raster)") in " ".join(feedback.infos)
    [layer] = [layer for layer in QgsProject.instance().mapLayers().values()
               if layer.source().startswith(str(out))]
    assert layer.isValid() and layer.featureCount() == 4
    assert layer.crs().authid() == "EPSG:3857"  # the scene's, not the footprints'
    assert FIELDS <= set(layer.fields().names())
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "damage"
    assert {category.value() for category in renderer.categories()} >= GRADES
    rows, parameters = _buildings(out)
    counts = ", ".join(f"{sum(row[1] == grade for row in rows)} {grade}"
                       for grade in (*GRADE_ORDER, "uncertain"))
    assert f"In the layer: {counts}." in " ".join(feedback.infos)
    for _, damage, probs, language, pre_valid in rows:
        grades = json.loads(probs)
        assert damage in GRADES and language == "en" and pre_valid is None
        assert sum(grades.values()) == pytest.approx(1, abs=1e-4)
    assert parameters["min_confidence"] == 0.3 and parameters["crops"]["pre"] is None


def test_qgis_process_grades_with_a_pre_raster_in_japanese(plugin, engine, shell, scene, pre,
                                                           footprints, tiny_model, tmp_path):
    qgis_process, env = shell
    out = tmp_path / "pre.gpkg"
    done = subprocess.run(
        [qgis_process, "run", "geovlm:damage", "--", f"INPUT={scene}", f"PRE={pre}",
         f"FOOTPRINTS={footprints}", f"MODEL={tiny_model}", "DEVICE=cpu", "QUANTIZE=none",
         "LANGUAGE=ja", "MARGIN=5", f"OUTPUT={out}"],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "STATUS:\tcomplete" in done.stdout and "WRITTEN:\t4" in done.stdout
    rows, parameters = _buildings(out)
    assert len(rows) == 4
    assert {language for *_, language, _ in rows} == {"ja"}
    assert all(0.5 <= pre_valid <= 1 for *_, pre_valid in rows)  # read from the warped pre
    assert parameters["language"] == "ja" and parameters["crops"]["margin_m"] == 5
    assert parameters["crops"]["pre"] == pre


@pytest.mark.parametrize("both", [False, True], ids=["neither", "both"])
def test_exactly_one_source_of_buildings(plugin, recorded, scene, footprints, tmp_path, both):
    labels = tmp_path / "labels.json"
    labels.write_text("{}")
    sources = {"XBD_LABELS": str(labels), "FOOTPRINTS": footprints} if both else {}
    with pytest.raises(QgsProcessingException, match="exactly one source of buildings"):
        processing.run("geovlm:damage", {"INPUT": str(scene), **sources,
                                         "OUTPUT": str(tmp_path / "o.gpkg")})
    assert recorded() is None  # refused before the engine starts


def test_xbd_labels_pre_and_the_server_reach_the_engine(plugin, recorded, scene, pre, tmp_path):
    labels = tmp_path / "tile_post_disaster.json"
    labels.write_text("{}")
    out = str(tmp_path / "o.gpkg")
    processing.run("geovlm:damage", {
        "INPUT": str(scene), "PRE": pre, "XBD_LABELS": str(labels), "BATCH_SIZE": 4,
        "ENDPOINT": "http://gpu:8000/v1", "OVERWRITE": True, "OUTPUT": out})
    line = " ".join(recorded())
    for part in (f"damage --xbd-labels {labels} --model xview2-qwen3vl --min-confidence 0.5",
                 "--language en --batch-size 4", f"--pre {pre}",
                 "--backend openai --endpoint http://gpu:8000/v1",
                 f"{scene} -o {out} --margin 10.0 --min-valid 0.5 --overwrite"):
        assert part in line
