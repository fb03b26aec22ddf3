"""Train/test splits that never cut through a tile: whole tiles or whole events, seeded.

Chips of one tile look alike (same sensor, date, light), so a split by chip leaks the test set
into training. Holding out whole events is the honest test of a new region.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geovlm.datasets.samples import Sample, Split
from geovlm.enums import CheckedEnum
from geovlm.errors import DatasetError

__all__ = ["SplitBy", "SplitRule", "assign_splits"]

logger = logging.getLogger(__name__)


class SplitBy(CheckedEnum):
    """The unit kept whole on one side of the split."""

    TILE = "tile"
    EVENT = "event"


@dataclass(frozen=True, slots=True)
class SplitRule:
    """How a dataset is divided between train and test.

    Attributes
    ----------
    by
        Keep tiles or events whole.
    test_fraction
        Share of the units (tiles or events) drawn for test, at least one when there are two.
    seed
        Seed of the draw: the same seed and units give the same split.
    holdout
        Units named for test instead of drawn (event names with ``by=event``, tiles otherwise).
    """

    by: SplitBy = SplitBy.TILE
    test_fraction: float = 0.2
    seed: int = 0
    holdout: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.test_fraction < 1:
            raise DatasetError(
                f"the test fraction must be in [0, 1), not {self.test_fraction}: pick e.g. 0.2."
            )

    def as_dict(self) -> dict[str, Any]:
        """Return the rule as JSON-ready data, for the dataset's manifest."""
        return {
            "by": self.by.value,
            "test_fraction": self.test_fraction,
            "seed": self.seed,
            "holdout": list(self.holdout),
        }

    def test_units(self, units: Sequence[str]) -> set[str]:
        """Return the units that go to test.

        Parameters
        ----------
        units
            Every distinct tile (or event) name of the set.

        Returns
        -------
        set of str

        Raises
        ------
        DatasetError
            If a held-out unit is not in the set, or an event split has one event only.

        Examples
        --------
        >>> sorted(SplitRule(test_fraction=0.5, seed=1).test_units(["a", "b", "c", "d"]))
        ['a', 'b']
        """
        names = sorted(set(units))
        if self.holdout:
            if unknown := sorted(set(self.holdout) - set(names)):
                other = SplitBy.TILE if self.by is SplitBy.EVENT else SplitBy.EVENT
                raise DatasetError(
                    f"--holdout names {', '.join(unknown)}, not among the {self.by.value}s of"
                    f" this source ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''}):"
                    f" name {self.by.value}s, or pass --split {other.value} to hold out"
                    f" {other.value}s."
                )
            return set(self.holdout)
        if self.by is SplitBy.EVENT and len(names) < 2 and self.test_fraction > 0:
            raise DatasetError(
                f"an event split needs two events or more, and this source has {len(names)}:"
                " pass --split tile."
            )
        if len(names) < 2 and self.test_fraction > 0:
            logger.warning(
                "the set has %d %s, so the test split is empty: pass a smaller --block (maps,"
                " vectors) or more data to test on", len(names), self.by.value,
            )
        if len(names) < 2 or self.test_fraction == 0:
            return set()
        count = min(len(names) - 1, max(1, round(self.test_fraction * len(names))))
        order = np.random.default_rng(self.seed).permutation(len(names))
        return {names[i] for i in order[:count]}


def assign_splits(samples: Sequence[Sample], rule: SplitRule) -> list[Split]:
    """Return each sample's split: a tile (or event) goes wholly to train or to test.

    Parameters
    ----------
    samples
        The samples, in any order.
    rule
        The split rule.

    Returns
    -------
    list of Split
        One per sample, in order.

    Raises
    ------
    DatasetError
        As `SplitRule.test_units`.
    """

    def unit(sample: Sample) -> str:
        return sample.event if rule.by is SplitBy.EVENT else sample.tile

    held_out = rule.test_units([unit(sample) for sample in samples])
    return [Split.TEST if unit(sample) in held_out else Split.TRAIN for sample in samples]
