"""A training set from a corrected classification map: the chips an analyst kept, as labelled.

The analyst ran ``geovlm classify``, fixed wrong labels in QGIS's attribute table and deleted
chips they do not trust. `build_from_map` trains on exactly the chips left in layer ``chips``,
each with its label as it stands, and re-reads their pixels from the scene with the classify
run's tiling (recorded in the ``runs`` table), so each chip trains as classify saw it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError
from shapely.geometry import Polygon

from geovlm.datasets.disaster import is_unlabelled, read_label, verbalizer_record
from geovlm.datasets.format import DatasetWriter, TrainingSet, read_dataset
from geovlm.datasets.scene_chips import ChipBlocks, write_scene_chips
from geovlm.datasets.splits import SplitRule
from geovlm.errors import InputError
from geovlm.events.progress import ProgressMode
from geovlm.labels.prompts import DisasterLabel, Language
from geovlm.labels.verbalizer import Verbalizer
from geovlm.scenes.tiling import SceneTiler, TilingOptions

__all__ = ["ClassifyRun", "build_from_map", "read_classify_run"]

logger = logging.getLogger(__name__)

_LAYER = "chips"


def _refuse(path: Path, problem: str) -> InputError:
    return InputError(f"{path} {problem}: give a GeoPackage written by `geovlm classify`.")


@dataclass(frozen=True, slots=True)
class ClassifyRun:
    """What a classify GeoPackage records about its run: the scene, the tiling, the model.

    Attributes
    ----------
    scene
        The scene path as classify resolved it.
    tiling
        The chip grid and reads classify used.
    parameters
        Every recorded parameter (model, language, answers, ...).
    """

    scene: str
    tiling: TilingOptions
    parameters: Mapping[str, Any]


def read_classify_run(gpkg: str | os.PathLike[str]) -> ClassifyRun:
    """Read the classify run recorded in a GeoPackage's ``runs`` table.

    Parameters
    ----------
    gpkg
        The output of ``geovlm classify``.

    Returns
    -------
    ClassifyRun

    Raises
    ------
    InputError
        The file is missing, not a GeoPackage, or holds no classify run of layer ``chips``.
    """
    path = Path(gpkg)
    if not path.is_file():
        raise InputError(f"{path} does not exist; check the path.")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT parameters FROM runs WHERE command = 'classify' AND layer = ?"
                " ORDER BY id DESC", (_LAYER,)
            ).fetchall()
    except sqlite3.DatabaseError as exc:
        raise _refuse(path, f"has no readable runs table ({exc})") from None
    if not rows:
        raise _refuse(path, "records no classify run")
    parameters = json.loads(rows[0][0])
    tiling = dict(parameters["tiling"])
    tiling["bands"] = tuple(tiling["bands"]) if tiling.get("bands") else None
    return ClassifyRun(str(parameters["scene"]), TilingOptions(**tiling), parameters)


def _read_chips(path: Path) -> tuple[dict[str, Any], dict[str, Polygon]]:
    """Each chip's label value and footprint, as the layer holds them now."""
    try:
        frame = pyogrio.read_dataframe(path, layer=_LAYER, columns=["chip_id", "label"])
    except (DataSourceError, DataLayerError) as exc:
        raise _refuse(path, f"has no readable layer {_LAYER} ({exc})") from None
    if "label" not in frame.columns:
        raise _refuse(path, f"has no label field in layer {_LAYER}")
    if frame["chip_id"].isna().any():
        raise InputError(
            f"{path} has features without a chip_id in layer {_LAYER}: delete the features drawn"
            " by hand; only classify's chips can be re-read from the scene."
        )
    values = dict(zip(frame["chip_id"], frame["label"], strict=True))
    outlines = dict(zip(frame["chip_id"], frame.geometry, strict=True))
    return values, outlines


def _labels(values: dict[str, Any], verbalizer: Verbalizer, path: Path) -> dict[str, DisasterLabel]:
    labels: dict[str, DisasterLabel] = {}
    unlabelled = 0
    for chip_id, value in sorted(values.items()):
        if is_unlabelled(value):
            unlabelled += 1
            continue
        label = read_label(value, verbalizer)
        if label is None:
            raise InputError(
                f"chip {chip_id} of {path} has label {value!r}, which names no disaster type:"
                f" use one of {', '.join(DisasterLabel)}, or empty it to leave the chip out."
            )
        labels[chip_id] = label
    if unlabelled:
        logger.warning("%d of %d chips of %s have no label (empty or 'uncertain') and are left"
                       " out", unlabelled, len(values), path)
    return labels


def build_from_map(
    classified_gpkg: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    scene: str | os.PathLike[str] | None = None,
    verbalizer: Verbalizer,
    languages: tuple[Language, ...] = tuple(Language),
    split_rule: SplitRule,
    block: int = 4,
    event: str | None = None,
    overwrite: bool = False,
    progress: ProgressMode = ProgressMode.AUTO,
) -> TrainingSet:
    """Build a training set from the chips left in a (corrected) classify GeoPackage.

    Parameters
    ----------
    classified_gpkg
        ``geovlm classify``'s output, labels edited and chips deleted as the analyst saw fit.
    out
        The dataset folder to write.
    scene
        The scene the chips were cut from; default: the path classify recorded.
    verbalizer
        The answer forms taught (the preset's ``answers``).
    languages
        Question languages; one sample per chip and language.
    split_rule
        How blocks of chips (or events) are divided between train and test.
    block
        Chips per side of a split unit (see `geovlm.datasets.scene_chips`).
    event
        The event name of the scene's chips; default: the scene's file stem.
    overwrite
        Replace an existing dataset folder.
    progress
        How progress is reported.

    Returns
    -------
    TrainingSet
        The written set, read back. Its manifest's parameters hold ``chip_size`` and ``gsd``
        of the classify run, for the preset of a model trained on it.

    Raises
    ------
    InputError
        The GeoPackage is no classify output, the scene is missing or another one, or a chip's
        label names no disaster type (the message names the chip).
    OutputError
        `out` exists and `overwrite` is False.
    """
    path = Path(classified_gpkg)
    run = read_classify_run(path)
    scene_path = str(scene) if scene is not None else run.scene
    if scene is None and not Path(scene_path).exists():
        raise InputError(
            f"the scene {path} was classified from, {scene_path}, is missing: pass --scene with"
            " its new path."
        )
    values, outlines = _read_chips(path)
    labels = _labels(values, verbalizer, path)
    if not labels:
        raise InputError(f"{path} has no labelled chip left: label some chips to train on.")
    name = Path(scene_path).stem
    blocks = ChipBlocks(name, block, event or name)
    blocks.check_split(split_rule)
    parameters = {
        "classified": str(path.resolve()),
        "scene": scene_path,
        "chip_size": run.tiling.size,
        "gsd": run.tiling.gsd,
        "tiling": run.tiling.as_dict(),
        # A run on a server records the served model instead of the preset's weights.
        "classify_model": run.parameters.get("model", run.parameters.get("served_model")),
        "classify_adapter": run.parameters.get("adapter"),
        "block": block,
        "event": blocks.event,
        "chips": len(labels),
        "unlabelled_chips": len(values) - len(labels),
        "answers": verbalizer_record(verbalizer, languages),
    }
    writer = DatasetWriter(Path(out), "map", split_rule, parameters, overwrite=overwrite)
    with SceneTiler(scene_path, run.tiling) as tiler, writer:
        write_scene_chips(writer, tiler, labels, blocks=blocks, languages=languages,
                          verbalizer=verbalizer, progress=progress, expected=outlines)
    return read_dataset(out)
