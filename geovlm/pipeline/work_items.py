"""What passes between the driver of a run (which alone writes) and an engine (which runs a model).

The driver hands an engine `SceneWork`: a scene's path and the ids of its chips still to do,
never pixels, so an engine may read them in another process (``--engine ray``). The engine
gives back `ProcessedBatch`: the task's records of a batch of one scene's chips with the chips'
outlines, and the chips it left out under ``--min-valid``. A task's own work on a batch is its
`ChipSteps`, made by its setup (the model load) wherever the engine runs the model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from typing import Any

from rasterio.crs import CRS
from shapely.geometry import Polygon

from geovlm.output.grouped_writes import LayerRows
from geovlm.scenes.entry import SceneEntry
from geovlm.scenes.tiling import Chip

__all__ = [
    "ChipPreparer", "ChipProcessor", "ChipRecords", "ChipSteps", "ProcessedBatch", "SceneWork",
]

#: The CPU-side work on a batch (e.g. encoding images for the model); runs in a background
#: thread one batch ahead of `ChipProcessor`, together with reading the batch's chips.
ChipPreparer = Callable[[list[Chip]], Any]


@dataclass(frozen=True, slots=True)
class ChipRecords:
    """What processing a batch of chips gives.

    Attributes
    ----------
    chips
        One record of the chip layer per chip, in order (its geometry is the chip's footprint).
    others
        Records of the run's further layer (e.g. the chips' objects), written before their
        chips; any whose id is already in the layer (a resumed chip's) are left out.
    """

    chips: list[dict[str, Any]]
    others: tuple[LayerRows, ...] = ()


#: Turns a batch of chips and what `ChipPreparer` made of it into its records.
ChipProcessor = Callable[[list[Chip], Any], ChipRecords]


@dataclass(frozen=True, slots=True)
class ChipSteps:
    """A task's steps on a batch, made by its setup once the output has been accepted.

    Attributes
    ----------
    prepare
        CPU-side work on a batch, done one batch ahead on a background thread.
    process
        Turns a batch of chips and its prepared form into records.
    wanted
        The ids of the chips to process (the progress total); None for every chip.
    kept
        Told of the records of `ChipRecords.others` that are written (without those already
        in the output), e.g. to count them.
    counts
        The task's own counts for the summary, called once at the end with the ids of every
        chip in the chip layer (done by this run or an earlier one).
    """

    prepare: ChipPreparer
    process: ChipProcessor
    wanted: frozenset[str] | None = None
    kept: Callable[[LayerRows], None] | None = None
    counts: Callable[[Set[str]], Mapping[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class SceneWork:
    """A scene and the ids of its chips to process, in grid order: what an engine is handed."""

    scene: SceneEntry
    chip_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProcessedBatch:
    """A batch of one scene's chips after the task's steps: what an engine gives back.

    Attributes
    ----------
    scene
        The scene the chips belong to.
    crs
        The scene's CRS, that of `footprints`.
    footprints
        Each chip's outline, in the order of ``records.chips``.
    records
        The task's records of the chips.
    skipped_invalid
        Chips of the scene left out under ``--min-valid`` since the engine's previous batch of
        it (a batch may hold no chip and only report these).
    """

    scene: SceneEntry
    crs: CRS
    footprints: list[Polygon]
    records: ChipRecords
    skipped_invalid: int = 0
