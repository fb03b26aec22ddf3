"""``geovlm refer --context chip|scene``: among whose objects an expression is unique."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pyogrio
import pytest
from click.testing import CliRunner

from geovlm.cli import cli
from geovlm.errors import ParameterError
from geovlm.tasks.refer import ObjectSource, ReferContext, ReferSettings
from tests.helpers import assert_valid_geopackage

SPACENET = "solaris/sample_geotiff.tif"
SPACENET_LABELS = "vector/solaris/geotiff_labels.geojson"
XBD_TILE = "santa-rosa-wildfire_00000242_post_disaster"


def _refer(*args: object) -> object:
    return CliRunner().invoke(cli, ["refer", *map(str, args)])


def _spacenet(geotiff_dir: Path, out: Path, *extra: object) -> tuple[object, ...]:
    return (geotiff_dir / SPACENET, "--footprints", geotiff_dir.parent / SPACENET_LABELS,
            "-o", out, "--size", "256", *extra)


def test_chip_context_names_the_chip_and_is_the_default(geotiff_dir, tmp_path):
    default, chip = tmp_path / "default.gpkg", tmp_path / "chip.gpkg"
    assert _refer(*_spacenet(geotiff_dir, default)).exit_code == 0
    result = _refer(*_spacenet(geotiff_dir, chip, "--context", "chip"))
    assert result.exit_code == 0, result.output
    objects = pyogrio.read_dataframe(chip, layer="objects").sort_values("object_id")
    before = pyogrio.read_dataframe(default, layer="objects").sort_values("object_id")
    assert list(objects["expression"]) == list(before["expression"])
    assert (objects["context"] == "chip " + objects["chip_id"]).all()
    # The map problem: unambiguous texts unique in their chip, repeated across the scene.
    unique = objects[objects["ambiguous"] == 0]
    assert not unique.duplicated(["chip_id", "expression"]).any()
    assert unique["expression"].duplicated().sum() > 0


def test_scene_context_texts_are_unique_in_the_scene(geotiff_dir, tmp_path):
    out = tmp_path / "scene.gpkg"
    result = _refer(*_spacenet(geotiff_dir, out, "--context", "scene", "--progress", "json"))
    assert result.exit_code == 0, result.output
    done = json.loads(result.output.strip().splitlines()[-1])
    objects = pyogrio.read_dataframe(out, layer="objects")
    assert len(objects) == 43 and (objects["context"] == "scene").all()
    unique = objects[objects["ambiguous"] == 0]
    assert done["unambiguous"] == len(unique) >= 42
    assert unique["expression"].is_unique
    assert unique["expression"].str.startswith("in the ").mean() > 0.8
    assert (objects["expression"] == objects["expression_rule"]).all()
    assert_valid_geopackage(out)
    with closing(sqlite3.connect(out)) as db:
        [parameters] = db.execute("SELECT parameters FROM runs").fetchone()
        style = db.execute("SELECT styleQML FROM layer_styles WHERE f_table_name = 'objects'")
        [qml] = style.fetchone()
    assert json.loads(parameters)["context"] == "scene"
    assert 'fieldName="expression"' in qml  # QGIS labels still show the expression


def test_scene_context_on_a_real_xbd_tile_in_japanese(real_xbd, real_xbd_georef, tmp_path):
    out = tmp_path / "xbd.gpkg"
    result = _refer(real_xbd_georef / "images" / f"{XBD_TILE}.tif", "--xbd-labels",
                    real_xbd / "labels" / f"{XBD_TILE}.json", "-o", out, "--context", "scene",
                    "--language", "ja")
    assert result.exit_code == 0, result.output
    objects = pyogrio.read_dataframe(out, layer="objects")
    assert len(objects) == 71 and (objects["ambiguous"] == 0).all()
    assert objects["expression"].is_unique
    # A part of the image first, or a relation to an object placed so, or a scene-wide extreme.
    assert objects["expression"].str.startswith("画像").mean() > 0.8


def test_scene_context_resumes_a_killed_run_with_the_same_expressions(geotiff_dir, tmp_path):
    out = tmp_path / "killed.gpkg"
    args = _spacenet(geotiff_dir, out, "--context", "scene")
    assert _refer(*args).exit_code == 0
    before = pyogrio.read_dataframe(out, layer="objects").set_index("object_id")["expression"]
    chip = pyogrio.read_dataframe(out, layer="objects")["chip_id"].value_counts().index[0]
    with closing(sqlite3.connect(out)) as db, db:
        db.execute("DELETE FROM chips WHERE chip_id = ?", (chip,))
        gone = db.execute("SELECT fid FROM objects WHERE chip_id = ? LIMIT 2", (chip,))
        db.executemany("DELETE FROM objects WHERE fid = ?", gone.fetchall())
    resumed = _refer(*args, "--progress", "json")
    assert resumed.exit_code == 0, resumed.output
    done = json.loads(resumed.output.strip().splitlines()[-1])
    assert done["written"] == 2 and done["already_done"] == 41
    after = pyogrio.read_dataframe(out, layer="objects").set_index("object_id")["expression"]
    assert after.sort_index().equals(before.sort_index())
    assert_valid_geopackage(out)


@pytest.mark.parametrize(("first", "then"), [("chip", "scene"), ("scene", "chip")])
def test_resuming_with_the_other_context_is_refused(geotiff_dir, tmp_path, first, then):
    out = tmp_path / "out.gpkg"
    assert _refer(*_spacenet(geotiff_dir, out, "--context", first)).exit_code == 0
    refused = _refer(*_spacenet(geotiff_dir, out, "--context", then))
    assert refused.exit_code == 2 and "different command or parameters" in refused.output
    assert len(pyogrio.read_dataframe(out, layer="objects")) == 43


def test_detect_with_the_scene_context_is_refused_before_any_model(geotiff_dir, tmp_path,
                                                                   monkeypatch):
    from geovlm.backends.choice import ModelChoice

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was resolved")

    monkeypatch.setattr(ModelChoice, "resolve", no_model)
    out = tmp_path / "detect.gpkg"
    for extra in ((), ("--backend", "openai", "--endpoint", "http://127.0.0.1:9/v1")):
        result = _refer(geotiff_dir / SPACENET, "--detect", "--context", "scene", "-o", out,
                        *extra)
        assert result.exit_code == 2, result.output
        assert result.output.count("Error:") == 1 and "Traceback" not in result.output
        assert "--context scene needs every object before the chips are read" in result.output
        assert not out.exists()
    bad = _refer(geotiff_dir / SPACENET, "--detect", "--context", "image", "-o", out)
    assert bad.exit_code == 2 and "Invalid value for '--context'" in bad.output


def test_the_settings_refuse_the_scene_context_for_detected_objects():
    with pytest.raises(ParameterError, match="--context scene needs every object"):
        ReferSettings(ObjectSource.DETECT, context=ReferContext.SCENE)
    assert ReferSettings(ObjectSource.DETECT).as_dict()["context"] == "chip"


def test_help_documents_the_context():
    result = _refer("--help")
    assert result.exit_code == 0 and "--context [chip|scene]" in result.output
