"""The ``tile`` task: chip footprints (and optionally chip files), no model involved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geovlm.output.chip_files import write_chip_geotiff
from geovlm.output.fields import FieldType
from geovlm.output.styles import outline_style
from geovlm.pipeline.driver import RunSummary, run_over_chips
from geovlm.pipeline.plan import ChipTask, RunOptions
from geovlm.pipeline.run_scenes import RunScenes
from geovlm.pipeline.work_items import ChipRecords, ChipSteps
from geovlm.scenes.tiling import Chip

__all__ = ["CHIP_FIELDS", "chip_record", "tile_scene"]

#: Chips per write transaction: no model sets the pace here, so batches are large, which keeps
#: GDAL's per-transaction cost of opening the GeoPackage small next to the reads.
TILE_BATCH = 256

#: Fields every chip layer has.
CHIP_FIELDS: dict[str, FieldType] = {
    "chip_id": FieldType.STRING,
    "row": FieldType.INTEGER,
    "col": FieldType.INTEGER,
    "valid_fraction": FieldType.REAL,
}


def chip_record(chip: Chip) -> dict[str, Any]:
    """The fields every chip layer records for a chip."""
    return {
        "chip_id": chip.chip_id,
        "row": chip.row,
        "col": chip.col,
        "valid_fraction": round(chip.valid_fraction, 6),
    }


def tile_scene(
    scenes: RunScenes, run: RunOptions, save_chips: str | Path | None = None
) -> RunSummary:
    """Write the chip grid of a scene to layer ``chips`` of a GeoPackage.

    Parameters
    ----------
    scenes
        The input raster, opened and cut (`geovlm.pipeline.run_scenes.one_scene`).
    run
        The output, progress and overwrite (batches default to `TILE_BATCH` chips).
    save_chips
        A folder to also write each chip into as a GeoTIFF.

    Returns
    -------
    RunSummary
        Counts and timing.
    """

    def save(batch: list[Chip]) -> None:
        if save_chips is not None:
            for chip in batch:
                write_chip_geotiff(chip, save_chips)

    def records(batch: list[Chip], _: None) -> ChipRecords:
        return ChipRecords([chip_record(chip) for chip in batch])

    task = ChipTask(
        command="tile",
        parameters={"save_chips": str(save_chips) if save_chips else None},
        layer="chips",
        fields=CHIP_FIELDS,
        style_qml=outline_style(),
        setup=lambda: ChipSteps(prepare=save, process=records),
        batch_size=TILE_BATCH,
    )
    return run_over_chips(scenes, task, run)
