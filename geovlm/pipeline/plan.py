"""What a command hands the driver: how the run writes (`RunOptions`) and the task (`ChipTask`).

A command builds both once from its options; the task's own function (``classify_scenes``,
``refer_scene``, ``tile_scene``) fills in the `ChipTask`, and `geovlm.pipeline.driver`
runs it. Nothing here touches a file or loads a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geovlm.events.progress import ProgressMode
from geovlm.output.fields import FieldType, LayerSpec
from geovlm.pipeline.engines import ChipEngine
from geovlm.pipeline.work_items import ChipSteps, ItemSource

__all__ = ["ChipTask", "RunOptions"]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How a run writes, whatever its task: the output, batching, progress and engine.

    Attributes
    ----------
    output
        The ``.gpkg`` to write or resume.
    batch_size
        Chips per call of the task's model; None for the task's own (`ChipTask.batch_size`).
    progress
        How progress is reported.
    overwrite
        Start afresh, replacing an existing output instead of resuming it.
    engine
        Where the task's steps run; None for this process (`geovlm.pipeline.engines.local`).
    """

    output: str | Path
    batch_size: int | None = None
    progress: ProgressMode = ProgressMode.AUTO
    overwrite: bool = False
    engine: ChipEngine | None = None


@dataclass(frozen=True, slots=True)
class ChipTask:
    """A task as the driver runs it: the layer it writes and the steps that fill it.

    Attributes
    ----------
    command
        The command's name, recorded in the ``runs`` table.
    parameters
        The task's parameters; with `command`, the scenes and their tiling they decide whether
        an existing output is resumed.
    layer, fields, style_qml
        The layer named in the ``runs`` table, its schema and its QGIS style: the chip layer,
        unless `chip_layer` is given. A chip layer's records also need ``chip_id``, ``row``,
        ``col`` and ``valid_fraction`` (an event's layer adds the scenes' names and fields); a
        layer listing ``run_id`` gets it filled.
    setup
        Makes the task's steps (e.g. loads the model), called once the scenes have been
        opened and the output checked, locked and found new or resumable.
    id_field
        The id field of `layer`; None for the chip layer's (``chip_id``, or an event's
        ``scene_chip_id``).
    chip_layer
        The chip layer when `layer` holds the chips' objects; one scene only.
    check
        Reads and checks the task's other inputs against each open scene's items (e.g.
        footprints over its chip grid), before the output is touched.
    extra_versions
        Versions of the libraries the steps rely on, recorded with the run.
    batch_size
        Chips per call of the steps when `RunOptions.batch_size` does not say.
    counts
        The task's counts for the summary, known without its steps (which Ray's actors hold):
        called once every record is written, with the output's path (e.g. to count rows of
        the whole layer, earlier runs' included).
    unit
        What the progress bar counts: the work items, e.g. ``"buildings"`` for a task whose
        items are buildings.
    """

    command: str
    parameters: Mapping[str, Any]
    layer: str
    fields: Mapping[str, FieldType]
    style_qml: str
    setup: Callable[[], ChipSteps]
    id_field: str | None = None
    chip_layer: LayerSpec | None = None
    check: Callable[[ItemSource], None] | None = None
    extra_versions: Mapping[str, str] = field(default_factory=dict)
    batch_size: int = 8
    counts: Callable[[Path], Mapping[str, Any]] | None = None
    unit: str = "chips"
