"""`geovlm dataset from-xbd --tasks building-damage`: one sample per graded building, two crops.

Expected crops are cut here from the raw PNG and JSON (shapely's bounds, numpy slicing, pyproj's
geodesic pixel size), not through geovlm's crop code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from click.testing import CliRunner
from PIL import Image
from pyproj import Geod

from geovlm.cli import cli
from geovlm.datasets import Task, read_dataset
from geovlm.errors import DatasetError
from geovlm.labels.building_damage import building_question, grade_answer
from geovlm.sources.crops import CROP_PIXELS, DEFAULT_MARGIN_M
from tests.synthetic_xbd import COLOUR_FLIPS, write_change_xbd

_GRADES = {"no-damage", "minor-damage", "major-damage", "destroyed"}


def _build(xbd: Path, out: Path, *extra: str) -> Path:
    result = CliRunner().invoke(cli, ["dataset", "from-xbd", str(xbd), "-o", str(out),
                                      "--tasks", "building-damage", "--progress", "none", *extra])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def real_buildings(real_xbd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(real_xbd, tmp_path_factory.mktemp("buildings") / "ds", "--languages", "en,ja")


def _raw_buildings(label: Path) -> list[tuple[str, str, shapely.Polygon]]:
    features = json.loads(label.read_text())["features"]["xy"]
    return [(f["properties"]["uid"], f["properties"]["subtype"], shapely.from_wkt(f["wkt"]))
            for f in features]


def _metres_per_pixel(label: Path) -> float:
    """Mean ground size of a pixel: pixel and lon/lat vertices fitted by least squares."""
    features = json.loads(label.read_text())["features"]
    pixels = np.concatenate([shapely.get_coordinates(shapely.from_wkt(f["wkt"]))
                             for f in features["xy"]])
    lonlat = np.concatenate([shapely.get_coordinates(shapely.from_wkt(f["wkt"]))
                             for f in features["lng_lat"]])
    design = np.column_stack([pixels, np.ones(len(pixels))])
    coef = np.linalg.lstsq(design, lonlat, rcond=None)[0]
    centre = np.array([512.0, 512.0, 1.0]) @ coef
    geod = Geod(ellps="WGS84")
    steps = [geod.inv(*centre, *(centre + coef[i]))[2] for i in (0, 1)]
    return float(np.sqrt(steps[0] * steps[1]))


def test_one_sample_per_graded_building_and_language(real_xbd, real_buildings):
    data = read_dataset(real_buildings)
    graded = {}
    for label in sorted((real_xbd / "labels").glob("*_post_disaster.json")):
        tile = label.name.removesuffix("_post_disaster.json")
        graded.update({(tile, uid): grade for uid, grade, _ in _raw_buildings(label)
                       if grade in _GRADES})
    samples = data.samples()
    assert len(samples) == 2 * len(graded) == 2 * 132
    assert data.manifest["left_out"] == {"un-classified buildings": 1}
    assert data.manifest["parameters"]["building_images"] == "pre-post"
    for sample in samples:
        assert sample.task is Task.BUILDING_DAMAGE
        pre, post = sample.images
        assert pre.endswith("_pre.png") and post.endswith("_post.png")
        uid = Path(pre).stem.removeprefix(f"{sample.tile}_").removesuffix("_pre")
        assert sample.label == graded[sample.tile, uid]
        assert sample.question == building_question(sample.language, with_pre=True)
        assert sample.answer == grade_answer(sample.label, sample.language)
    # Split by tile: no tile, so no building of one, on both sides.
    assert not {s.tile for s in data.train} & {s.tile for s in data.test}
    records = json.loads((real_buildings / "train.json").read_text())
    assert all(r["messages"][0]["content"].startswith("<image>\n<image>\n") for r in records)
    assert all(len(r["images"]) == 2 for r in records)


def test_crops_are_the_footprint_box_plus_ten_metres(real_xbd, real_buildings):
    tile = "santa-rosa-wildfire_00000242"
    label = real_xbd / "labels" / f"{tile}_post_disaster.json"
    margin = DEFAULT_MARGIN_M / _metres_per_pixel(label)
    assert 22 < margin < 23  # 0.448 m pixels; the label's gsd (1.88 m) would give 5 px
    checked = 0
    for uid, _, outline in _raw_buildings(label)[:6]:
        xmin, ymin, xmax, ymax = outline.bounds
        half = max(xmax - xmin, ymax - ymin) / 2 + margin
        cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
        box = [round(v) for v in (cx - half, cy - half, cx + half, cy + half)]
        for phase in ("pre", "post"):
            source = np.asarray(Image.open(real_xbd / "images" / f"{tile}_{phase}_disaster.png"))
            padded = np.zeros((2048, 2048, 3), np.uint8)
            padded[512:1536, 512:1536] = source[..., :3]
            cut = padded[box[1] + 512:box[3] + 512, box[0] + 512:box[2] + 512]
            expected = np.asarray(Image.fromarray(cut).resize((CROP_PIXELS, CROP_PIXELS),
                                                              Image.Resampling.BILINEAR))
            stored = np.asarray(Image.open(real_buildings / "images" / f"{tile}_{uid}_{phase}.png"))
            assert stored.shape == (CROP_PIXELS, CROP_PIXELS, 3)
            assert np.array_equal(stored, expected), (uid, phase)
            checked += 1
    assert checked == 12


def test_post_only_and_the_change_set(tmp_path):
    xbd = write_change_xbd(tmp_path / "xbd", tiles=2)
    data = read_dataset(_build(xbd, tmp_path / "post", "--building-images", "post",
                               "--languages", "en", "--margin", "10"))
    assert len(data.samples()) == 18 and all(len(s.images) == 1 for s in data.samples())
    assert all(s.question == building_question("en", with_pre=False) for s in data.samples())
    pairs = read_dataset(_build(xbd, tmp_path / "pairs", "--languages", "en"))
    steps = []
    for sample in pairs.samples():
        pre, post = (np.asarray(Image.open(p), float) for p in pairs.image_paths(sample))
        # The crop is the building's cell exactly: one flat colour under mild noise.
        assert pre.std(axis=(0, 1)).max() < 8 and post.std(axis=(0, 1)).max() < 8
        steps.append((sample.label, bool(np.abs(pre.mean((0, 1)) - post.mean((0, 1))).max() > 50)))
    assert {changed for label, changed in steps if label == "no-damage"} == {False}
    assert {changed for label, changed in steps if label != "no-damage"} == {True}
    assert {label for label, _ in steps} == {g.value for g in COLOUR_FLIPS}


def test_records_must_hold_one_image_token_per_image(real_buildings, tmp_path):
    import shutil

    root = shutil.copytree(real_buildings, tmp_path / "ds")
    records = json.loads((root / "train.json").read_text())
    content = records[0]["messages"][0]["content"]
    records[0]["messages"][0]["content"] = content.replace("<image>\n", "", 1)
    (root / "train.json").write_text(json.dumps(records))
    with pytest.raises(DatasetError, match="1 <image> for 2 images"):
        read_dataset(root)
    records[0]["messages"][0]["content"] = "<image>\nBefore <image> after?"
    (root / "train.json").write_text(json.dumps(records))
    with pytest.raises(DatasetError, match="before the question"):
        read_dataset(root)
