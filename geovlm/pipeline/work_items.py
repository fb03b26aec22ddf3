"""What passes between the driver of a run (which alone writes) and an engine (which runs a model).

A scene's work items come from an `ItemSource`: the chip grid (`geovlm.scenes.tiling.SceneTiler`)
or the crops around building footprints (`geovlm.sources.crops.BuildingCrops`). Either knows
its items' ids at once and reads their pixels only when asked. The driver hands an engine
`SceneWork`: a scene's path and the ids of its items still to do, never pixels, so an engine
may read them in another process (``--engine ray``, reopening the scene with the run's
`ItemOpener`). The engine gives back `ProcessedBatch`: the task's records of a batch of one
scene's items with their outlines, and the items it left out under ``--min-valid``. A task's
own work on a batch is its `ChipSteps`, made by its setup (the model load) wherever the engine
runs the model.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Generator, Mapping, Set
from dataclasses import dataclass
from typing import Any, Protocol

from rasterio.crs import CRS
from shapely.geometry import Polygon

from geovlm.output.grouped_writes import LayerRows
from geovlm.scenes.entry import SceneEntry
from geovlm.scenes.scene import SceneInfo

__all__ = [
    "ChipPreparer", "ChipProcessor", "ChipRecords", "ChipSteps", "ItemOpener", "ItemSource",
    "ProcessedBatch", "SceneWork", "WorkItem",
]


class WorkItem(Protocol):
    """One piece of work of a scene: a chip, or the crop around one building."""

    @property
    def item_id(self) -> str:
        """Stable id, unique in its scene: what a re-run resumes by."""
        ...

    @property
    def footprint(self) -> Polygon:
        """The outline written as the record's geometry, in the scene's CRS."""
        ...


class ItemSource(Protocol):
    """A scene's work items: their ids known when opened, their pixels read on demand."""

    info: SceneInfo
    #: Items left out so far because too little of them holds data (``--min-valid``).
    skipped_invalid: int

    def item_ids(self) -> list[str]:
        """Every item's id, in reading order."""
        ...

    def items(self, skip: Container[str] = frozenset()) -> Generator[Any, None, None]:
        """Read the valid items (each a `WorkItem`) in order, leaving out those in `skip`."""
        ...

    def signature(self) -> dict[str, object]:
        """What the way items are cut adds to the run's signature (e.g. the tiling)."""
        ...

    def scale_warning(self) -> str | None:
        """Why the scene's resolution does not suit the items, or None."""
        ...

    def close(self) -> None:
        """Stop reading and close the scene."""
        ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


#: Opens a scene's items by path, as `RunScenes.opener` does on an engine's workers; picklable.
ItemOpener = Callable[[str], ItemSource]

#: The CPU-side work on a batch (e.g. encoding images for the model); runs in a background
#: thread one batch ahead of `ChipProcessor`, together with reading the batch's items.
ChipPreparer = Callable[[list[Any]], Any]


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


#: Turns a batch of items and what `ChipPreparer` made of it into its records.
ChipProcessor = Callable[[list[Any], Any], ChipRecords]


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
    """A scene and the ids of its items to process, in reading order: what an engine is handed."""

    scene: SceneEntry
    item_ids: tuple[str, ...]


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
