"""`geovlm dataset from-xbd` on the real xBD tiles and on the synthetic generator's folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from click.testing import CliRunner
from PIL import Image
from shapely.geometry import box

from geovlm.cli import cli
from geovlm.datasets import SplitBy, SplitRule, Task, read_dataset
from geovlm.datasets.damage import DamageLevel, damage_answer, damage_question
from geovlm.datasets.from_xbd import build_from_xbd
from geovlm.errors import DatasetError, OutputError, XbdError
from geovlm.labels.damage import Damage
from geovlm.labels.prompts import DisasterLabel, Language, question
from geovlm.labels.verbalizer import Verbalizer
from tests.synthetic_xbd import _ROOF, write_synthetic_xbd

_SEVERITY = ["no-damage", "minor-damage", "major-damage", "destroyed"]


def _worst_in_chip(label_file: Path, x: int, y: int, size: int) -> str | None:
    """The damage label of one chip, straight from the raw JSON (independent of
    geovlm.sources.xbd)."""
    features = json.loads(label_file.read_text())["features"]["xy"]
    chip = box(x, y, x + size, y + size)
    grades, touched = [], False
    for feature in features:
        outline = shapely.from_wkt(feature["wkt"])
        inside = outline.intersection(chip).area
        touched |= inside > 0
        subtype = feature["properties"].get("subtype")
        if inside > 0.5 * outline.area and subtype in _SEVERITY:
            grades.append(_SEVERITY.index(subtype))
    if grades:
        return _SEVERITY[max(grades)]
    return None if touched else "no-buildings"


def test_real_tiles_both_tasks_event_split(real_xbd, tmp_path):
    data = build_from_xbd(real_xbd, tmp_path / "ds", verbalizer=Verbalizer.default(),
                          tasks=(Task.DISASTER, Task.DAMAGE),
                          split_rule=SplitRule(SplitBy.EVENT, holdout=("hurricane-florence",)))
    samples = data.samples()
    disaster = [s for s in samples if s.task is Task.DISASTER]
    assert len(disaster) == 6 * 3  # six post tiles, three languages; pre images are never used
    assert {s.event for s in samples} == {"guatemala-volcano", "hurricane-florence",
                                          "santa-rosa-wildfire"}
    assert {s.event for s in data.test} == {"hurricane-florence"}
    assert not any("pre_disaster" in s.image for s in samples)
    for sample in disaster:
        assert sample.question == question(sample.language)
        forms = Verbalizer.default().forms(sample.language)
        assert sample.answer == next(f.text for f in forms if f.label.value == sample.label)
        source = real_xbd / "images" / Path(sample.image).name
        assert data.image_path(sample).read_bytes() == source.read_bytes()
    assert {(s.tile, s.label) for s in disaster} >= {
        ("hurricane-florence_00000480", "flood"), ("santa-rosa-wildfire_00000217", "fire"),
    }
    damage = [s for s in samples if s.task is Task.DAMAGE]
    checked = 0
    for sample in damage:
        assert sample.question == damage_question(sample.language)
        assert sample.answer == damage_answer(sample.label, sample.language)
        stem, row, col = Path(sample.image).stem.rsplit("_", 2)
        x, y = 512 * int(col[1:]), 512 * int(row[1:])
        assert sample.label == _worst_in_chip(real_xbd / "labels" / f"{stem}.json", x, y, 512)
        assert Image.open(data.image_path(sample)).size == (512, 512)
        checked += 1
    assert checked == len(damage) > 3 * 18  # most of the 24 chips, in three languages
    assert {s.label for s in damage} >= {"destroyed", "no-buildings"}


def test_synthetic_set_is_seeded_and_uses_the_preset_forms(synthetic_xbd, tmp_path):
    verbalizer = Verbalizer.from_mapping({"en": {"fire": ["Wildfire", "Fire disaster"]}})
    rule = SplitRule(SplitBy.TILE, test_fraction=0.25, seed=7)
    first, second = (
        build_from_xbd(synthetic_xbd, tmp_path / name, verbalizer=verbalizer,
                       languages=(Language.EN,), split_rule=rule)
        for name in ("a", "b")
    )
    assert (tmp_path / "a/train.json").read_bytes() == (tmp_path / "b/train.json").read_bytes()
    assert len(first.samples()) == 24 and len(first.test) == 6
    assert {s.tile for s in first.train}.isdisjoint({s.tile for s in first.test})
    fire = {s.answer for s in first.samples() if s.label == "fire"}
    assert fire == {"Wildfire"}
    assert {s.label for s in first.samples()} == {label.value for label in DisasterLabel}
    assert first.manifest["parameters"]["answers"]["en"]["fire"] == ["Wildfire", "Fire disaster"]
    assert second.manifest["train"] == first.manifest["train"]


def test_synthetic_damage_chips_show_their_grade(tmp_path):
    folder = write_synthetic_xbd(tmp_path / "xbd", tiles_per_event=1,
                                 events={"synthfire-a": "fire", "synthflood-a": "flooding"},
                                 size=128)
    data = build_from_xbd(folder, tmp_path / "ds", verbalizer=Verbalizer.default(),
                          languages=(Language.JA,), tasks=(Task.DAMAGE,), damage_chip=64,
                          split_rule=SplitRule(test_fraction=0))
    damage = data.samples()
    assert damage and all(s.task is Task.DAMAGE for s in damage)
    graded = [s for s in damage if s.label != DamageLevel.NO_BUILDINGS]
    assert graded
    for sample in graded:
        pixels = np.asarray(Image.open(data.image_path(sample)).convert("RGB"), dtype=float)
        roof = np.array(_ROOF[Damage(sample.label)], dtype=float)
        assert np.abs(pixels - roof).sum(axis=-1).min() < 40, sample.image


def test_refusals_before_any_work(real_xbd, tmp_path):
    rule = SplitRule()
    with pytest.raises(XbdError, match="not an xBD folder"):
        build_from_xbd(tmp_path, tmp_path / "ds", verbalizer=Verbalizer.default(),
                       split_rule=rule)
    with pytest.raises(DatasetError, match="nowhere"):
        build_from_xbd(real_xbd, tmp_path / "ds", verbalizer=Verbalizer.default(),
                       split_rule=SplitRule(SplitBy.EVENT, holdout=("nowhere",)))
    assert not (tmp_path / "ds").exists()
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputError, match="no geovlm dataset"):
        build_from_xbd(real_xbd, tmp_path / "taken", verbalizer=Verbalizer.default(),
                       split_rule=rule, overwrite=True)


def test_cli_from_xbd(real_xbd, tmp_path):
    runner = CliRunner()
    help_text = runner.invoke(cli, ["dataset", "from-xbd", "--help"]).output
    for option in ("--languages", "--tasks", "--split", "--test-fraction", "--holdout", "--seed",
                   "--model", "--overwrite", "--progress", "--damage-chip"):
        assert option in help_text
    out = tmp_path / "ds"
    result = runner.invoke(cli, ["dataset", "from-xbd", str(real_xbd), "-o", str(out),
                                 "--languages", "en,zh", "--split", "event", "--holdout",
                                 "guatemala-volcano", "--progress", "json"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0] == {"protocol": 1, "event": "start", "total": 6}
    assert events[-1]["event"] == "done"
    assert result.stderr.strip() == (
        f"Wrote 12 samples to {out}: train 8 (4 tiles), test 4 (2 tiles); events held out:"
        " guatemala-volcano."
    )
    assert read_dataset(out).manifest["languages"] == ["en", "zh"]
    for args, words in [
        ([str(tmp_path / "missing")], "is not a folder"),
        ([str(real_xbd), "--tasks", "flood"], "unknown task 'flood'"),
        ([str(real_xbd), "--languages", ""], "at least one language"),
        ([str(real_xbd), "--holdout", "nowhere"], "nowhere"),
        ([str(real_xbd), "--damage-chip", "8"], "--damage-chip"),
        ([str(real_xbd), "--model", str(tmp_path / "no-model")], "is not a folder"),
        ([str(real_xbd), "--model", "xview2-qwen3"], "names no preset"),
    ]:
        result = runner.invoke(cli, ["dataset", "from-xbd", *args, "-o", str(tmp_path / "new")])
        assert result.exit_code == 2, result.output
        assert words in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "new").exists()
    result = runner.invoke(cli, ["dataset", "from-xbd", str(real_xbd), "-o", str(out)])
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert read_dataset(out).manifest["split"]["holdout"] == ["guatemala-volcano"]


@pytest.mark.parametrize("tasks", [(Task.DISASTER,), (Task.DAMAGE,)])
def test_a_truncated_png_is_named(real_xbd, tmp_path, tasks):
    folder = tmp_path / "xbd"
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True)
        for path in (real_xbd / sub).glob("santa-rosa-wildfire_00000217_*"):
            (folder / sub / path.name).write_bytes(path.read_bytes())
    png = folder / "images/santa-rosa-wildfire_00000217_post_disaster.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    with pytest.raises(XbdError, match=r"santa-rosa-wildfire_00000217_post_disaster\.png is no"):
        build_from_xbd(folder, tmp_path / "ds", verbalizer=Verbalizer.default(), tasks=tasks,
                       split_rule=SplitRule())
    assert not (tmp_path / "ds").exists()
