"""Per-tile rasters in the xView2 challenge's layout, for its scorer (and geovlm's own).

For every tile of an xBD folder, four single-band uint8 PNGs of the tile's size (1024 x 1024
in xBD), named as DIUx-xView/xView2_scoring's ``xview2_metrics.py`` reads them::

    DIR/predictions/test_localization_<id>_prediction.png   0 background, 1 building
    DIR/predictions/test_damage_<id>_prediction.png         0 background, 1-4 the grade
    DIR/targets/test_localization_<id>_target.png           the pre-disaster label's buildings
    DIR/targets/test_damage_<id>_target.png                 the post-disaster label's grades

``<id>`` is the tile name with ``_`` written ``-`` (``guatemala-volcano-00000003``): the
scorer splits target names on ``_`` and wants four parts. Grades are 1 no-damage, 2
minor-damage, 3 major-damage, 4 destroyed. The targets are made as the challenge's own (and
DIUx-xView/xView2-deploy's ``create_masks.py``, which regenerates them) make them:
localization from the pre-disaster polygons, damage from the post-disaster ones, and an
``un-classified`` building written as 1 (the scorer admits no value above 4).

geovlm does not find buildings: it grades given footprints. So the localization prediction is
those footprints themselves (every building of the post label), and the damage prediction
fills each footprint with its predicted grade; a footprint without a prediction is localized
with damage 0 (a miss for its true grade). The localization F1 therefore measures only how the
footprints match the pre-disaster polygons, not a detector.

A polygon covers the pixels whose centres it contains (GDAL's rule, pixel coordinates as in
`geovlm.sources.xbd`); polygons drawn later cover earlier ones, in label order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from PIL import Image
from rasterio.features import rasterize
from shapely.geometry import Polygon

from geovlm.labels.building_damage import GRADES
from geovlm.labels.damage import Damage
from geovlm.sources.xbd import Phase, XbdTile, read_xbd

__all__ = [
    "PREDICTIONS_FOLDER",
    "TARGETS_FOLDER",
    "Xview2Folder",
    "burn",
    "grade_value",
    "prediction_rasters",
    "target_rasters",
    "tile_id",
    "write_xview2",
]

#: Subfolders of the xView2 folder.
PREDICTIONS_FOLDER, TARGETS_FOLDER = "predictions", "targets"
#: The scorer's split prefix.
_SPLIT = "test"


def tile_id(name: str) -> str:
    """The tile's id in xView2 file names: ``_`` cannot occur in it.

    Examples
    --------
    >>> tile_id("guatemala-volcano_00000003")
    'guatemala-volcano-00000003'
    """
    return name.replace("_", "-")


def grade_value(grade: Damage | str) -> int:
    """The raster value of a damage grade: 1-4, ``un-classified`` as no-damage (1).

    Examples
    --------
    >>> grade_value("destroyed"), grade_value("un-classified")
    (4, 1)
    """
    grade = Damage(grade)
    return 1 if grade is Damage.UN_CLASSIFIED else GRADES.index(grade) + 1


def burn(shapes: Iterable[tuple[Polygon, int]], width: int, height: int) -> np.ndarray:
    """Fill pixel-coordinate polygons with their values, later ones over earlier ones.

    Examples
    --------
    >>> from shapely.geometry import box
    >>> burn([(box(0, 0, 2, 1), 3)], width=3, height=2).tolist()
    [[3, 3, 0], [0, 0, 0]]
    """
    shapes = list(shapes)
    if not shapes:
        return np.zeros((height, width), dtype=np.uint8)
    return rasterize(shapes, out_shape=(height, width), transform=Affine.identity(),
                     fill=0, dtype=np.uint8)


def target_rasters(pre: XbdTile | None, post: XbdTile) -> tuple[np.ndarray, np.ndarray]:
    """The localization and damage targets of one tile.

    Parameters
    ----------
    pre
        The pre-disaster label (its polygons are the localization truth); None: the post
        label's polygons.
    post
        The post-disaster label (its grades are the damage truth).

    Returns
    -------
    tuple of numpy.ndarray
        ``(localization, damage)``, uint8 of the tile's height x width.
    """
    footprints = (pre if pre is not None else post).buildings
    localization = burn(((b.pixels, 1) for b in footprints), post.width, post.height)
    damage = burn(((b.pixels, grade_value(b.damage or Damage.UN_CLASSIFIED))
                   for b in post.buildings), post.width, post.height)
    return localization, damage


def prediction_rasters(
    post: XbdTile, grades: Mapping[str, Damage | str]
) -> tuple[np.ndarray, np.ndarray]:
    """The localization and damage predictions of one tile's footprints.

    Parameters
    ----------
    post
        The tile whose footprints were graded.
    grades
        Building uid -> predicted grade (one of `GRADES`; uids of other tiles are ignored).

    Returns
    -------
    tuple of numpy.ndarray
        ``(localization, damage)``: every footprint localized, each graded one filled with
        its grade's value, an ungraded one with 0.
    """
    localization = burn(((b.pixels, 1) for b in post.buildings), post.width, post.height)
    damage = burn(((b.pixels, grade_value(grades[b.uid]) if b.uid in grades else 0)
                   for b in post.buildings), post.width, post.height)
    return localization, damage


@dataclass(frozen=True, slots=True)
class Xview2Folder:
    """Where `write_xview2` put the rasters, and which tile each id is."""

    predictions: Path
    targets: Path
    #: xView2 id -> xBD tile name.
    tiles: Mapping[str, str]


def write_xview2(
    xbd: str | Path, folder: str | Path, grades: Mapping[str, Damage | str],
    tiles: Collection[str] | None = None,
) -> Xview2Folder:
    """Write the predictions and targets of every post-disaster tile of an xBD folder.

    Parameters
    ----------
    xbd
        The xBD folder (``images/``, ``labels/``).
    folder
        Receives ``predictions/`` and ``targets/`` (created; files of the same names
        replaced).
    grades
        Building uid -> predicted grade, over all tiles.
    tiles
        Write only these tiles (xBD names, e.g. an evaluation split's); None: every tile.

    Returns
    -------
    Xview2Folder

    Raises
    ------
    XbdError
        If the xBD folder cannot be read (`geovlm.sources.xbd.read_xbd`).
    """
    every = read_xbd(xbd)
    pre = {t.name: t for t in every if t.phase is Phase.PRE}
    folder = Path(folder)
    predictions, targets = folder / PREDICTIONS_FOLDER, folder / TARGETS_FOLDER
    predictions.mkdir(parents=True, exist_ok=True)
    targets.mkdir(parents=True, exist_ok=True)
    ids = {}
    for post in (t for t in every if t.phase is Phase.POST
                 and (tiles is None or t.name in tiles)):
        name = tile_id(post.name)
        ids[name] = post.name
        for kind, raster in zip(("localization", "damage"),
                                target_rasters(pre.get(post.name), post), strict=True):
            _write(targets / f"{_SPLIT}_{kind}_{name}_target.png", raster)
        for kind, raster in zip(("localization", "damage"),
                                prediction_rasters(post, grades), strict=True):
            _write(predictions / f"{_SPLIT}_{kind}_{name}_prediction.png", raster)
    return Xview2Folder(predictions, targets, ids)


def _write(path: Path, raster: np.ndarray) -> None:
    Image.fromarray(raster).save(path)
