"""Labelled chips of one scene into a dataset: the reads `classify` made, and the split unit.

Chips are read by `geovlm.scenes.tiling.SceneTiler` with the caller's `TilingOptions`, so a chip
trains on exactly the pixels (window, resampling, stretch) that ``classify`` sees for it.

Neighbouring chips of one scene share sensor, date, light and often the same buildings, so a
split by chip would leak the test set into training. The split unit (`Sample.tile`) is a block
of ``block`` x ``block`` chips: a tile split holds whole blocks out. Blocks still touch along
their edges, so a block split is optimistic for a new region; the honest test is an event split
over several scenes (`Sample.event` is the scene's event name).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from shapely.geometry import Polygon

from geovlm.datasets.disaster import disaster_samples
from geovlm.datasets.format import DatasetWriter
from geovlm.datasets.splits import SplitBy, SplitRule
from geovlm.errors import InputError, ParameterError
from geovlm.events.progress import ProgressMode, ProgressReporter
from geovlm.labels.prompts import DisasterLabel, Language
from geovlm.labels.verbalizer import Verbalizer
from geovlm.scenes.tiling import SceneTiler

__all__ = ["ChipBlocks", "write_scene_chips"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChipBlocks:
    """How the chips of a scene are grouped into split units, and the scene's event name.

    Attributes
    ----------
    name
        The scene's name in unit ids (its file stem).
    block
        Chips per block side; 1 makes every chip its own unit.
    event
        The event the scene shows; an event split needs several scenes' sets.

    Examples
    --------
    >>> ChipBlocks("haiti", 4, "haiti-2021").tile(5, 9)
    'haiti_b001_002'
    """

    name: str
    block: int = 4
    event: str = ""

    def __post_init__(self) -> None:
        if self.block < 1:
            raise ParameterError(f"--block {self.block} must be at least 1 chip.")

    def check_split(self, rule: SplitRule) -> None:
        """Refuse an event split of one scene's chips before any work (they are one event).

        Raises
        ------
        DatasetError
            As `SplitRule.test_units` for an event split of one event.
        """
        if rule.by is SplitBy.EVENT:
            rule.test_units([self.event])

    def tile(self, row: int, col: int) -> str:
        """Return the unit id of the chip at a grid position."""
        return f"{self.name}_b{row // self.block:03d}_{col // self.block:03d}"


def write_scene_chips(
    writer: DatasetWriter,
    tiler: SceneTiler,
    labels: Mapping[str, DisasterLabel],
    *,
    blocks: ChipBlocks,
    languages: tuple[Language, ...],
    verbalizer: Verbalizer,
    progress: ProgressMode = ProgressMode.AUTO,
    expected: Mapping[str, Polygon] | None = None,
) -> set[str]:
    """Read the labelled chips of a scene and add one question per language about each.

    Parameters
    ----------
    writer
        The open dataset.
    tiler
        The scene, cut as the labels were made.
    labels
        Chip id to its disaster type; other chips are not read.
    blocks
        The split unit and event of the scene's chips.
    languages, verbalizer
        The questions' languages and the answer forms.
    progress
        How progress is reported.
    expected
        Chip id to the footprint it had when labelled (e.g. in a classify GeoPackage); a chip
        read elsewhere means another scene or grid.

    Returns
    -------
    set of str
        The ids of the chips written (labelled chips under ``min_valid`` are left out).

    Raises
    ------
    InputError
        A labelled chip is not in the scene's grid, or lies elsewhere than `expected` says, or
        no labelled chip holds enough valid pixels.
    """
    cells = {cell.chip_id for cell in tiler.cells}
    if unknown := sorted(labels.keys() - cells):
        raise InputError(
            f"chip {unknown[0]} is not in the {len(cells)}-chip grid of {tiler.info.path}: give"
            " the scene and tiling the chips were made from (--scene)."
        )
    pixel = max(abs(tiler.info.transform.a), abs(tiler.info.transform.e))
    written: set[str] = set()
    with ProgressReporter(progress, len(labels), "chips") as reporter:
        for chip in tiler.chips(skip=cells - labels.keys()):
            footprint = expected.get(chip.chip_id) if expected is not None else None
            if footprint is not None and not chip.footprint.equals_exact(footprint, pixel / 2):
                raise InputError(
                    f"chip {chip.chip_id} lies elsewhere in {tiler.info.path} than where it was"
                    " labelled: give the scene the chips were made from (--scene)."
                )
            image = writer.add_image(chip.chip_id, chip.image)
            writer.extend(disaster_samples(
                image, labels[chip.chip_id], languages=languages, verbalizer=verbalizer,
                tile=blocks.tile(chip.row, chip.col), event=blocks.event,
            ))
            written.add(chip.chip_id)
            reporter.advance()
        reporter.advance(len(labels) - len(written))
        reporter.finish(written=len(written))
    if labels and not written:
        raise InputError(
            f"none of the {len(labels)} labelled chips of {tiler.info.path} holds enough valid"
            " pixels (--min-valid): for a scene smaller than a chip at the preset's GSD, pass"
            " --native-gsd or a smaller --size."
        )
    if len(labels) > len(written):
        logger.warning("%d labelled chips hold too little valid data (--min-valid) and are left"
                       " out", len(labels) - len(written))
    return written
