"""Read xBD (xView2) folders: tiles, their metadata and their building polygons.

An xBD folder (one split of the dataset, e.g. ``train`` or ``tier3``) holds::

    images/<disaster>_<number>_{pre,post}_disaster.png
    labels/<disaster>_<number>_{pre,post}_disaster.json

A label holds ``metadata`` (sensor, gsd, capture_date, disaster, disaster_type, width, height
and more) and ``features``: the same buildings twice, as WKT polygons in pixel coordinates
(``xy``) and in longitude/latitude (``lng_lat``), matched by ``properties.uid``. Post-disaster
labels carry each building's damage in ``properties.subtype``; pre-disaster labels have none.
Labels may be written on one line (as distributed) or indented: both are plain JSON.

Pixel coordinates follow GDAL's convention: (0, 0) is the top-left corner of the top-left pixel,
so the image spans ``[0, width] x [0, height]``. The real tiles show it: pre-disaster labels clip
buildings cut by the tile's edge at exactly 0 and 1024, the far edge of a 1024-pixel image (a
pixel-centre convention would clip at 1023).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import shapely
from shapely.geometry import Polygon

from geovlm.enums import CheckedEnum
from geovlm.errors import XbdError
from geovlm.labels.damage import Damage
from geovlm.labels.prompts import DisasterLabel

__all__ = ["Phase", "XbdBuilding", "XbdTile", "read_xbd"]


class Phase(CheckedEnum):
    """Whether an xBD image was taken before or after the disaster.

    Examples
    --------
    >>> Phase("Post")
    <Phase.POST: 'post'>
    """

    PRE = "pre"
    POST = "post"


def _fail(source: Path, problem: str) -> XbdError:
    return XbdError(f"{source} {problem}; replace it with the original xBD label file.")


@dataclass(frozen=True, slots=True)
class XbdBuilding:
    """One building of an xBD label, in pixels and in longitude/latitude.

    The two polygons list the same vertices in the same order, so each pixel vertex has its
    longitude/latitude counterpart (the control points of `geovlm.sources.georef`).
    """

    uid: str
    #: The damage grade; None in pre-disaster labels.
    damage: Damage | None
    #: The outline in pixel coordinates (GDAL convention, see the module docstring).
    pixels: Polygon
    #: The outline in longitude/latitude (WGS 84, EPSG:4326).
    lonlat: Polygon

    @classmethod
    def from_features(
        cls, xy: Mapping[str, Any], lng_lat: Mapping[str, Any], source: Path
    ) -> XbdBuilding:
        """Build a building from its ``features.xy`` and ``features.lng_lat`` entries.

        Parameters
        ----------
        xy, lng_lat
            The two entries of one uid: ``{"properties": {...}, "wkt": "POLYGON ((...))"}``.
        source
            The label file, named in errors.

        Returns
        -------
        XbdBuilding
            The building.

        Raises
        ------
        XbdError
            A WKT is no polygon, the two outlines differ in vertex count, or the damage grade
            is unknown.
        """
        properties = xy["properties"]
        uid = str(properties["uid"])
        pixels, lonlat = (_polygon(entry, uid, source) for entry in (xy, lng_lat))
        if len(shapely.get_coordinates(pixels)) != len(shapely.get_coordinates(lonlat)):
            raise _fail(source, f"gives building {uid} different vertex counts in xy and lng_lat")
        subtype = properties.get("subtype")
        try:
            damage = None if subtype is None else Damage(subtype)
        except ValueError as exc:
            raise _fail(source, f"has building {uid} with {exc}") from None
        return cls(uid, damage, pixels, lonlat)


def _polygon(entry: Mapping[str, Any], uid: str, source: Path) -> Polygon:
    wkt = entry.get("wkt")
    if not isinstance(wkt, str):
        raise _fail(source, f"has no wkt for building {uid}")
    try:
        geometry = shapely.from_wkt(wkt)
    except (shapely.errors.GEOSException, TypeError) as exc:
        raise _fail(source, f"has an unreadable WKT for building {uid} ({exc})") from None
    if not isinstance(geometry, Polygon) or geometry.is_empty:
        raise _fail(source, f"has a {geometry.geom_type} for building {uid}, not a polygon")
    return geometry


@dataclass(frozen=True, slots=True)
class XbdTile:
    """One xBD image (pre- or post-disaster) with its label's metadata and buildings.

    Examples
    --------
    >>> XbdTile.file_regex.match("guatemala-volcano_00000003_post_disaster")["name"]
    'guatemala-volcano_00000003'
    """

    #: Subfolder of the images (``<stem>.png``).
    image_folder: ClassVar[str] = "images"
    #: Subfolder of the labels (``<stem>.json``).
    label_folder: ClassVar[str] = "labels"
    #: A file stem: tile name (disaster and number) and phase.
    file_regex: ClassVar[re.Pattern[str]] = re.compile(
        r"^(?P<name>.+_\d+)_(?P<phase>pre|post)_disaster$"
    )
    #: Damage grades in xBD's order (torchgeo's XView2 classes, without the background).
    classes: ClassVar[tuple[Damage, ...]] = tuple(Damage)
    #: The metadata keys read, and the Python type each must have.
    metadata_keys: ClassVar[dict[str, type | tuple[type, ...]]] = {
        "disaster": str,
        "disaster_type": str,
        "capture_date": str,
        "gsd": (int, float),
        "sensor": str,
        "width": int,
        "height": int,
    }

    #: Disaster and number, e.g. ``guatemala-volcano_00000003``.
    name: str
    phase: Phase
    image: Path
    label: Path
    #: The event, e.g. ``guatemala-volcano``.
    disaster: str
    disaster_type: DisasterLabel
    capture_date: dt.datetime
    #: The sensor's ground sampling distance in metres as the label states it (multispectral:
    #: coarser than the PNG's pixels, which are about 0.5 m).
    gsd: float
    sensor: str
    width: int
    height: int
    buildings: tuple[XbdBuilding, ...]

    @property
    def stem(self) -> str:
        """The file stem, e.g. ``guatemala-volcano_00000003_post_disaster``."""
        return f"{self.name}_{self.phase.value}_disaster"

    def control_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Every building vertex in pixels and in longitude/latitude, as two (n, 2) arrays.

        Row i of both arrays is the same point: the pairs an affine transform is fitted to.
        """
        if not self.buildings:
            return np.empty((0, 2)), np.empty((0, 2))
        pixels = shapely.get_coordinates([building.pixels for building in self.buildings])
        lonlat = shapely.get_coordinates([building.lonlat for building in self.buildings])
        return pixels, lonlat

    def damage_counts(self) -> Counter[Damage | None]:
        """Buildings per damage grade (None counts those without one, as in pre labels)."""
        return Counter(building.damage for building in self.buildings)

    @classmethod
    def from_label(cls, label: str | Path, image: str | Path) -> XbdTile:
        """Read one label file; the image is only recorded, not opened.

        Parameters
        ----------
        label
            ``labels/<stem>.json``.
        image
            The matching ``images/<stem>.png``.

        Returns
        -------
        XbdTile
            The tile.

        Raises
        ------
        XbdError
            The file is not valid JSON, lacks a key, repeats a uid, has different uids in
            ``xy`` and ``lng_lat``, or has an unknown disaster type or damage grade.
        """
        label = Path(label)
        match = cls.file_regex.match(label.stem)
        if match is None:
            raise XbdError(
                f"{label} is not named <disaster>_<number>_<pre|post>_disaster.json; rename it"
                " as xBD does."
            )
        data = _load_json(label)
        metadata = _metadata(data, label)
        try:
            disaster_type = DisasterLabel.from_xbd(metadata["disaster_type"])
        except ValueError as exc:
            raise _fail(label, f"has {exc}") from None
        try:
            date = dt.datetime.fromisoformat(metadata["capture_date"])
        except ValueError:
            date_text = metadata["capture_date"]
            raise _fail(label, f"has capture_date {date_text!r}, not a date") from None
        return cls(
            name=match["name"],
            phase=Phase(match["phase"]),
            image=Path(image),
            label=label,
            disaster=metadata["disaster"],
            disaster_type=disaster_type,
            capture_date=date,
            gsd=float(metadata["gsd"]),
            sensor=metadata["sensor"],
            width=metadata["width"],
            height=metadata["height"],
            buildings=_buildings(data, label),
        )


def _load_json(label: Path) -> dict[str, Any]:
    try:
        data = json.loads(label.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _fail(label, f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise _fail(label, f"cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise _fail(label, "holds no JSON object")
    return data


def _metadata(data: Mapping[str, Any], label: Path) -> dict[str, Any]:
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        raise _fail(label, "has no metadata object")
    for key, kind in XbdTile.metadata_keys.items():
        value = metadata.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _fail(label, f"has no valid metadata.{key} (found {value!r})")
    return metadata


def _entries(data: Mapping[str, Any], key: str, label: Path) -> dict[str, Mapping[str, Any]]:
    """The entries of ``features[key]`` by uid."""
    features = data.get("features")
    entries = features.get(key) if isinstance(features, dict) else None
    if not isinstance(entries, list):
        raise _fail(label, f"has no features.{key} list")
    by_uid: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        try:
            uid = str(entry["properties"]["uid"])
        except (KeyError, TypeError):
            raise _fail(label, f"has a features.{key} entry without properties.uid") from None
        if uid in by_uid:
            raise _fail(label, f"repeats uid {uid} in features.{key}")
        by_uid[uid] = entry
    return by_uid


def _buildings(data: Mapping[str, Any], label: Path) -> tuple[XbdBuilding, ...]:
    xy, lng_lat = _entries(data, "xy", label), _entries(data, "lng_lat", label)
    if xy.keys() != lng_lat.keys():
        odd = sorted(xy.keys() ^ lng_lat.keys())
        raise _fail(
            label, f"has {len(odd)} uid(s) in only one of features.xy and features.lng_lat"
            f" (e.g. {odd[0]})"
        )
    return tuple(XbdBuilding.from_features(xy[uid], lng_lat[uid], label) for uid in xy)


def _stems(folder: Path, suffix: str, phases: tuple[Phase, ...]) -> dict[str, Path]:
    return {
        path.stem: path
        for phase in phases
        for path in folder.glob(f"*_{phase.value}_disaster{suffix}")
    }


def read_xbd(folder: str | Path, phase: Phase | str | None = None) -> tuple[XbdTile, ...]:
    """Read every tile of an xBD folder, sorted by name, pre before post.

    Parameters
    ----------
    folder
        The folder holding ``images/`` and ``labels/``.
    phase
        ``"pre"`` or ``"post"`` to read only that phase; None (default) reads both.

    Returns
    -------
    tuple of XbdTile
        One tile per label file (one per image and phase).

    Raises
    ------
    XbdError
        The folder is missing or no xBD folder, holds no labels, an image lacks its label or
        a label its image, or a label is malformed (see `XbdTile.from_label`).
    ValueError
        `phase` is not a phase; the message lists them.
    """
    folder = Path(folder)
    phases = tuple(Phase) if phase is None else (Phase(phase),)
    images_dir, labels_dir = folder / XbdTile.image_folder, folder / XbdTile.label_folder
    if not folder.is_dir():
        raise XbdError(f"{folder} is not a folder; give the xBD folder that holds images/ and"
                       " labels/.")
    if not (images_dir.is_dir() and labels_dir.is_dir()):
        raise XbdError(f"{folder} is not an xBD folder (it lacks images/ or labels/); give the"
                       " folder that holds both, e.g. the dataset's train/.")
    images = _stems(images_dir, ".png", phases)
    labels = _stems(labels_dir, ".json", phases)
    wanted = "/".join(p.value for p in phases)
    if not labels:
        raise XbdError(f"{labels_dir} holds no *_{{{wanted}}}_disaster.json labels; give an xBD"
                       " folder with labels.")
    for stem in sorted(labels.keys() - images.keys()):
        raise XbdError(f"{labels[stem]} has no image {images_dir / stem}.png; restore the image"
                       " or remove the label.")
    for stem in sorted(images.keys() - labels.keys()):
        raise XbdError(f"{images[stem]} has no label {labels_dir / stem}.json; restore the label"
                       " or remove the image.")
    tiles = [XbdTile.from_label(labels[stem], images[stem]) for stem in labels]
    order = {phase: index for index, phase in enumerate(Phase)}
    return tuple(sorted(tiles, key=lambda tile: (tile.name, order[tile.phase])))

