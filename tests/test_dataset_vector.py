"""`geovlm dataset from-vector` on real vector/raster pairs, reprojected where their CRSs differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from click.testing import CliRunner
from PIL import Image

from geovlm.cli import cli
from geovlm.datasets import SplitRule, read_dataset
from geovlm.datasets.from_vector import build_from_vector
from geovlm.errors import InputError, ParameterError
from geovlm.labels.prompts import Language
from geovlm.labels.verbalizer import Verbalizer
from geovlm.scenes.tiling import SceneTiler, TilingOptions
from tests.conftest import SHARED_DATA

DSM = SHARED_DATA / "geotiff/opengeos/dsm.tif"  # EPSG:26918, 2 m, float32
BUILDINGS = SHARED_DATA / "vector/opengeos/buildings.shp"  # EPSG:4326
SAMPLE = SHARED_DATA / "geotiff/solaris/sample_geotiff.tif"  # EPSG:32616, 0.5 m, uint16
SAMPLE_LABELS = SHARED_DATA / "vector/solaris/geotiff_labels.geojson"


def _labelled(source: Path, out: Path, rule) -> Path:  # type: ignore[no-untyped-def]
    """A copy of a real layer (its driver and CRS kept) with a ``label`` field from `rule`."""
    frame = pyogrio.read_dataframe(source)
    frame["label"] = [rule(i, row) for i, row in enumerate(frame.itertuples())]
    pyogrio.write_dataframe(frame, out)
    return out


def _build(scene: Path, labels: Path, out: Path, tiling: TilingOptions, **kwargs):  # type: ignore[no-untyped-def]
    return build_from_vector(scene, labels, "label", out, verbalizer=Verbalizer.default(),
                             tiling=tiling, split_rule=SplitRule(), **kwargs)


def test_a_lonlat_layer_over_a_utm_scene_labels_the_chips_it_covers(tmp_path):
    labels = _labelled(BUILDINGS, tmp_path / "buildings.shp",
                       lambda i, row: "fire" if row.HEIGHT > 10 else "Flood disaster")
    tiling = TilingOptions(size=16)
    data = _build(DSM, labels, tmp_path / "ds", tiling, min_cover=0.25,
                  languages=(Language.EN,), block=4)
    samples = data.samples()
    assert samples and {s.label for s in samples} == {"fire", "flood"}
    # Each chip's label, measured again on the footprint of the chip as the tiler read it.
    frame = pyogrio.read_dataframe(labels).to_crs("EPSG:26918")
    with SceneTiler(DSM, tiling) as tiler:
        chips = {chip.chip_id: chip for chip in tiler.chips()}
    for sample in samples:
        chip = chips[Path(sample.image).stem]
        cover = {
            label: shapely.union_all(frame.geometry[frame["label"].map(
                lambda v, want=label: ("fire" if v == "fire" else "flood") == want)].values)
            .intersection(chip.footprint).area / chip.footprint.area
            for label in ("fire", "flood")
        }
        assert max(cover, key=cover.get) == sample.label
        assert cover[sample.label] >= 0.25
    assert all(s.tile.startswith("dsm_b") and s.event == "dsm" for s in samples)
    assert data.manifest["parameters"]["chip_size"] == 16
    assert data.manifest["parameters"]["gsd"] is None


def test_a_geojson_over_its_uint16_scene_with_min_cover(tmp_path):
    labels = _labelled(SAMPLE_LABELS, tmp_path / "labels.geojson",
                       lambda i, row: ["wind", "earthquake", None, "uncertain"][i % 4])
    tiling = TilingOptions(size=16, gsd=1.0)
    loose = _build(SAMPLE, labels, tmp_path / "loose", tiling, min_cover=0.1)
    strict = _build(SAMPLE, labels, tmp_path / "strict", tiling, min_cover=0.6)
    assert 0 < len(strict.samples()) < len(loose.samples())
    assert {s.label for s in loose.samples()} == {"wind", "earthquake"}
    assert {s.language for s in loose.samples()} == set(Language)
    image = np.asarray(Image.open(loose.image_path(loose.train[0])))
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8


def test_bad_values_and_fields_are_listed(tmp_path):
    labels = _labelled(SAMPLE_LABELS, tmp_path / "labels.gpkg",
                       lambda i, row: ["fire", "landslide", "meteor"][i % 3])
    with pytest.raises(ParameterError, match="'landslide', 'meteor'"):
        _build(SAMPLE, labels, tmp_path / "ds", TilingOptions(size=32))
    with pytest.raises(ParameterError, match=r"its fields are: .*building"):
        build_from_vector(SAMPLE, labels, "lable", tmp_path / "ds",
                          verbalizer=Verbalizer.default(), tiling=TilingOptions(size=32),
                          split_rule=SplitRule())
    far = _labelled(SAMPLE_LABELS, tmp_path / "far.gpkg", lambda i, row: "fire")
    with pytest.raises(InputError, match="no chip of"):
        _build(DSM, far, tmp_path / "ds", TilingOptions(size=16))
    assert not (tmp_path / "ds").exists()


def test_cli_from_vector(tmp_path):
    labels = _labelled(SAMPLE_LABELS, tmp_path / "labels.gpkg", lambda i, row: "volcano")
    out = tmp_path / "ds"
    runner = CliRunner()
    args = ["dataset", "from-vector", str(SAMPLE), "--labels", str(labels), "--field", "label",
            "--native-gsd", "--size", "64", "--min-cover", "0.2", "--block", "2"]
    result = runner.invoke(cli, [*args, "-o", str(out), "--languages", "en,zh"])
    assert result.exit_code == 0, result.output
    data = read_dataset(out)
    assert data.manifest["parameters"]["tiling"]["size"] == 64
    assert "Wrote" in result.stderr and "tiles held out" in result.stderr
    info = runner.invoke(cli, ["dataset", "info", str(out)])
    assert info.exit_code == 0
    assert f"train: {len(data.train)} samples" in info.output
    assert "per language: en" in info.output and "volcano" in info.output
    for extra, words in [
        (["--field", "nope"], "its fields are"),
        (["--labels", str(tmp_path / "none.gpkg")], "does not exist"),
        (["--languages", "fr"], "unknown language 'fr'"),
        (["--split", "event", "--overwrite"], "two events or more"),
        (["--test-fraction", "1"], "--test-fraction"),
        (["--gsd", "2"], "--native-gsd keeps the scene's resolution: pass one"),
        ([], "exists"),
    ]:
        result = runner.invoke(cli, [*args, "-o", str(out), *extra])
        assert result.exit_code == 2, result.output
        assert words in result.stderr and "Traceback" not in result.output
    assert read_dataset(out).manifest == data.manifest


@pytest.mark.parametrize("command", ["from-xbd", "from-map", "from-vector", "info"])
def test_every_dataset_command_has_help(command):
    result = CliRunner().invoke(cli, ["dataset", command, "--help"])
    assert result.exit_code == 0 and result.output.startswith("Usage: cli dataset " + command)


def test_info_refuses_a_folder_that_is_no_dataset(tmp_path):
    result = CliRunner().invoke(cli, ["dataset", "info", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and "no geovlm dataset" in result.stderr


def test_the_first_of_several_layers_is_read_without_a_gdal_warning(tmp_path, recwarn):
    labels = _labelled(SAMPLE_LABELS, tmp_path / "labels.gpkg", lambda i, row: "volcano")
    other = pyogrio.read_dataframe(labels)
    other["label"] = "fire"
    pyogrio.write_dataframe(other, labels, layer="second")
    data = _build(SAMPLE, labels, tmp_path / "ds", TilingOptions(size=64), min_cover=0.2)
    assert {s.label for s in data.samples()} == {"volcano"}
    assert data.manifest["parameters"]["layer"] == "labels"
    assert not [w for w in recwarn if "More than one layer" in str(w.message)]


def test_a_scene_smaller_than_a_chip_at_the_gsd_is_refused_in_one_sentence(tmp_path):
    labels = _labelled(SAMPLE_LABELS, tmp_path / "labels.gpkg", lambda i, row: "volcano")
    with pytest.raises(InputError, match="--native-gsd or a smaller --size"):
        _build(SAMPLE, labels, tmp_path / "ds", TilingOptions(size=512, gsd=5.0), min_cover=0.01)
    assert not (tmp_path / "ds").exists()
