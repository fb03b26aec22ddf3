"""``geovlm damage`` scoring: (pre, post) prompts, post alone where the pre crop is missing,
what the run records, one-image models refused, and a served model giving the same grades."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import yaml
from click.testing import CliRunner

from geovlm.backends.grade_scoring import GradeScorer
from geovlm.cli import cli
from geovlm.errors import InputError, ParameterError
from geovlm.labels.building_damage import GRADES, building_question
from geovlm.scenes.scene import open_scene
from geovlm.sources.building_crops import BuildingCrops, CropOptions, Footprints
from tests.damage_fixtures import POST, footprint_grid, warp_scene


@pytest.fixture(scope="module")
def inputs(geotiff_dir, tmp_path_factory):
    """The post scene, its pre twin with the eastern half blanked, and a 4 x 4 grid."""
    folder = tmp_path_factory.mktemp("damage-wiring")
    post = geotiff_dir / POST
    pre = warp_scene(post, folder / "pre.tif")
    with rasterio.open(pre, "r+") as dataset:
        data = dataset.read()
        data[:, :, data.shape[2] // 2:] = 0  # its nodata: no pre crop east of the middle
        dataset.write(data)
    return post, pre, footprint_grid(post, folder / "fp.gpkg", 4)


def _damage(post: Path, out: Path, model: Path, *extra: object):
    return CliRunner().invoke(cli, [
        "damage", str(post), "-o", str(out), "--model", str(model), "--quantize", "none",
        "--device", "cpu", "--progress", "json", *map(str, extra)])


def _parameters(out: Path) -> dict:
    with closing(sqlite3.connect(out)) as db:
        return json.loads(db.execute("SELECT parameters FROM runs").fetchone()[0])


def _probs(out: Path) -> dict[str, np.ndarray]:
    frame = pyogrio.read_dataframe(out, layer="buildings", read_geometry=False)
    return {row.object_id: np.array(list(json.loads(row.probs).values()))
            for row in frame.itertuples()}


def test_pre_and_post_go_in_one_prompt_and_a_missing_pre_crop_falls_back_to_post(
        inputs, qwen3_vl_dir, served_qwen3_vl, tmp_path):
    post, pre, vector = inputs
    out = tmp_path / "graded.gpkg"
    result = _damage(post, out, qwen3_vl_dir, "--footprints", vector, "--pre", pre)
    assert result.exit_code == 0, result.output
    done = json.loads(result.output.strip().splitlines()[-1])
    frame = pyogrio.read_dataframe(out, layer="buildings", read_geometry=False)
    shown = frame["images"]
    assert set(shown) == {"pre+post", "post"}
    assert (shown == "post").equals(frame["pre_valid_fraction"] < 0.5)
    assert done["post_only"] == (shown == "post").sum()
    parameters = _parameters(out)
    assert parameters["images"] == "pre+post" and parameters["pre"] == str(pre)
    assert parameters["prompt"] == building_question("en", with_pre=True)
    assert parameters["calibration"] is None
    assert set(parameters["answers"]) == {grade.value for grade in GRADES}
    # The same grades as the scorer asked directly, building by building (the served model is
    # the preset's weights and chat format, loaded in this process).
    backend = served_qwen3_vl.engine.backend
    scorer = GradeScorer("en")
    with BuildingCrops(post, Footprints.from_vector(vector, open_scene(post)),
                       CropOptions(pre=str(pre))) as crops:
        items = list(crops.items())
    images = [item.post if item.pre is None else (item.pre, item.post) for item in items]
    expected = scorer.probabilities(backend, scorer.encode(backend, images))
    got = _probs(out)
    assert len(got) == len(items)
    for item, row in zip(items, expected, strict=True):
        np.testing.assert_allclose(got[item.item_id], row, atol=1e-5)
    # Post alone is another question: the same post crop is graded otherwise with its pre.
    alone = scorer.probabilities(backend, scorer.encode(backend, [item.post for item in items]))
    assert not np.allclose(alone, expected, atol=1e-3)


def test_post_only_run_records_post_and_no_pre(inputs, qwen3_vl_dir, tmp_path):
    post, _, vector = inputs
    out = tmp_path / "post.gpkg"
    result = _damage(post, out, qwen3_vl_dir, "--footprints", vector)
    assert result.exit_code == 0, result.output
    parameters = _parameters(out)
    assert parameters["images"] == "post" and parameters["pre"] is None
    assert parameters["prompt"] == building_question("en", with_pre=False)
    frame = pyogrio.read_dataframe(out, layer="buildings", read_geometry=False)
    assert (frame["images"] == "post").all()
    assert json.loads(result.output.strip().splitlines()[-1])["post_only"] == 0


def test_a_one_image_model_is_refused_with_pre(inputs, llava_qwen3_dir, llava_backend, tmp_path):
    from geovlm.backends.base import ModelRun
    from geovlm.events.progress import ProgressMode
    from geovlm.pipeline.plan import RunOptions
    from geovlm.pipeline.run_scenes import building_scene
    from geovlm.tasks.damage import DamageSettings, damage_buildings

    post, pre, vector = inputs
    out = tmp_path / "llava.gpkg"
    # The preset names its family (LLaVA): refused before the model loads, nothing written.
    result = _damage(post, out, llava_qwen3_dir, "--footprints", vector, "--pre", pre)
    assert result.exit_code == 2, result.output
    assert "reads one image per prompt" in result.output and "Traceback" not in result.output
    assert not out.exists()
    # A model whose family is not known beforehand refuses the first two-image prompt.
    scenes = building_scene(str(post), Footprints.from_vector(vector, open_scene(post)),
                            CropOptions(pre=str(pre)))
    with pytest.raises(ParameterError, match="reads one image per prompt"):
        damage_buildings(scenes, RunOptions(tmp_path / "unknown.gpkg",
                                            progress=ProgressMode.NONE),
                         ModelRun(lambda: llava_backend), DamageSettings())


def test_a_served_model_grades_as_in_process(inputs, qwen3_vl_dir, live_server, tmp_path):
    from tests.serve_fixtures import API_KEY

    post, pre, _ = inputs
    vector = footprint_grid(post, tmp_path / "few.gpkg", 2)
    local, remote = tmp_path / "local.gpkg", tmp_path / "remote.gpkg"
    extra = ("--footprints", vector, "--pre", pre, "--language", "ja")
    assert _damage(post, local, qwen3_vl_dir, *extra).exit_code == 0
    result = _damage(post, remote, qwen3_vl_dir, *extra, "--backend", "openai",
                     "--endpoint", live_server.url, "--api-key", API_KEY)
    assert result.exit_code == 0, result.output
    assert _parameters(remote)["method"] == "prompt-logprobs"  # auto: /v1/classify cannot
    a, b = _probs(local), _probs(remote)
    assert set(a) == set(b) and len(a) == 4
    for object_id, row in a.items():
        np.testing.assert_allclose(b[object_id], row, atol=1e-4)
    frame = pyogrio.read_dataframe(remote, layer="buildings", read_geometry=False)
    assert "pre+post" in set(frame["images"])


@pytest.fixture(scope="module")
def xbd_crops(real_xbd, tmp_path_factory):
    """The real tiles georeferenced (pre and post) and their building-damage training set."""
    from geovlm.events.progress import ProgressMode
    from geovlm.tasks.xbd_georef import georeference_xbd

    folder = tmp_path_factory.mktemp("xbd-damage")
    georeference_xbd(real_xbd, folder / "georef", progress=ProgressMode.NONE)
    result = CliRunner().invoke(cli, [
        "dataset", "from-xbd", str(real_xbd), "-o", str(folder / "ds"), "--tasks",
        "building-damage", "--languages", "en", "--progress", "none"])
    assert result.exit_code == 0, result.output
    return folder / "georef" / "images", folder / "ds" / "images"


def test_xbd_crops_are_the_training_sets(real_xbd, xbd_crops):
    """--xbd-labels on a georeferenced tile cuts what the training set cut from its PNG."""
    from PIL import Image

    tiles, trained = xbd_crops
    compared = 0
    for label in sorted((real_xbd / "labels").glob("*_post_disaster.json")):
        post = tiles / f"{label.stem}.tif"
        pre = tiles / f"{label.stem.replace('_post_', '_pre_')}.tif"
        footprints = Footprints.from_xbd(label, open_scene(post))
        assert footprints.pixel_m is not None and 0.3 < footprints.pixel_m < 0.7
        name = label.stem.removesuffix("_post_disaster")
        with BuildingCrops(post, footprints, CropOptions(min_valid=0, pre=str(pre))) as crops:
            for crop in crops.items():
                path = trained / f"{name}_{crop.item_id}_post.png"
                if not path.is_file():  # un-classified: no training sample
                    continue
                assert np.array_equal(np.asarray(crop.post), np.asarray(Image.open(path)))
                assert crop.pre is not None
                # Through the pre tile's own fit, the box lands on the same pixels.
                expected = Image.open(trained / f"{name}_{crop.item_id}_pre.png")
                assert np.array_equal(np.asarray(crop.pre), np.asarray(expected))
                compared += 1
    assert compared == 132  # every graded building of the six tiles


def test_another_tiles_label_is_refused_naming_the_fix(real_xbd, xbd_crops):
    tiles, _ = xbd_crops
    post = open_scene(tiles / "santa-rosa-wildfire_00000242_post_disaster.tif")
    with pytest.raises(InputError, match=r"lies on .*; pass that tile's own label"):
        Footprints.from_xbd(real_xbd / "labels" / "hurricane-florence_00000480_post_disaster.json",
                            post)


def test_damage_grades_an_xbd_tile_with_its_pre(real_xbd, xbd_crops, qwen3_vl_dir, tmp_path):
    tiles, _ = xbd_crops
    stem = "santa-rosa-wildfire_00000242"
    out = tmp_path / "xbd.gpkg"
    result = _damage(tiles / f"{stem}_post_disaster.tif", out, qwen3_vl_dir, "--xbd-labels",
                     real_xbd / "labels" / f"{stem}_post_disaster.json",
                     "--pre", tiles / f"{stem}_pre_disaster.tif")
    assert result.exit_code == 0, result.output
    frame = pyogrio.read_dataframe(out, layer="buildings")
    assert len(frame) > 0 and (frame["images"] == "pre+post").all()
    assert frame.crs.to_epsg() == 4326


def test_the_presets_damage_calibration_applies_unless_refused(inputs, qwen3_vl_dir, tmp_path):
    from geovlm.labels.calibration import Calibration
    from geovlm.labels.grade_forms import DAMAGE_GRADES
    from geovlm.models.presets import FOLDER_PRESET

    post, _, _ = inputs
    vector = footprint_grid(post, tmp_path / "few.gpkg", 2)
    calibration = Calibration(2.0, (0.0, 0.0, 0.0, 3.0), labels=DAMAGE_GRADES)
    folder = tmp_path / "calibrated"
    folder.mkdir()
    (folder / FOLDER_PRESET).write_text(yaml.safe_dump({
        "name": "calibrated", "model_id": str(qwen3_vl_dir), "family": "qwen3_vl",
        "chip_size": 64, "supports_images": True, "template": "qwen3_vl_nothink",
        "damage_calibration": {"temperature": 2.0,
                               "log_prior": {"destroyed": 3.0}}}), encoding="utf-8")
    runs = {}
    for name, extra in (("raw", ("--no-calibration",)), ("calibrated", ())):
        out = tmp_path / f"{name}.gpkg"
        result = _damage(post, out, folder, "--footprints", vector, *extra)
        assert result.exit_code == 0, result.output
        runs[name] = (_parameters(out)["calibration"], _probs(out))
    assert runs["raw"][0] is None
    assert runs["calibrated"][0] == calibration.to_mapping()
    raw, calibrated = runs["raw"][1], runs["calibrated"][1]
    assert set(raw) == set(calibrated) and len(raw) == 4
    for object_id, probs in raw.items():
        # probs are stored to six decimals
        np.testing.assert_allclose(calibrated[object_id], calibration.apply(probs), atol=2e-5)
