"""`geovlm dataset from-map`: train on exactly the chips an analyst corrected after classify.

The GeoPackage comes from a real `geovlm classify` run with the tiny Qwen3-VL on a real scene;
labels are edited and chips deleted with GDAL's SQL (as QGIS's attribute table does it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from click.testing import CliRunner
from PIL import Image

from geovlm.cli import cli
from geovlm.datasets import SplitRule, read_dataset
from geovlm.datasets.from_map import build_from_map, read_classify_run
from geovlm.errors import InputError
from geovlm.labels.prompts import Language
from geovlm.labels.verbalizer import Verbalizer
from geovlm.scenes.tiling import SceneTiler
from tests.helpers import edit_geopackage

SCENE = "rasterio/RGB.byte.tif"


@pytest.fixture(scope="module")
def classified(qwen3_vl_dir: Path, geotiff_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A scene copy and its classify GeoPackage (12 cells of 256 px, 10 valid chips)."""
    folder = tmp_path_factory.mktemp("classified")
    scene = Path(shutil.copyfile(geotiff_dir / SCENE, folder / "scene.tif"))
    out = folder / "map.gpkg"
    result = CliRunner().invoke(cli, [
        "classify", str(scene), "-o", str(out), "--model", str(qwen3_vl_dir), "--quantize",
        "none", "--device", "cpu", "--size", "256", "--gsd", "300", "--progress", "none",
    ])
    assert result.exit_code == 0, result.output
    return scene, out


def _edited(classified: tuple[Path, Path], tmp_path: Path, *sql: str) -> Path:
    """A copy of the classify output changed with GDAL's SQL, as an edit in QGIS would."""
    return edit_geopackage(classified[1], tmp_path / "edited.gpkg", *sql)


def _labels(path: Path) -> dict[str, str]:
    frame = pyogrio.read_dataframe(path, layer="chips", columns=["chip_id", "label"],
                                   read_geometry=False)
    return dict(zip(frame["chip_id"], frame["label"], strict=True))


def test_the_set_holds_exactly_the_corrected_chips(classified, tmp_path):
    scene, _ = classified
    edited = _edited(
        classified, tmp_path,
        "UPDATE chips SET label = 'flood' WHERE chip_id = 'r0000_c0001'",
        "UPDATE chips SET label = 'Wildfire' WHERE chip_id = 'r0001_c0001'",
        "UPDATE chips SET label = 'この画像では津波災害が発生しました。'"
        " WHERE chip_id = 'r0001_c0002'",
        "UPDATE chips SET label = 'uncertain' WHERE chip_id = 'r0002_c0001'",
        "UPDATE chips SET label = NULL WHERE chip_id = 'r0002_c0002'",
        "DELETE FROM chips WHERE chip_id = 'r0001_c0000'",
    )
    left = _labels(edited)
    assert len(left) == 9
    data = build_from_map(edited, tmp_path / "ds", verbalizer=Verbalizer.default(),
                          languages=(Language.EN, Language.ZH),
                          split_rule=SplitRule(test_fraction=0.5), block=1)
    samples = data.samples()
    by_chip = {Path(s.image).stem: s.label for s in samples}
    expected = {chip: label for chip, label in left.items()
                if isinstance(label, str) and label != "uncertain"}
    expected.update({"r0001_c0001": "fire", "r0001_c0002": "tsunami"})
    assert by_chip == expected
    assert len(samples) == 2 * len(expected)
    assert {s.tile for s in data.train}.isdisjoint({s.tile for s in data.test})
    assert data.test and data.train
    english = next(s for s in samples if Path(s.image).stem == "r0000_c0001"
                   and s.language is Language.EN)
    assert english.answer == "A flooding disaster occurred in this image."
    assert english.event == "scene"
    manifest = data.manifest
    assert manifest["parameters"]["chip_size"] == 256
    assert manifest["parameters"]["gsd"] == 300
    assert manifest["parameters"]["unlabelled_chips"] == 2
    # Each chip's pixels are the ones classify read: same grid, resampling and stretch.
    run = read_classify_run(edited)
    with SceneTiler(scene, run.tiling) as tiler:
        chips = {chip.chip_id: chip for chip in tiler.chips()}
    for sample in samples:
        stored = np.asarray(Image.open(data.image_path(sample)))
        assert np.array_equal(stored, np.asarray(chips[Path(sample.image).stem].image))


def test_an_unknown_label_names_the_chip(classified, tmp_path):
    edited = _edited(classified, tmp_path,
                     "UPDATE chips SET label = 'landslide' WHERE chip_id = 'r0000_c0001'")
    with pytest.raises(InputError, match=r"chip r0000_c0001 .* 'landslide'"):
        build_from_map(edited, tmp_path / "ds", verbalizer=Verbalizer.default(),
                       split_rule=SplitRule())
    assert not (tmp_path / "ds").exists()


def test_a_feature_drawn_by_hand_is_refused(classified, tmp_path):
    edited = _edited(classified, tmp_path, "UPDATE chips SET chip_id = NULL WHERE fid = 1")
    with pytest.raises(InputError, match="without a chip_id"):
        build_from_map(edited, tmp_path / "ds", verbalizer=Verbalizer.default(),
                       split_rule=SplitRule())


def test_a_moved_scene_needs_scene_and_another_scene_is_refused(classified, geotiff_dir,
                                                                 tmp_path):
    scene, gpkg = classified
    copy = Path(shutil.copyfile(gpkg, tmp_path / "map.gpkg"))
    moved = tmp_path / "moved.tif"
    shutil.copyfile(scene, moved)
    data = build_from_map(copy, tmp_path / "ds", scene=moved, verbalizer=Verbalizer.default(),
                          languages=(Language.EN,), split_rule=SplitRule())
    assert len(data.samples()) == len(_labels(copy))
    with pytest.raises(InputError, match=r"lies elsewhere|not in the"):
        build_from_map(copy, tmp_path / "other", scene=geotiff_dir / "rasterio/cogeo.tif",
                       verbalizer=Verbalizer.default(), split_rule=SplitRule())


def test_cli_from_map_and_its_refusals(classified, tmp_path):
    _, gpkg = classified
    out = tmp_path / "ds"
    runner = CliRunner()
    result = runner.invoke(cli, ["dataset", "from-map", str(gpkg), "-o", str(out), "--languages",
                                 "ja", "--block", "2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("Wrote 10 samples")
    manifest = json.loads((out / "geovlm-dataset.json").read_text())
    assert manifest["split"]["seed"] == 3 and manifest["languages"] == ["ja"]
    for args, words in [
        ([str(tmp_path / "nothing.gpkg")], "does not exist"),
        ([str(gpkg), "--scene", str(tmp_path / "gone.tif")], "does not exist"),
        ([str(out / "train.json")], "classify"),
    ]:
        result = runner.invoke(cli, ["dataset", "from-map", *args, "-o", str(tmp_path / "x")])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0]
    result = runner.invoke(cli, ["dataset", "from-map", str(gpkg), "-o", str(out)])
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert read_dataset(out).manifest["source"] == "map"
