"""`geovlm classify --stac`: an event given as a local STAC ItemCollection, in one run."""

import json
import sqlite3

import pandas as pd
import pyogrio
import pytest
from click.testing import CliRunner

from geovlm.cli import cli
from tests.helpers import assert_valid_geopackage
from tests.stac_fixtures import EVENT_ITEMS

EXTRA = ["--size", "512", "--native-gsd", "--batch-size", "4", "--quantize", "none",
         "--device", "cpu"]


def _classify(model, out, *args):
    return CliRunner().invoke(cli, ["classify", *map(str, args), "-o", str(out), "--model",
                                    str(model), *EXTRA])


def test_stac_items_are_the_scenes_named_and_dated(qwen3_vl_dir, stac_items_file, tmp_path):
    out = tmp_path / "stac.gpkg"
    result = _classify(qwen3_vl_dir, out, "--stac", stac_items_file, "-q")
    assert result.exit_code == 0, result.output
    assert_valid_geopackage(out)
    info = pyogrio.read_info(out, layer="chips")
    assert info["crs"] == "EPSG:4326"
    assert dict(zip(info["fields"], info["dtypes"], strict=True))["datetime"] == "datetime64[ms]"

    layer = pyogrio.read_dataframe(out, layer="chips")
    ids = [item_id for item_id, _, _ in EVENT_ITEMS]
    assert list(dict.fromkeys(layer["scene"])) == ids
    assert (layer["scene_chip_id"] == layer["scene"] + "|" + layer["chip_id"]).all()
    times = {item_id: pd.Timestamp(when) for item_id, _, when in EVENT_ITEMS}
    assert (layer["datetime"] == layer["scene"].map(times)).all()
    with sqlite3.connect(out) as db:
        (parameters,) = db.execute("SELECT parameters FROM runs").fetchone()
    assert json.loads(parameters)["scenes"] == ids

    again = _classify(qwen3_vl_dir, out, "--stac", stac_items_file, "--progress", "json")
    assert again.exit_code == 0, again.output
    done = json.loads(again.output.strip().splitlines()[-1])
    assert done["written"] == 0 and done["already_done"] == len(layer)
    assert pyogrio.read_info(out, layer="chips")["fields"].tolist() == info["fields"].tolist()


@pytest.mark.parametrize(("args", "message"), [
    (("--stac-asset", "pan"), "STAC item naip-2020 has no asset 'pan' (its assets: visual)"),
    (("extra.tif",), "Pass scenes as SCENE arguments or --stac, not both."),
])
def test_stac_input_refused_before_the_model(stac_items_file, tmp_path, args, message):
    out = tmp_path / "x.gpkg"
    result = _classify("no-such-model", out, "--stac", stac_items_file, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    ((), "No scene given; pass one or more SCENE arguments or --stac FILE."),
    (("a.tif", "--stac-asset", "visual"), "--stac-asset names the asset of STAC items"),
])
def test_scenes_missing_or_asset_without_stac_refused(tmp_path, args, message):
    result = _classify("no-such-model", tmp_path / "x.gpkg", *args)
    assert result.exit_code == 2 and message in result.output, result.output
