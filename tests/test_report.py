"""``geovlm report``: counts per grade per area, the page, its tables and its layer, for real."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from click.testing import CliRunner

from geovlm.cli import cli
from geovlm.output.runs import RunRecord
from geovlm.reporting.layers import CATEGORIES
from geovlm.reporting.report import ReportSettings, write_report
from tests.helpers import assert_valid_geopackage
from tests.report_fixtures import SHARED, write_buildings


@pytest.fixture(scope="module")
def damage(tmp_path_factory):
    return write_buildings(tmp_path_factory.mktemp("damage") / "damage.gpkg")


@pytest.fixture(scope="module")
def reported(damage, tmp_path_factory):
    html = tmp_path_factory.mktemp("report") / "report.html"
    result = CliRunner().invoke(cli, ["report", str(damage), "-o", str(html), "--cell", "200"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("43 buildings in ") and " grid cells of 200 m (" in (
        result.output)
    return html


def _csv(path):
    with path.open(encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_every_building_is_counted_once_per_grade(damage, reported):
    buildings = pyogrio.read_dataframe(damage, layer="buildings")
    expected = buildings["damage"].value_counts().to_dict()
    [totals] = _csv(reported.with_name("report-totals.csv"))
    assert {c: int(totals[c]) for c in CATEGORIES if c in expected} == expected
    assert int(totals["total"]) == len(buildings) == 43
    rows = _csv(reported.with_name("report-areas.csv"))
    for category in CATEGORIES:
        assert sum(int(row[category]) for row in rows) == expected.get(category, 0)
    assert int(totals["uncertain"]) > 0  # counted apart, in no grade


def test_cells_are_squares_of_the_size_asked_named_as_a_map_grid(reported):
    layer = pyogrio.read_dataframe(reported.with_suffix(".gpkg"), layer="damage_by_area")
    assert len(layer) == len(_csv(reported.with_name("report-areas.csv")))
    bounds = shapely.bounds(layer.geometry.to_numpy())
    assert np.allclose(bounds[:, 2] - bounds[:, 0], 200) and np.allclose(bounds % 200, 0)
    assert layer.crs.to_epsg() == 32616
    assert set(layer["name"]) <= {f"{c}{r}" for c in "ABC" for r in (1, 2, 3, 4)}
    assert (layer["total"] == layer[[c.replace("-", "_") for c in CATEGORIES]].sum(axis=1)).all()


def test_the_area_layer_is_a_valid_styled_geopackage_with_its_run(reported):
    gpkg = reported.with_suffix(".gpkg")
    assert_valid_geopackage(gpkg)
    with closing(sqlite3.connect(gpkg)) as db:
        command, parameters = db.execute("SELECT command, parameters FROM runs").fetchone()
        [style] = db.execute("SELECT styleQML FROM layer_styles").fetchone()
    assert command == "report" and json.loads(parameters)["cell_m"] == 200
    assert 'attr="worst"' in style and 'fieldName="counts"' in style


def test_the_page_is_self_contained_with_its_limits_and_provenance(reported):
    page = reported.read_text(encoding="utf-8")
    assert "Verify before acting" in page and "not calibrated" in page
    assert "from the post-disaster image alone" in page
    assert page.count("data:image/png;base64,") == 1 and "<script" not in page
    assert "Qwen/Qwen3-VL-8B-Instruct" in page and "4bit" in page
    assert reported.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


def test_admin_areas_in_another_crs_count_with_those_outside_apart(damage, tmp_path):
    # Two halves of the scene's west part, written in EPSG:4326; the east part is in no area.
    halves = [shapely.box(733590, 3724680, 733820, 3724915),
              shapely.box(733590, 3724915, 733820, 3725150)]
    import geopandas as gpd

    areas = tmp_path / "districts.geojson"
    gpd.GeoDataFrame({"NAME": ["south", "north"]}, geometry=halves, crs=32616).to_crs(
        4326).to_file(areas)
    summary = write_report(damage, tmp_path / "r.html",
                           ReportSettings(areas=str(areas), areas_name="NAME"))
    rows = {row["name"]: row for row in _csv(tmp_path / "r-areas.csv")}
    assert set(rows) == {"south", "north"} and summary.areas == 2
    inside = sum(int(row["total"]) for row in rows.values())
    assert 0 < inside < summary.buildings == 43 and summary.outside == 43 - inside
    assert summary.counted() == (f"43 buildings: {inside} in 2 areas, {43 - inside} outside"
                                 " every area")
    assert "lie outside every area" in (tmp_path / "r.html").read_text(encoding="utf-8")
    assert_valid_geopackage(tmp_path / "r.gpkg")


def test_a_geographic_layer_is_counted_in_its_utm_zone(tmp_path):
    damage = write_buildings(tmp_path / "d.gpkg", crs="EPSG:4326", calibrated=True)
    summary = write_report(damage, tmp_path / "r.html", ReportSettings(cell_m=150))
    layer = pyogrio.read_dataframe(tmp_path / "r.gpkg", layer="damage_by_area")
    assert layer.crs.to_epsg() == 32616 and summary.buildings == 43
    assert "were calibrated" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_disaster_types_of_a_classify_layer(damage, tmp_path):
    from geovlm.output.geopackage import GeoPackageWriter
    from geovlm.tasks.classify import CLASSIFY_FIELDS

    chips = tmp_path / "classified.gpkg"
    from rasterio.crs import CRS

    labels = ["flood"] * 3 + ["wind"]
    with GeoPackageWriter(chips, layer="chips", fields=CLASSIFY_FIELDS, crs=CRS.from_epsg(32616),
                          run=RunRecord("classify", {"model": "m"}), style_qml="") as writer:
        writer.begin()
        writer.write([{**dict.fromkeys(CLASSIFY_FIELDS), "chip_id": str(i), "label": label}
                      for i, label in enumerate(labels)],
                     [shapely.box(733600 + i, 3724700, 733700 + i, 3724800) for i in range(4)])
    write_report(damage, tmp_path / "r.html", ReportSettings(classify=str(chips)))
    shares = {row["label"]: float(row["share"]) for row in _csv(tmp_path / "r-disaster.csv")}
    assert shares == {"flood": 0.75, "wind": 0.25}
    assert "Disaster type" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_many_buildings_are_drawn_as_dots(tmp_path):
    from geovlm.reporting.picture import MAX_POLYGONS

    damage = write_buildings(tmp_path / "d.gpkg", repeat=120)
    summary = write_report(damage, tmp_path / "r.html", ReportSettings())
    assert summary.buildings == 43 * 120 > MAX_POLYGONS
    assert (tmp_path / "r.png").stat().st_size > 10_000


@pytest.mark.parametrize(("args", "message"), [
    (["--cell", "0"], "must be a positive size"),
    (["--cell", "1"], "pass --cell"),
    (["--cell", "100", "--areas", "x.shp"], "not both"),
    (["--areas-name", "NAME"], "pass --areas"),
    (["--areas", str(SHARED / "vector/opengeos/buildings.shp")], "No building lies in any"),
    (["--areas", str(SHARED / "vector/solaris/geotiff_labels.geojson"), "--areas-name", "nope"],
     "is no field of"),
    (["--classify", "DAMAGE"], "has no 'chips' layer"),
    (["--areas", str(SHARED / "PROVENANCE.md")], "supported file format)."),
], ids=["cell-zero", "cell-too-fine", "cell-and-areas", "name-alone", "areas-elsewhere",
        "no-such-field", "classify-without-chips", "areas-not-vector"])
def test_bad_input_is_one_sentence_and_exit_2(damage, tmp_path, args, message):
    args = [str(damage) if arg == "DAMAGE" else arg for arg in args]
    result = CliRunner().invoke(cli, ["report", str(damage), "-o", str(tmp_path / "r.html"),
                                      *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert "It might help" not in result.output  # GDAL's advice on driver prefixes
    assert not list(tmp_path.iterdir())


def test_a_layer_without_buildings_and_an_existing_report_are_refused(damage, reported):
    runner = CliRunner()
    result = runner.invoke(cli, ["report", str(reported.with_suffix(".gpkg")), "-o",
                                 str(reported.with_name("x.html"))])
    assert result.exit_code == 2 and "no 'buildings' layer" in result.output
    result = runner.invoke(cli, ["report", str(damage), "-o", str(reported)])
    assert result.exit_code == 2 and "--overwrite" in result.output


def test_json_progress_ends_with_one_done_event(damage, tmp_path):
    result = CliRunner().invoke(cli, ["report", str(damage), "-o", str(tmp_path / "r.html"),
                                      "--progress", "json"])
    [line] = result.output.splitlines()
    done = json.loads(line)
    assert done["event"] == "done" and done["status"] == "complete"
    assert done["buildings"] == 43 and done["layers"] == ["damage_by_area"]
    assert done["outside"] == 0  # a grid covers every building


def _chromium():
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (make test installs it)")
def test_the_page_renders_in_headless_chromium(reported, tmp_path):
    import subprocess

    browser = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browser, "--dump-dom", reported.as_uri()], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert dom.count("<table>") >= 3 and 'id="verify"' in dom
    assert "destroyed" in dom and "<th>cell</th>" in dom
    # docs/img/report.png when $GEOVLM_SCREENSHOTS names docs/img (make screenshots).
    shot = Path(os.environ.get("GEOVLM_SCREENSHOTS") or tmp_path) / "report.png"
    subprocess.run([*browser, f"--screenshot={shot}", "--window-size=960,1500",
                    reported.as_uri()], capture_output=True, timeout=120, check=True)
    from PIL import Image

    with Image.open(shot) as picture:
        assert picture.size == (960, 1500)
        # The map's imagery and colours, not a blank page.
        assert len(picture.convert("RGB").getcolors(1 << 20) or ()) > 1000
