"""The xView2 challenge's score, computed as its official scorer computes it, in numpy.

The challenge scores per-pixel rasters (`geovlm.evaluation.xview2_rasters` writes them): for
each tile a localization prediction and target (0 background, >0 building) and a damage
prediction and target (0 background, 1-4 the grades). Over all tiles:

- localization: pixel counts of ``prediction > 0`` against ``target > 0``, summed, one F1;
- damage: on the pixels where the damage *target* has a building, the predicted damage is
  masked by the predicted localization (a grade counts only where a building is predicted);
  for each grade ``c``, TP/FN/FP are counted **only on tiles whose target holds c** (a tile
  without c adds no false positives of c), then summed over tiles, one F1 per grade;
- ``damage_f1 = 4 / sum_c 1 / (F1_c + 1e-6)`` (harmonic mean, the scorer's epsilon: a grade
  with F1 0 drives it to about 4e-6);
- ``score = 0.3 * localization_f1 + 0.7 * damage_f1``.

Precision and recall are 0 when TP is 0, F1 is 0 when either is. This follows
DIUx-xView/xView2_scoring ``xview2_metrics.py``; the tests check the figures it gives.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from geovlm.errors import DatasetError

__all__ = [
    "DAMAGE_WEIGHT",
    "EPSILON",
    "LOCALIZATION_WEIGHT",
    "PixelCounts",
    "TileCounts",
    "Xview2Score",
    "harmonic_mean_f1",
    "score_folders",
    "score_tiles",
    "tile_counts",
]

#: Added to every F1 in the harmonic mean, as the official scorer does.
EPSILON = 1e-6
#: The weights of the overall score.
LOCALIZATION_WEIGHT, DAMAGE_WEIGHT = 0.3, 0.7
#: The damage values 1-4 (no-damage, minor-damage, major-damage, destroyed).
_GRADES = (1, 2, 3, 4)
_TARGET = re.compile(r"^(?P<split>[^_]+)_localization_(?P<id>[^_]+)_target\.png$")


@dataclass(frozen=True, slots=True)
class PixelCounts:
    """True positive, false positive and false negative pixels of one class."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        """``tp / (tp + fp)``, 0 when ``tp`` is 0."""
        return self.tp / (self.tp + self.fp) if self.tp else 0.0

    @property
    def recall(self) -> float:
        """``tp / (tp + fn)``, 0 when ``tp`` is 0."""
        return self.tp / (self.tp + self.fn) if self.tp else 0.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall, 0 when either is.

        Examples
        --------
        >>> PixelCounts(tp=2, fp=2, fn=0).f1
        0.6666666666666666
        """
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p and r else 0.0

    def __add__(self, other: PixelCounts) -> PixelCounts:
        return PixelCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def to_dict(self) -> dict[str, float | int]:
        """Return counts, precision, recall and F1 as JSON-ready data."""
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": self.precision,
                "recall": self.recall, "f1": self.f1}


_ZERO = PixelCounts(0, 0, 0)


@dataclass(frozen=True, slots=True)
class TileCounts:
    """One tile's localization counts, and per grade its damage counts (None: grade absent)."""

    localization: PixelCounts
    damage: tuple[PixelCounts | None, ...]


def _counts(prediction: np.ndarray, target: np.ndarray, c: int) -> PixelCounts:
    predicted, true = prediction == c, target == c
    return PixelCounts(tp=int((predicted & true).sum()), fp=int((predicted & ~true).sum()),
                       fn=int((~predicted & true).sum()))


def tile_counts(
    localization: np.ndarray, damage: np.ndarray,
    localization_target: np.ndarray, damage_target: np.ndarray,
) -> TileCounts:
    """Count one tile's pixels as the official scorer does (see the module docstring).

    Parameters
    ----------
    localization, damage
        The predicted rasters (any value > 0 a building; damage 0-4).
    localization_target, damage_target
        The truth, same shape.

    Returns
    -------
    TileCounts

    Examples
    --------
    >>> t = np.array([[0, 1, 2, 2]])
    >>> c = tile_counts(np.array([[1, 1, 1, 0]]), np.array([[3, 1, 2, 2]]), t, t)
    >>> c.localization, c.damage[1], c.damage[2]
    (PixelCounts(tp=2, fp=1, fn=1), PixelCounts(tp=1, fp=0, fn=1), None)
    """
    shapes = {a.shape for a in (localization, damage, localization_target, damage_target)}
    if len(shapes) != 1:
        raise ValueError(f"the four rasters differ in shape: {sorted(shapes)}")
    scored = damage_target > 0
    predicted = np.where(localization > 0, damage, 0)[scored]
    true = damage_target[scored]
    present = set(np.unique(true).tolist())
    return TileCounts(
        localization=_counts(localization > 0, localization_target > 0, True),
        damage=tuple(_counts(predicted, true, c) if c in present else None for c in _GRADES),
    )


def harmonic_mean_f1(f1s: Sequence[float]) -> float:
    """The xView2 damage F1: ``len(f1s) / sum(1 / (f1 + 1e-6))``.

    Examples
    --------
    >>> round(harmonic_mean_f1([0.5, 0.5, 0.5, 0.5]), 7)
    0.500001
    >>> harmonic_mean_f1([1.0, 1.0, 1.0, 0.0]) < 1e-5
    True
    """
    return len(f1s) / sum(1.0 / (f1 + EPSILON) for f1 in f1s)


@dataclass(frozen=True, slots=True)
class Xview2Score:
    """The challenge's figures over a set of tiles.

    Attributes
    ----------
    tiles
        Tiles scored.
    localization
        Pixel counts of buildings over all tiles.
    damage
        Per grade (no-damage ... destroyed), counts over the tiles whose target holds it.
    """

    tiles: int
    localization: PixelCounts
    damage: tuple[PixelCounts, ...]

    @property
    def localization_f1(self) -> float:
        """F1 of building pixels."""
        return self.localization.f1

    @property
    def damage_f1s(self) -> tuple[float, ...]:
        """F1 of each grade."""
        return tuple(counts.f1 for counts in self.damage)

    @property
    def damage_f1(self) -> float:
        """Harmonic mean of the four grade F1s (`harmonic_mean_f1`)."""
        return harmonic_mean_f1(self.damage_f1s)

    @property
    def score(self) -> float:
        """``0.3 * localization_f1 + 0.7 * damage_f1``."""
        return LOCALIZATION_WEIGHT * self.localization_f1 + DAMAGE_WEIGHT * self.damage_f1

    def to_dict(self) -> dict[str, Any]:
        """Return the figures under the official scorer's keys, plus the counts."""
        f1s = self.damage_f1s
        return {
            "score": self.score,
            "damage_f1": self.damage_f1,
            "localization_f1": self.localization_f1,
            "damage_f1_no_damage": f1s[0],
            "damage_f1_minor_damage": f1s[1],
            "damage_f1_major_damage": f1s[2],
            "damage_f1_destroyed": f1s[3],
            "tiles": self.tiles,
            "localization": self.localization.to_dict(),
            "damage": [counts.to_dict() for counts in self.damage],
        }


def score_tiles(counts: Iterable[TileCounts]) -> Xview2Score:
    """Sum the tiles' counts and score them.

    Parameters
    ----------
    counts
        `tile_counts` of every tile.

    Returns
    -------
    Xview2Score
    """
    tiles = 0
    localization = _ZERO
    damage = [_ZERO] * len(_GRADES)
    for tile in counts:
        tiles += 1
        localization += tile.localization
        damage = [total + (c or _ZERO) for total, c in zip(damage, tile.damage, strict=True)]
    return Xview2Score(tiles, localization, tuple(damage))


def score_folders(predictions: str | Path, targets: str | Path) -> Xview2Score:
    """Score a predictions folder against a targets folder named as the challenge names them.

    Every ``<split>_localization_<id>_target.png`` in `targets` is one tile; its
    ``<split>_damage_<id>_target.png`` and the two ``..._prediction.png`` of `predictions`
    must exist. Each image must be single-band uint8 with values 0-4.

    Parameters
    ----------
    predictions, targets
        The two folders.

    Returns
    -------
    Xview2Score

    Raises
    ------
    DatasetError
        If `targets` holds no localization target, a file is missing or unreadable, or an
        image is not uint8 with values 0-4.
    """
    predictions, targets = Path(predictions), Path(targets)
    names = sorted(p.name for p in targets.glob("*_localization_*_target.png"))
    tiles = [m for m in map(_TARGET.match, names) if m is not None]
    if not tiles:
        raise DatasetError(f"{targets} holds no <split>_localization_<id>_target.png: give the"
                           " targets folder geovlm eval --xview2-dir wrote.")
    counts = []
    for match in tiles:
        split, tile = match["split"], match["id"]
        counts.append(tile_counts(
            _raster(predictions / f"{split}_localization_{tile}_prediction.png"),
            _raster(predictions / f"{split}_damage_{tile}_prediction.png"),
            _raster(targets / f"{split}_localization_{tile}_target.png"),
            _raster(targets / f"{split}_damage_{tile}_target.png"),
        ))
    return score_tiles(counts)


def _raster(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"{path} does not exist: write the xView2 rasters of every tile.")
    try:
        with Image.open(path) as image:
            values = np.asarray(image)
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{path} is no readable PNG ({exc}): write the xView2 rasters"
                           " again.") from None
    if values.dtype != np.uint8 or values.ndim != 2 or values.max(initial=0) > 4:
        raise DatasetError(f"{path} must be a single-band uint8 image with values 0-4: write"
                           " the xView2 rasters again.")
    return values
