"""Teaching a region end to end: classify, correct the map, build the set, train, classify again.

The analyst's loop on a real scene (rasterio's ``world.rgb.tif``: 32 chips of 64 px) with the
tiny random Qwen3-VL: the untrained map calls nearly everything one label; the analyst relabels
every chip that is mostly water as ``flood``, deletes the coastal chips they cannot call, and
keeps the land chips as the map has them. ``geovlm dataset from-map`` and ``geovlm train
--config tiny-cpu`` (the shipped recipe, unchanged) follow, then ``geovlm classify --model RUN``
with no tiling options: the trained folder's preset carries the map's chip size. The corrected
chips must come back corrected, and the kept ones as kept.

Corrections follow what the chips show because a random vision tower barely tells real chips
apart: relabelling a few scattered chips of a similar-looking scene (``RGB.byte.tif``) did not
flip them within the recipe's 10 epochs (measured: 0 of 5 flipped; the model learns the majority
label), while water against land is learnt by step 48 of the recipe's 60 here.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from click.testing import CliRunner

from geovlm.cli import cli
from geovlm.datasets import read_dataset
from tests.helpers import assert_valid_geopackage, edit_geopackage

SCENE = "rasterio/world.rgb.tif"
SIZE = 64
#: The label the analyst gives the water chips; the untrained map must give it none of them.
CORRECTED = "flood"


@dataclass(frozen=True)
class Loop:
    """What one pass of the loop left: its files and the analyst's edits."""

    first: Path
    edited: Path
    data: Path
    run: Path
    second: Path
    corrected: tuple[str, ...]
    deleted: tuple[str, ...]
    kept: tuple[str, ...]


def _invoke(*args: str) -> None:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output


def _water_share(scene: Path) -> dict[str, float]:
    """Per chip of the native ``SIZE`` grid: the share of pixels clearly bluer than red."""
    with rasterio.open(scene) as src:
        red, _, blue = src.read().astype(float)
    shares = {}
    for row in range(red.shape[0] // SIZE):
        for col in range(red.shape[1] // SIZE):
            window = np.s_[row * SIZE:(row + 1) * SIZE, col * SIZE:(col + 1) * SIZE]
            shares[f"r{row:04d}_c{col:04d}"] = float(np.mean(blue[window] > red[window] + 30))
    return shares


def _labels(path: Path) -> dict[str, str]:
    frame = pyogrio.read_dataframe(path, layer="chips", columns=["chip_id", "label"],
                                   read_geometry=False)
    return dict(zip(frame["chip_id"], frame["label"], strict=True))


def _quoted(chips: tuple[str, ...]) -> str:
    return ", ".join(f"'{chip}'" for chip in chips)


@pytest.fixture(scope="module")
def loop(qwen3_vl_dir: Path, geotiff_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Loop:
    """One pass of the loop (one training run for the whole module)."""
    folder = tmp_path_factory.mktemp("teach_region")
    scene = Path(shutil.copyfile(geotiff_dir / SCENE, folder / "scene.tif"))
    first, second = folder / "map.gpkg", folder / "map2.gpkg"
    _invoke("classify", str(scene), "-o", str(first), "--model", str(qwen3_vl_dir),
            "--quantize", "none", "--device", "cpu", "--size", str(SIZE), "--progress", "none")

    shares = _water_share(scene)
    corrected = tuple(chip for chip, share in shares.items() if share >= 0.6)
    deleted = tuple(chip for chip, share in shares.items() if 0.4 <= share < 0.6)
    kept = tuple(chip for chip, share in shares.items() if share < 0.4)
    edited = edit_geopackage(
        first, folder / "edited.gpkg",
        f"UPDATE chips SET label = '{CORRECTED}' WHERE chip_id IN ({_quoted(corrected)})",
        f"DELETE FROM chips WHERE chip_id IN ({_quoted(deleted)})",
    )

    data, run = folder / "ds", folder / "run"
    _invoke("dataset", "from-map", str(edited), "-o", str(data), "--languages", "en",
            "--test-fraction", "0", "--progress", "none")
    _invoke("train", "--config", "tiny-cpu", "--data", str(data), "--model", str(qwen3_vl_dir),
            "--output", str(run), "--device", "cpu", "--progress", "none")
    _invoke("classify", str(scene), "-o", str(second), "--model", str(run), "--device", "cpu",
            "--progress", "none")
    return Loop(first, edited, data, run, second, corrected, deleted, kept)


def test_the_corrected_chips_flip_and_the_kept_ones_stay(loop):
    first, edited, second = _labels(loop.first), _labels(loop.edited), _labels(loop.second)
    # 32 chips: 16 relabelled, 8 deleted, 8 kept; none of the 16 was a flood before.
    assert len(first) == 32
    assert (len(loop.corrected), len(loop.deleted), len(loop.kept)) == (16, 8, 8)
    assert not [chip for chip in loop.corrected if first[chip] == CORRECTED]
    assert set(edited) == set(loop.corrected) | set(loop.kept)
    # Measured: all 16 corrected chips flip and all 8 kept chips keep their label.
    assert {chip: second[chip] for chip in loop.corrected} == dict.fromkeys(loop.corrected,
                                                                           CORRECTED)
    assert {chip: second[chip] for chip in loop.kept} == {chip: edited[chip] for chip in loop.kept}


def test_the_set_and_the_run_are_the_analysts(loop):
    data = read_dataset(loop.data)
    assert not data.test
    assert {Path(s.image).stem: s.label for s in data.train} == _labels(loop.edited)
    results = json.loads((loop.run / "train_results.json").read_text())
    assert results["steps"] == 60  # 24 samples in batches of 4, 10 epochs


def test_the_second_map_records_the_trained_model_and_is_valid(loop):
    with closing(sqlite3.connect(loop.second)) as db:
        rows = db.execute("SELECT command, parameters FROM runs").fetchall()
    assert len(rows) == 1 and rows[0][0] == "classify"
    parameters = json.loads(rows[0][1])
    assert parameters["model"] == str(loop.run.resolve()) and parameters["adapter"] is None
    # The trained preset carries the map's tiling: classify cut the same grid, unasked.
    with closing(sqlite3.connect(loop.first)) as db:
        before = json.loads(db.execute("SELECT parameters FROM runs").fetchone()[0])
    assert parameters["tiling"] == before["tiling"]
    assert set(_labels(loop.second)) == set(_labels(loop.first))
    assert_valid_geopackage(loop.second)
