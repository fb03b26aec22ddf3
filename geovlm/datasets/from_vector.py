"""A training set from any polygon layer with a label field over a scene.

The scene is cut into chips exactly as ``classify`` cuts it (the same `TilingOptions`); a chip
takes the label whose polygons cover the largest share of it, if that share reaches
``min_cover``, and chips covered less are left out. The layer may be in any CRS GDAL reads; it is
reprojected to the scene's. Polygons of one label count together (two touching "flood" polygons
covering 30 % each cover 60 %).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely

from geovlm.datasets.disaster import is_unlabelled, read_label, verbalizer_record
from geovlm.datasets.format import DatasetWriter, TrainingSet, read_dataset
from geovlm.datasets.scene_chips import ChipBlocks, write_scene_chips
from geovlm.datasets.splits import SplitRule
from geovlm.errors import InputError, ParameterError
from geovlm.events.progress import ProgressMode
from geovlm.labels.prompts import DisasterLabel, Language
from geovlm.labels.verbalizer import Verbalizer
from geovlm.scenes.tiling import SceneTiler, TilingOptions, cell_footprints
from geovlm.sources.footprints import check_vector

__all__ = ["build_from_vector", "check_label_field"]

logger = logging.getLogger(__name__)


def check_label_field(labels_path: str | os.PathLike[str], field: str,
                      layer: str | None = None) -> str:
    """Check that a vector file opens and has the label field, before any work.

    Parameters
    ----------
    labels_path
        Any vector dataset GDAL reads (GeoPackage, Shapefile, GeoJSON, ...).
    field
        The label field.
    layer
        The layer to read; default: the first polygon layer (`check_vector`).

    Returns
    -------
    str
        The layer's name.

    Raises
    ------
    InputError
        As `geovlm.sources.footprints.check_vector`: missing, unreadable, no such layer, no CRS.
    ParameterError
        The layer lacks the field; the message lists its fields.
    """
    layer = check_vector(labels_path, layer)
    path = Path(labels_path)
    info = pyogrio.read_info(path, layer=layer)
    fields = [str(name) for name in info["fields"]]
    if field not in fields:
        raise ParameterError(
            f"--field {field} is not a field of {path} ({info['layer_name']}); its fields are:"
            f" {', '.join(fields) or 'none'}."
        )
    return layer


def _label_shapes(
    labels_path: Path, field: str, layer: str | None, tiler: SceneTiler, verbalizer: Verbalizer
) -> dict[DisasterLabel, Any]:
    """Each label's polygons, merged, in the scene's CRS."""
    # check_vector refused a layer without a CRS unless it is empty, which ends here.
    frame = pyogrio.read_dataframe(labels_path, layer=layer, columns=[field])
    polygonal = frame.geometry.notna() & frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"])
    if not polygonal.any():
        raise InputError(f"{labels_path} holds no polygons: give a polygon layer.")
    frame = frame[polygonal].to_crs(tiler.info.crs)
    values = [value for value in frame[field] if not is_unlabelled(value)]
    names = {str(value).strip(): read_label(value, verbalizer) for value in values}
    if bad := sorted(text for text, label in names.items() if label is None):
        raise ParameterError(
            f"--field {field} of {labels_path} has values that name no disaster type"
            f" ({', '.join(map(repr, bad[:10]))}{', ...' if len(bad) > 10 else ''}): use"
            f" {', '.join(DisasterLabel)} or the preset's answer forms."
        )
    shapes: dict[DisasterLabel, Any] = {}
    for value, geometry in zip(frame[field], frame.geometry, strict=True):
        if not is_unlabelled(value):
            label = names[str(value).strip()]
            assert label is not None
            shapes.setdefault(label, []).append(shapely.make_valid(geometry))
    return {label: shapely.union_all(parts) for label, parts in shapes.items()}


def _chip_labels(
    tiler: SceneTiler, shapes: dict[DisasterLabel, Any], min_cover: float
) -> dict[str, DisasterLabel]:
    """Each chip whose best-covering label reaches `min_cover`, with that label."""
    outlines = cell_footprints(tiler)
    ids = list(outlines)
    if not shapes or not ids:
        return {}
    cells = np.array([outlines[chip_id] for chip_id in ids], dtype=object)
    labels = list(shapes)
    union = np.array([shapes[label] for label in labels], dtype=object)
    cover = shapely.area(shapely.intersection(cells[:, None], union[None, :]))
    cover = cover / shapely.area(cells)[:, None]
    best = cover.argmax(axis=1)
    return {
        chip_id: labels[best[i]]
        for i, chip_id in enumerate(ids)
        if cover[i, best[i]] >= min_cover
    }


def build_from_vector(
    scene: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    field: str,
    out: str | os.PathLike[str],
    *,
    verbalizer: Verbalizer,
    tiling: TilingOptions,
    min_cover: float = 0.5,
    layer: str | None = None,
    languages: tuple[Language, ...] = tuple(Language),
    split_rule: SplitRule,
    block: int = 4,
    event: str | None = None,
    overwrite: bool = False,
    progress: ProgressMode = ProgressMode.AUTO,
) -> TrainingSet:
    """Build a training set from the chips of a scene that a labelled polygon layer covers.

    Parameters
    ----------
    scene
        The raster; chips are cut as ``classify`` cuts them with `tiling`.
    labels_path
        Any polygon layer GDAL reads, in any CRS.
    field
        The field holding each polygon's disaster type (a label name or any answer form of
        `verbalizer`); empty values and ``uncertain`` leave the polygon out.
    out
        The dataset folder to write.
    verbalizer
        The answer forms taught (the preset's ``answers``).
    tiling
        Chip size, overlap, bands, nodata, ``min_valid`` and ``gsd``, as for classify.
    min_cover
        Least share of a chip one label's polygons must cover for the chip to be used.
    layer
        The layer of `labels_path`; default: the first.
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
        The written set, read back; its manifest's parameters hold ``chip_size`` and ``gsd``.

    Raises
    ------
    InputError
        The scene or layer is missing or unreadable, the layer has no CRS or no polygons, or
        no chip is covered enough.
    ParameterError
        The field is missing (the message lists the fields), a value names no disaster type
        (the message lists them), or `min_cover` is outside (0, 1].
    OutputError
        `out` exists and `overwrite` is False.
    """
    if not 0 < min_cover <= 1:
        raise ParameterError(f"--min-cover {min_cover} must lie in (0, 1], e.g. 0.5.")
    labels_file = Path(labels_path)
    layer = check_label_field(labels_file, field, layer)
    name = Path(scene).stem
    blocks = ChipBlocks(name, block, event or name)
    blocks.check_split(split_rule)
    parameters = {
        "scene": str(Path(scene).resolve()) if Path(scene).exists() else str(scene),
        "labels": str(labels_file.resolve()),
        "field": field,
        "layer": layer,
        "min_cover": min_cover,
        "chip_size": tiling.size,
        "gsd": tiling.gsd,
        "tiling": tiling.as_dict(),
        "block": block,
        "event": blocks.event,
        "answers": verbalizer_record(verbalizer, languages),
    }
    writer = DatasetWriter(Path(out), "vector", split_rule, parameters, overwrite=overwrite)
    with SceneTiler(os.fspath(scene), tiling) as tiler:
        shapes = _label_shapes(labels_file, field, layer, tiler, verbalizer)
        labels = _chip_labels(tiler, shapes, min_cover)
        if not labels:
            raise InputError(
                f"no chip of {scene} is covered {min_cover:.0%} by labelled polygons of"
                f" {labels_file}: check that they overlap, or lower --min-cover or --size."
            )
        logger.info("%d of %d chips covered by labelled polygons", len(labels), len(tiler))
        with writer:
            write_scene_chips(writer, tiler, labels, blocks=blocks, languages=languages,
                              verbalizer=verbalizer, progress=progress)
    return read_dataset(out)
