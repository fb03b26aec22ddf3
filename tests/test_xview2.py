"""xView2 rasters and geovlm's xView2 scorer: hand-made cases, and the official scorer's figures
on the real xBD tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shapely.geometry import box

from geovlm.errors import DatasetError
from geovlm.evaluation.xview2_rasters import burn, target_rasters, write_xview2
from geovlm.evaluation.xview2_score import (
    PixelCounts,
    harmonic_mean_f1,
    score_folders,
    score_tiles,
    tile_counts,
)
from geovlm.labels.building_damage import GRADES
from geovlm.labels.damage import Damage
from geovlm.sources.xbd import Phase, read_xbd

# -- hand-made cases ---------------------------------------------------------------------------


def test_counts_by_hand():
    # Target: a no-damage building (2 px) and a destroyed one (2 px); prediction localizes 3
    # of them plus 1 background pixel, and grades the destroyed one partly as minor.
    loc_t = np.array([[1, 1, 1, 1, 0]])
    dmg_t = np.array([[1, 1, 4, 4, 0]])
    loc_p = np.array([[1, 0, 1, 1, 1]])
    dmg_p = np.array([[1, 1, 2, 4, 4]])
    counts = tile_counts(loc_p, dmg_p, loc_t, dmg_t)
    assert counts.localization == PixelCounts(tp=3, fp=1, fn=1)
    # Pixel 1 is graded 1 but not localized: masked to 0, a miss for no-damage. The background
    # pixel graded 4 lies outside the target's buildings: not scored.
    assert counts.damage[0] == PixelCounts(tp=1, fp=0, fn=1)
    assert counts.damage[1] is None and counts.damage[2] is None  # absent from the target
    assert counts.damage[3] == PixelCounts(tp=1, fp=0, fn=1)


def test_grade_absent_from_a_tile_adds_no_false_positives():
    # Tile A holds only no-damage, all predicted destroyed; tile B holds destroyed, right.
    a = tile_counts(np.ones((1, 4)), np.full((1, 4), 4), np.ones((1, 4)), np.ones((1, 4)))
    b = tile_counts(np.ones((1, 2)), np.full((1, 2), 4), np.ones((1, 2)), np.full((1, 2), 4))
    score = score_tiles([a, b])
    assert score.damage[3] == PixelCounts(tp=2, fp=0, fn=0)  # A's 4 wrong pixels not counted
    assert score.damage[0] == PixelCounts(tp=0, fp=0, fn=4)
    assert score.damage_f1s == (0.0, 0.0, 0.0, 1.0)
    assert score.damage_f1 == pytest.approx(4 / (3 / 1e-6 + 1 / (1 + 1e-6)), rel=1e-12)
    assert score.localization_f1 == 1.0
    assert score.score == pytest.approx(0.3 + 0.7 * score.damage_f1, rel=1e-12)


def test_f1_and_harmonic_mean_by_hand():
    counts = PixelCounts(tp=3, fp=1, fn=2)
    assert (counts.precision, counts.recall) == (0.75, 0.6)
    assert counts.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert PixelCounts(0, 5, 5).f1 == 0.0
    assert harmonic_mean_f1([0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5 + 1e-6)
    assert harmonic_mean_f1([0.2, 0.4, 0.6, 0.8]) == pytest.approx(
        4 / sum(1 / (f + 1e-6) for f in (0.2, 0.4, 0.6, 0.8)), rel=1e-15)


def test_burn_fills_pixel_centres_later_polygons_on_top():
    raster = burn([(box(0, 0, 3, 2), 1), (box(1.4, 0.6, 2.6, 1.6), 3)], width=4, height=3)
    assert raster.dtype == np.uint8
    assert raster.tolist() == [[1, 1, 1, 0], [1, 3, 3, 0], [0, 0, 0, 0]]


# -- the real xBD tiles ------------------------------------------------------------------------

def _variants(real_xbd: Path) -> dict[str, dict[str, Damage]]:
    """The prediction variants the official scorer was run on (see `OFFICIAL`)."""
    graded = [b for t in read_xbd(real_xbd, Phase.POST) for b in t.buildings
              if b.damage in GRADES]
    truth = {b.uid: b.damage for b in graded if b.damage is not None}
    rng = np.random.default_rng(18)
    return {
        "truth": truth,
        "shifted": {u: GRADES[min(GRADES.index(g) + 1, 3)] for u, g in truth.items()},
        "dropped": {u: g for i, (u, g) in enumerate(truth.items()) if i % 3 != 0},
        "random": {u: GRADES[int(k)] for u, k in zip(truth, rng.integers(0, 4, len(truth)),
                                                      strict=True)},
        "all-destroyed": {u: Damage.DESTROYED for u in truth},
    }


# Figures of the official scorer, DIUx-xView/xView2_scoring xview2_metrics.py at commit
# e34328c5b4de79e82001277c0dc0ba0622bd32ec, run on 2026-12-07 (pandas 3.1.1) on the rasters
# `write_xview2` wrote for each variant of `_variants` (the script itself is not in this
# repository). Order: score, damage_f1, localization_f1, then the four grades' F1s.
OFFICIAL = {
    "truth": (0.9982664349224625, 0.9977694911091898, 0.9994259704867655,
              0.9911333225858455, 1.0, 1.0, 1.0),
    "shifted": (0.2998287244790511, 1.333332887866772e-06, 0.9994259704867655,
                0.0, 0.0, 0.0, 0.9977041803847319),
    "dropped": (0.8184955437325043, 0.7409539322663924, 0.9994259704867655,
                0.8553137003841229, 0.7353158354031013, 0.6197183098591549,
                0.7963712194422738),
    "random": (0.3429401716287624, 0.061589114975332475, 0.9994259704867655,
               0.01888655191655578, 0.48597999747513715, 0.13343448392127114,
               0.40821803329821854),
    "all-destroyed": (0.2998287244790331, 1.3333328620770796e-06, 0.9994259704867655,
                      0.0, 0.0, 0.0, 0.9431043352873406),
}
_KEYS = ("score", "damage_f1", "localization_f1", "damage_f1_no_damage",
         "damage_f1_minor_damage", "damage_f1_major_damage", "damage_f1_destroyed")


@pytest.fixture(scope="module")
def written(real_xbd: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("xview2")
    for name, grades in _variants(real_xbd).items():
        write_xview2(real_xbd, root / name, grades)
    return {name: root / name for name in OFFICIAL}


@pytest.mark.parametrize("variant", list(OFFICIAL))
def test_scores_equal_the_official_scorer(written: dict[str, Path], variant: str):
    folder = written[variant]
    figures = score_folders(folder / "predictions", folder / "targets").to_dict()
    assert [figures[k] for k in _KEYS] == pytest.approx(OFFICIAL[variant], abs=1e-9, rel=0)
    assert figures["tiles"] == 6


def test_rasters_are_what_the_scorer_reads(written: dict[str, Path], real_xbd: Path):
    folder = written["truth"]
    name = "santa-rosa-wildfire-00000242"
    files = sorted(p.name for p in (folder / "predictions").iterdir())
    assert len(files) == 12 and f"test_damage_{name}_prediction.png" in files
    assert {p.name for p in (folder / "targets").iterdir()} == {
        f.replace("prediction", "target") for f in files}
    for path in [*(folder / "predictions").iterdir(), *(folder / "targets").iterdir()]:
        with Image.open(path) as image:
            values = np.asarray(image)
        assert values.dtype == np.uint8 and values.shape == (1024, 1024)
        assert set(np.unique(values)) <= {0, 1, 2, 3, 4}
    with Image.open(folder / "targets" / f"test_damage_{name}_target.png") as image:
        grades = set(np.unique(image).tolist())
    assert grades == {0, 1, 2, 3, 4}  # santa-rosa 242 holds every grade
    # guatemala 5 holds one un-classified building: written as 1 in the damage target,
    # and localized but ungraded (0) in the prediction.
    pre, post = [t for t in read_xbd(real_xbd) if t.name == "guatemala-volcano_00000005"]
    localization, damage = target_rasters(pre, post)
    assert set(np.unique(damage).tolist()) == {0, 1} and localization.sum() > 0
    with Image.open(folder / "predictions"
                    / "test_damage_guatemala-volcano-00000005_prediction.png") as image:
        assert not np.asarray(image).any()


def test_missing_or_bad_rasters_are_refused(written: dict[str, Path], tmp_path: Path):
    with pytest.raises(DatasetError, match="holds no"):
        score_folders(tmp_path, tmp_path)
    bad = tmp_path / "targets"
    bad.mkdir()
    name = "guatemala-volcano-00000003"
    Image.fromarray(np.full((4, 4), 7, dtype=np.uint8)).save(
        bad / f"test_localization_{name}_target.png")
    with pytest.raises(DatasetError, match="values 0-4"):
        score_folders(written["truth"] / "predictions", bad)
    with pytest.raises(DatasetError, match="does not exist"):
        score_folders(tmp_path, written["truth"] / "targets")


def test_grades_absent_from_every_tile_as_the_official_scorer(written: dict[str, Path],
                                                              tmp_path: Path):
    # florence 480 alone (14 major-damage buildings) with the random grades: three grades
    # occur in no target. Official scorer (same commit and date as `OFFICIAL`): score
    # 0.30000093333282923, damage_f1 1.3333326131832785e-06, localization_f1 1.0, F1s 0, 0,
    # 0.6171539961013645, 0.
    name = "hurricane-florence-00000480"
    for kind in ("predictions", "targets"):
        (tmp_path / kind).mkdir()
        for path in (written["random"] / kind).glob(f"*_{name}_*.png"):
            (tmp_path / kind / path.name).write_bytes(path.read_bytes())
    figures = score_folders(tmp_path / "predictions", tmp_path / "targets").to_dict()
    assert [figures[k] for k in _KEYS] == pytest.approx(
        (0.30000093333282923, 1.3333326131832785e-06, 1.0, 0.0, 0.0, 0.6171539961013645, 0.0),
        abs=1e-9, rel=0)
