"""A synthetic xBD folder for tests: real layout and label schema, learnable disaster types.

`write_synthetic_xbd` writes ``images/<event>_<number>_{pre,post}_disaster.png`` and
``labels/<same>.json`` exactly as xBD does (metadata with every real key, ``features.xy`` and
``features.lng_lat`` WKT polygons joined by uid, damage ``subtype`` in post labels only; odd
tiles' labels are indented, even ones on one line, as both occur in the real data).

What a model can learn from it:

- **Disaster type** (post images only): each type has its own strong signature, a dominant
  ground colour plus a texture, under mild per-pixel noise. Fire is orange-red with blotches,
  flood blue with horizontal ripples, wind grey-violet with diagonal stripes, earthquake tan with
  a crack grid, tsunami teal with vertical waves, volcano near-black with speckles. Pre images
  show the same neutral green ground for every type (as in xBD, the disaster is only visible
  afterwards), so disaster questions belong on post images.
- **Damage** (post images): each building's roof is drawn in its grade's shade, from near white
  (no-damage) to near black (destroyed); un-classified roofs are yellowish. Pre roofs are all
  light grey.

Geometry: each event sits at its own longitude/latitude; its tiles are laid side by side on a
north-up grid of about 0.5 m pixels with a slight shear, and every ``lng_lat`` vertex is its
``xy`` vertex through that affine transform, so a fitted transform has residuals near zero.
Everything is a pure function of the arguments: the same seed writes the same bytes.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from geovlm.labels.damage import Damage
from geovlm.labels.prompts import DisasterLabel

__all__ = ["COLOUR_FLIPS", "DEFAULT_EVENTS", "write_change_xbd", "write_synthetic_xbd"]

#: Two events per xBD disaster type (event name -> xBD ``disaster_type``), so a split by event
#: can hold a whole event of every type out.
DEFAULT_EVENTS: dict[str, str] = {
    f"synth{label.value}-{letter}": word
    for label, word in [
        (DisasterLabel.FIRE, "fire"),
        (DisasterLabel.FLOOD, "flooding"),
        (DisasterLabel.WIND, "wind"),
        (DisasterLabel.EARTHQUAKE, "earthquake"),
        (DisasterLabel.TSUNAMI, "tsunami"),
        (DisasterLabel.VOLCANO, "volcano"),
    ]
    for letter in "ab"
}

#: Dominant ground colour of post images per type, and of every pre image.
_GROUND = {
    DisasterLabel.FIRE: (205, 75, 35),
    DisasterLabel.FLOOD: (40, 90, 200),
    DisasterLabel.WIND: (150, 140, 175),
    DisasterLabel.EARTHQUAKE: (185, 150, 95),
    DisasterLabel.TSUNAMI: (30, 165, 160),
    DisasterLabel.VOLCANO: (50, 45, 50),
}
_PRE_GROUND = (85, 125, 65)
_ROOF = {
    None: (215, 215, 215),
    Damage.NO_DAMAGE: (240, 240, 240),
    Damage.MINOR_DAMAGE: (175, 175, 170),
    Damage.MAJOR_DAMAGE: (105, 100, 95),
    Damage.DESTROYED: (20, 18, 18),
    Damage.UN_CLASSIFIED: (215, 205, 110),
}
_PIXEL_M = 0.5
_METRES_PER_DEGREE = 111_320.0


def _texture(label: DisasterLabel, size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) pattern in [-1, 1] that, with the colour, marks the disaster type."""
    y, x = np.mgrid[0:size, 0:size] * (2 * math.pi / 16)
    if label is DisasterLabel.FIRE:
        blotches = rng.random((size // 8 + 1, size // 8 + 1)) > 0.6
        return -np.kron(blotches, np.ones((8, 8)))[:size, :size]
    if label is DisasterLabel.FLOOD:
        return np.sin(y)
    if label is DisasterLabel.WIND:
        return np.sign(np.sin(x + y))
    if label is DisasterLabel.EARTHQUAKE:
        cracks = (np.arange(size) % 16 == 0)
        return -(cracks[:, None] | cracks[None, :]).astype(float)
    if label is DisasterLabel.TSUNAMI:
        return np.sin(x)
    return rng.choice([-1.0, 0.0, 1.0], size=(size, size), p=[0.1, 0.8, 0.1])


def _ground(label: DisasterLabel | None, size: int, rng: np.random.Generator) -> np.ndarray:
    colour = np.array(_PRE_GROUND if label is None else _GROUND[label], dtype=float)
    pattern = np.zeros((size, size)) if label is None else _texture(label, size, rng)
    pixels = colour + 30 * pattern[..., None] + rng.normal(0, 8, (size, size, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _wkt(points: np.ndarray) -> str:
    return "POLYGON ((" + ", ".join(f"{x!r} {y!r}" for x, y in points.tolist()) + "))"


def _buildings(size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Three to five rectangles (closed rings of pixel corners) inside the image."""
    scale = size / 64
    rings = []
    for _ in range(int(rng.integers(3, 6))):
        w, h = rng.uniform(6, 14, 2) * scale
        x0, y0 = rng.uniform(1, size - 1 - w), rng.uniform(1, size - 1 - h)
        rings.append(np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h],
                               [x0, y0]]))
    return rings


def _metadata(event: str, word: str, stem: str, phase: str, size: int, seed: int) -> dict:
    month = "01" if phase == "pre" else "03"
    return {
        "sensor": "SYNTHETIC01",
        "provider_asset_type": "SYNTHETIC01",
        "gsd": 1.8 if phase == "pre" else 1.9,
        "capture_date": f"2020-{month}-15T10:30:00.000Z",
        "off_nadir_angle": 12.5,
        "pan_resolution": 0.45,
        "sun_azimuth": 140.0,
        "sun_elevation": 55.0,
        "target_azimuth": 200.0,
        "disaster": event,
        "disaster_type": word,
        "catalog_id": f"{zlib.crc32(f'{event}{phase}{seed}'.encode()):016X}",
        "original_width": size,
        "original_height": size,
        "width": size,
        "height": size,
        "id": f"synthetic-{stem}",
        "img_name": f"{stem}.png",
    }


def write_synthetic_xbd(
    folder: str | Path,
    tiles_per_event: int,
    events: dict[str, str] | None = None,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write a synthetic xBD folder: pre and post images and labels of several events.

    Parameters
    ----------
    folder
        Where to write ``images/`` and ``labels/`` (created if missing).
    tiles_per_event
        Tiles per event, numbered ``<event>_00000000`` on; each has a pre and a post image.
    events
        Event name -> xBD ``disaster_type`` (``fire``, ``flooding``, ``wind``, ``earthquake``,
        ``tsunami``, ``volcano``); default `DEFAULT_EVENTS`, two events per type.
    size
        Image edge in pixels (buildings scale with it).
    seed
        Seed of everything random; a tile's content depends only on seed, event and number.

    Returns
    -------
    pathlib.Path
        `folder`.
    """
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for event, word in (DEFAULT_EVENTS if events is None else events).items():
        label = DisasterLabel.from_xbd(word)
        event_key = zlib.crc32(event.encode())
        origin_rng = np.random.default_rng([seed, event_key])
        lon0, lat0 = origin_rng.uniform(-120, 120), origin_rng.uniform(-50, 50)
        step_lat = _PIXEL_M / _METRES_PER_DEGREE
        step_lon = step_lat / math.cos(math.radians(lat0))
        for number in range(tiles_per_event):
            rng = np.random.default_rng([seed, event_key, number])
            # North-up with a slight shear, as a UTM grid looks in longitude/latitude.
            transform = np.array([
                [step_lon, 0.01 * step_lon, lon0 + number * size * step_lon],
                [-0.01 * step_lat, -step_lat, lat0],
            ])
            rings = _buildings(size, rng)
            uids = [f"{event}-{number:08d}-{i}" for i in range(len(rings))]
            damages = [Damage(str(value)) for value in rng.choice(list(Damage), len(rings))]
            for phase, ground in (("pre", None), ("post", label)):
                stem = f"{event}_{number:08d}_{phase}_disaster"
                image = Image.fromarray(_ground(ground, size, rng))
                draw = ImageDraw.Draw(image)
                features: dict[str, list] = {"lng_lat": [], "xy": []}
                for ring, uid, damage in zip(rings, uids, damages, strict=True):
                    grade = damage if phase == "post" else None
                    draw.polygon([tuple(p) for p in ring.tolist()], fill=_ROOF[grade])
                    properties = {"feature_type": "building", "uid": uid}
                    if grade is not None:
                        properties["subtype"] = grade.value
                    lonlat = np.column_stack([ring, np.ones(len(ring))]) @ transform.T
                    features["lng_lat"].append({"properties": properties, "wkt": _wkt(lonlat)})
                    features["xy"].append({"properties": properties, "wkt": _wkt(ring)})
                image.save(folder / "images" / f"{stem}.png", compress_level=1)
                data = {"features": features,
                        "metadata": _metadata(event, word, stem, phase, size, seed)}
                (folder / "labels" / f"{stem}.json").write_text(
                    json.dumps(data, indent=2 if number % 2 else None)
                )
    return folder


#: The components of a building's colour that its grade flips from pre to post (bit 1: red
#: low/high, bit 2: blue low/high): the grade shows only as change (`write_change_xbd`).
COLOUR_FLIPS = {
    Damage.NO_DAMAGE: 0, Damage.MINOR_DAMAGE: 1, Damage.MAJOR_DAMAGE: 2, Damage.DESTROYED: 3,
}
#: The four colours of a building cell, indexed by their two components (red, blue), each low
#: or high, far apart; green stays mid.
_PALETTE = np.array([(40, 120, 40), (220, 120, 40), (40, 120, 220), (220, 120, 220)], dtype=float)
#: Pixels of one building cell: a 24-pixel square, plus the 10 m (20-pixel) crop margin each side.
_CELL = 64


def write_change_xbd(folder: str | Path, tiles: int, grid: int = 3, seed: int = 0) -> Path:
    """Write a synthetic xBD folder in which damage shows only as a change from pre to post.

    Each tile holds ``grid`` x ``grid`` square buildings, one per 64-pixel cell, so that each
    building's crop (its box plus the default 10 m margin at 0.5 m pixels) is its cell exactly.
    A pre cell is one colour of a four-colour palette, drawn at random, under mild noise: red
    low or high, blue low or high. The post cell is the pre colour with the components
    `COLOUR_FLIPS` of its grade flipped (none, red, blue, both). The post colour is thus uniform
    over the palette whatever the grade: a post crop alone tells nothing, the pair tells the
    grade, and which component changed is the same read whichever crop comes first. Grades
    cycle through the four, shuffled per tile.

    Parameters
    ----------
    folder
        Where to write ``images/`` and ``labels/``.
    tiles
        Tiles of the one event ``synthchange``, numbered from 0.
    grid
        Buildings per tile side.
    seed
        Seed of everything random.

    Returns
    -------
    pathlib.Path
        `folder`.
    """
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    size, event = grid * _CELL, "synthchange"
    step_lat = _PIXEL_M / _METRES_PER_DEGREE
    step_lon = step_lat / math.cos(math.radians(35.0))
    grades = list(COLOUR_FLIPS)
    for number in range(tiles):
        rng = np.random.default_rng([seed, number])
        transform = np.array([[step_lon, 0.0, 10.0 + number * size * step_lon],
                              [0.0, -step_lat, 35.0]])
        pixels = {"pre": np.zeros((size, size, 3)), "post": np.zeros((size, size, 3))}
        features: dict[str, list] = {"lng_lat": [], "xy": []}
        cycle = [grades[i % 4] for i in rng.permutation(grid * grid)]
        for index, damage in enumerate(cycle):
            row, col = divmod(index, grid)
            before = int(rng.integers(0, len(_PALETTE)))
            after = before ^ COLOUR_FLIPS[damage]
            window = np.s_[row * _CELL:(row + 1) * _CELL, col * _CELL:(col + 1) * _CELL]
            for phase, colour in (("pre", before), ("post", after)):
                pixels[phase][window] = _PALETTE[colour] + rng.normal(0, 4, (_CELL, _CELL, 3))
            x0, y0 = col * _CELL + 20, row * _CELL + 20
            ring = np.array([[x0, y0], [x0 + 24, y0], [x0 + 24, y0 + 24], [x0, y0 + 24],
                             [x0, y0]], dtype=float)
            lonlat = np.column_stack([ring, np.ones(len(ring))]) @ transform.T
            properties = {"feature_type": "building", "uid": f"b{index}",
                          "subtype": damage.value}
            features["lng_lat"].append({"properties": properties, "wkt": _wkt(lonlat)})
            features["xy"].append({"properties": properties, "wkt": _wkt(ring)})
        for phase in ("pre", "post"):
            stem = f"{event}_{number:08d}_{phase}_disaster"
            image = np.clip(pixels[phase], 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / "images" / f"{stem}.png", compress_level=1)
            listed = features if phase == "post" else {
                key: [{**f, "properties": {k: v for k, v in f["properties"].items()
                                           if k != "subtype"}} for f in entries]
                for key, entries in features.items()
            }
            data = {"features": listed,
                    "metadata": _metadata(event, "earthquake", stem, phase, size, seed)}
            (folder / "labels" / f"{stem}.json").write_text(json.dumps(data))
    return folder
