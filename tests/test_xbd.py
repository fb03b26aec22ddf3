"""The xBD reader on the real tiles and on bad folders, and the synthetic xBD generator."""

from __future__ import annotations

import filecmp
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image

from geovlm.errors import XbdError
from geovlm.labels.damage import Damage
from geovlm.labels.prompts import DisasterLabel
from geovlm.sources.xbd import Phase, XbdTile, read_xbd
from tests.synthetic_xbd import DEFAULT_EVENTS, write_synthetic_xbd

D = Damage
#: Post-disaster damage counts of the real tiles, as ../shared/data/PROVENANCE.md lists them.
REAL_POST = {
    "guatemala-volcano_00000003": (DisasterLabel.VOLCANO, {D.MINOR_DAMAGE: 2, D.DESTROYED: 1}),
    "guatemala-volcano_00000005": (DisasterLabel.VOLCANO, {D.UN_CLASSIFIED: 1}),
    "hurricane-florence_00000480": (DisasterLabel.FLOOD, {D.MAJOR_DAMAGE: 14}),
    "hurricane-florence_00000483": (DisasterLabel.FLOOD, {D.NO_DAMAGE: 10, D.MINOR_DAMAGE: 3}),
    "santa-rosa-wildfire_00000217": (
        DisasterLabel.FIRE, {D.DESTROYED: 27, D.MINOR_DAMAGE: 3, D.MAJOR_DAMAGE: 1}
    ),
    "santa-rosa-wildfire_00000242": (
        DisasterLabel.FIRE,
        {D.DESTROYED: 60, D.MINOR_DAMAGE: 7, D.NO_DAMAGE: 3, D.MAJOR_DAMAGE: 1},
    ),
}


def test_reads_every_real_tile_with_its_damage(real_xbd):
    tiles = read_xbd(real_xbd)
    assert [(t.name, t.phase) for t in tiles] == [
        (name, phase) for name in sorted(REAL_POST) for phase in (Phase.PRE, Phase.POST)
    ]
    for pre, post in zip(tiles[::2], tiles[1::2], strict=True):
        disaster_type, counts = REAL_POST[post.name]
        assert post.damage_counts() == counts
        assert pre.damage_counts() == {None: sum(counts.values())}
        assert {b.uid for b in pre.buildings} == {b.uid for b in post.buildings}
        for tile in (pre, post):
            assert tile.disaster_type is disaster_type
            assert tile.disaster == tile.name.split("_")[0]
            assert (tile.width, tile.height) == (1024, 1024)
            assert tile.image == real_xbd / "images" / f"{tile.stem}.png"
            assert tile.label == real_xbd / "labels" / f"{tile.stem}.json"
            assert tile.capture_date.tzinfo is not None
        assert pre.capture_date < post.capture_date


def test_metadata_and_polygons_of_one_real_tile(real_xbd):
    [tile] = [t for t in read_xbd(real_xbd, "post") if t.name == "hurricane-florence_00000480"]
    assert (tile.sensor, round(tile.gsd, 2)) == ("GEOEYE01", 2.09)
    assert tile.capture_date.isoformat() == "2018-09-20T16:04:41+00:00"
    raw = json.loads(tile.label.read_text())["features"]
    first = tile.buildings[0]
    assert first.uid == raw["xy"][0]["properties"]["uid"]
    assert first.pixels.equals_exact(shapely.from_wkt(raw["xy"][0]["wkt"]), 0)
    assert first.lonlat.equals_exact(shapely.from_wkt(raw["lng_lat"][0]["wkt"]), 0)
    pixels, lonlat = tile.control_points()
    assert pixels.shape == lonlat.shape == (95, 2)
    assert pixels.min() >= 0 and pixels.max() <= 1024
    assert np.all((lonlat[:, 0] > -78) & (lonlat[:, 0] < -77.9) & (lonlat[:, 1] > 34.7))


def test_both_json_layouts_read_alike(real_xbd, tmp_path):
    one_line = (real_xbd / "labels" / "guatemala-volcano_00000003_post_disaster.json").read_text()
    indented = (real_xbd / "labels" / "santa-rosa-wildfire_00000217_post_disaster.json")
    assert "\n" not in one_line.strip() and indented.read_text().startswith("{\n  ")
    copy = _copy_tile(real_xbd, tmp_path, "guatemala-volcano_00000003", "post")
    label = copy / "labels" / "guatemala-volcano_00000003_post_disaster.json"
    label.write_text(json.dumps(json.loads(one_line), indent=4))
    [reread] = read_xbd(copy)
    [original] = [t for t in read_xbd(real_xbd, "post") if t.name == reread.name]
    assert reread.buildings == original.buildings


def test_buildings_join_by_uid_not_by_order(real_xbd, tmp_path):
    copy = _copy_tile(real_xbd, tmp_path, "hurricane-florence_00000483", "post")
    label = copy / "labels" / "hurricane-florence_00000483_post_disaster.json"
    data = json.loads(label.read_text())
    data["features"]["lng_lat"].reverse()
    label.write_text(json.dumps(data))
    [tile] = read_xbd(copy)
    [original] = [t for t in read_xbd(real_xbd, "post") if t.name == tile.name]
    assert tile.buildings == original.buildings


def test_phase_filter(real_xbd):
    assert {t.phase for t in read_xbd(real_xbd, Phase.POST)} == {Phase.POST}
    assert len(read_xbd(real_xbd, "pre")) == 6
    with pytest.raises(ValueError, match="unknown phase 'during'; choose one of: pre, post"):
        read_xbd(real_xbd, "during")


def test_class_metadata_follows_xbd():
    assert XbdTile.classes == tuple(Damage)
    assert [d.value for d in Damage] == [
        "no-damage", "minor-damage", "major-damage", "destroyed", "un-classified"
    ]
    assert (XbdTile.image_folder, XbdTile.label_folder) == ("images", "labels")


def _copy_tile(source: Path, target: Path, name: str, phase: str) -> Path:
    for kind, suffix in (("images", "png"), ("labels", "json")):
        (target / kind).mkdir(parents=True, exist_ok=True)
        stem = f"{name}_{phase}_disaster.{suffix}"
        shutil.copyfile(source / kind / stem, target / kind / stem)
    return target


STEM = "synthfire-a_00000000_post_disaster"


def _edit_label(change):
    """A damage to the folder that changes the label's JSON in place."""

    def damage(folder: Path) -> None:
        label = folder / "labels" / f"{STEM}.json"
        data = json.loads(label.read_text())
        change(data)
        label.write_text(json.dumps(data))

    return damage


def _edit(key: str, value: object):
    return _edit_label(lambda data: data["metadata"].__setitem__(key, value))


def _edit_feature(kind: str, key: str, value: object):
    def change(data: dict) -> None:
        entry = data["features"][kind][0]
        if key == "wkt":
            entry["wkt"] = value
        else:
            entry["properties"] = {**entry["properties"], key: value}

    return _edit_label(change)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda folder: (folder / "labels" / f"{STEM}.json").write_text('{"features": '),
         f"{STEM}.json is not valid JSON (Expecting value at line 1)"),
        (lambda folder: (folder / "images" / f"{STEM}.png").unlink(),
         f"{STEM}.json has no image"),
        (lambda folder: (folder / "labels" / f"{STEM}.json").unlink(),
         f"{STEM}.png has no label"),
        (_edit_feature("lng_lat", "uid", "someone-else"),
         "has 2 uid(s) in only one of features.xy and features.lng_lat"),
        (_edit("disaster_type", "meteor"),
         "has unknown disaster label 'meteor'; choose one of: fire, flood"),
        (_edit("gsd", "fine"), "has no valid metadata.gsd (found 'fine')"),
        (_edit("capture_date", "yesterday"), "has capture_date 'yesterday', not a date"),
        (_edit_feature("xy", "subtype", "gone"), "with unknown damage 'gone'; choose one of"),
        (_edit_feature("xy", "wkt", "POINT (1 2)"), "has a Point for building"),
        (_edit_label(lambda data: data["features"]["lng_lat"][0].pop("wkt")),
         "has no wkt for building synthfire-a-00000000-0"),
        (_edit_label(lambda data: data["features"]["xy"].append({"wkt": "POLYGON EMPTY"})),
         "has a features.xy entry without properties.uid"),
        (_edit_label(lambda data: data["features"]["xy"].append(data["features"]["xy"][0])),
         "repeats uid synthfire-a-00000000-0 in features.xy"),
        (_edit_label(lambda data: data.pop("metadata")), "has no metadata object"),
        (_edit_label(lambda data: data.pop("features")), "has no features.xy list"),
        (_edit_feature("xy", "wkt", "POLYGON ((1 2,"), "has an unreadable WKT for building"),
        (_edit_feature("lng_lat", "wkt", "POLYGON ((0 0, 1 0, 0 1, 0 0))"),
         "different vertex counts in xy and lng_lat"),
        (lambda folder: shutil.rmtree(folder / "images"), "is not an xBD folder"),
    ],
)
def test_bad_folders_name_the_file_in_one_sentence(tmp_path, damage, message):
    folder = write_synthetic_xbd(tmp_path / "xbd", 1, {"synthfire-a": "fire"})
    damage(folder)
    with pytest.raises(XbdError) as caught:
        read_xbd(folder)
    text = str(caught.value)
    assert message in text, text
    assert "\n" not in text and text.count("; ") >= 1 and text.endswith(".")


def test_missing_or_empty_folders(tmp_path):
    with pytest.raises(XbdError, match="is not a folder"):
        read_xbd(tmp_path / "nowhere")
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(XbdError, match=r"holds no \*_\{pre/post\}_disaster.json labels"):
        read_xbd(tmp_path)
    (tmp_path / "labels" / "somewhere_pre_disaster.json").write_text("{}")
    with pytest.raises(XbdError, match=re.escape("is not named <disaster>_<number>_<pre|post>")):
        XbdTile.from_label(tmp_path / "labels" / "somewhere_pre_disaster.json", "x.png")


# The synthetic generator other tests (datasets, training, evaluation) build on.


def test_synthetic_round_trip(synthetic_xbd):
    tiles = read_xbd(synthetic_xbd)
    assert len(tiles) == 2 * 2 * len(DEFAULT_EVENTS)
    assert {t.disaster: t.disaster_type for t in tiles} == {
        event: DisasterLabel.from_xbd(word) for event, word in DEFAULT_EVENTS.items()
    }
    assert Counter(t.disaster_type for t in tiles) == {label: 8 for label in DisasterLabel}
    for tile in tiles:
        assert 3 <= len(tile.buildings) <= 5
        assert (tile.width, tile.height) == (64, 64)
        with Image.open(tile.image) as image:
            assert (image.size, image.mode) == ((64, 64), "RGB")
        damages = {b.damage for b in tile.buildings}
        assert (damages == {None}) if tile.phase is Phase.PRE else (None not in damages)


def _mean_colour(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image, dtype=float).reshape(-1, 3).mean(axis=0)


def test_each_disaster_type_looks_different_after_the_disaster(synthetic_xbd):
    post = read_xbd(synthetic_xbd, "post")
    # Colour centroids of the "-a" events classify every tile of the held-out "-b" events.
    centroids = {
        label: np.mean([_mean_colour(t.image) for t in post
                        if t.disaster_type is label and t.disaster.endswith("-a")], axis=0)
        for label in DisasterLabel
    }
    for tile in (t for t in post if t.disaster.endswith("-b")):
        colour = _mean_colour(tile.image)
        nearest = min(centroids, key=lambda label: np.linalg.norm(centroids[label] - colour))
        assert nearest is tile.disaster_type
    gaps = [np.linalg.norm(a - b) for a in centroids.values() for b in centroids.values()
            if a is not b]
    assert min(gaps) > 40
    pre = [_mean_colour(t.image) for t in read_xbd(synthetic_xbd, "pre")]
    assert np.ptp(pre, axis=0).max() < 25  # before the disaster, every type looks alike


def test_damage_grades_shade_the_roofs(synthetic_xbd):
    shades: dict[Damage, list[float]] = {}
    for tile in read_xbd(synthetic_xbd, "post"):
        with Image.open(tile.image) as image:
            grey = np.asarray(image.convert("L"), dtype=float)
        for building in tile.buildings:
            x, y = building.pixels.centroid.coords[0]
            shades.setdefault(building.damage, []).append(grey[int(y), int(x)])
    order = [D.NO_DAMAGE, D.MINOR_DAMAGE, D.MAJOR_DAMAGE, D.DESTROYED]
    means = [np.mean(shades[grade]) for grade in order]
    assert means == sorted(means, reverse=True) and means[0] - means[-1] > 150


def test_synthetic_is_deterministic_per_seed_and_tile(tmp_path):
    events = {"synthwind-a": "wind", "synthflood-a": "flooding"}
    first = write_synthetic_xbd(tmp_path / "a", 2, events, seed=3)
    again = write_synthetic_xbd(tmp_path / "b", 3, events, seed=3)
    other = write_synthetic_xbd(tmp_path / "c", 2, events, seed=4)
    for kind in ("images", "labels"):
        names = sorted(p.name for p in (first / kind).iterdir())
        assert len(names) == 8
        match, mismatch, _ = filecmp.cmpfiles(first / kind, again / kind, names, shallow=False)
        assert mismatch == [] and len(match) == 8
        _, differ, _ = filecmp.cmpfiles(first / kind, other / kind, names, shallow=False)
        assert len(differ) == 8


def test_synthetic_size_scales_images_and_buildings(tmp_path):
    folder = write_synthetic_xbd(tmp_path, 1, {"synthquake-a": "earthquake"}, size=256)
    [pre, post] = read_xbd(folder)
    assert (post.width, post.height) == (256, 256)
    assert post.disaster_type is DisasterLabel.EARTHQUAKE
    assert min(b.pixels.area for b in post.buildings) >= (6 * 4) ** 2
    assert all(b.pixels.within(shapely.box(0, 0, 256, 256)) for b in pre.buildings)
