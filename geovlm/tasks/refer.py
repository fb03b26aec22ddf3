"""The ``refer`` task: a referring expression per object of a scene, tied to its polygon.

Objects come from footprints (any GDAL vector layer, an xBD label) or from a vision-language
model asked to locate buildings (``detect``). Each chip's objects get rule-based expressions
(`geovlm.expressions`); an optional text model rewrites them, and a rewrite is kept only where
it keeps every fact of the rule text (`geovlm.rewriting`). An optional vision
model captions each chip. Objects go to layer ``objects``, chips to layer ``chips`` of the same
run; a re-run resumes chip by chip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely

from geovlm.backends.base import Backend
from geovlm.enums import CheckedEnum
from geovlm.expression_text import render
from geovlm.expressions import Frame, Phrase, Target, refer_chip
from geovlm.gpkg import FieldType, GeoPackageWriter, LayerSpec
from geovlm.grounding import grounding_prompt, parse_boxes
from geovlm.pipeline import batched, chip_run_record
from geovlm.progress import ProgressMode, ProgressReporter
from geovlm.prompts import Language
from geovlm.rewriting import rewrite_expressions
from geovlm.sources.footprints import (
    SceneObject,
    SceneObjects,
    read_vector_objects,
    read_xbd_objects,
)
from geovlm.styles import DAMAGE_COLOURS, categorized_style, outline_style, with_labels
from geovlm.tasks.tile import CHIP_FIELDS, chip_record
from geovlm.tiling import Chip, SceneTiler, TilingOptions
from geovlm.versions import ML_PACKAGES, library_versions

__all__ = [
    "CHIPS_LAYER",
    "OBJECT_FIELDS",
    "ObjectSource",
    "ReferModels",
    "ReferSettings",
    "ReferSummary",
    "refer_scene",
]

logger = logging.getLogger(__name__)

#: Fields of layer ``objects`` (flags as 0/1 integers).
OBJECT_FIELDS: dict[str, FieldType] = {
    "object_id": FieldType.STRING,
    "chip_id": FieldType.STRING,
    "cut": FieldType.INTEGER,
    "damage": FieldType.STRING,
    "expression_rule": FieldType.STRING,
    "expression": FieldType.STRING,
    "ambiguous": FieldType.INTEGER,
    "rewrite_rejected": FieldType.INTEGER,
    "language": FieldType.STRING,
    "run_id": FieldType.STRING,
}
#: Layer ``chips`` of a refer run: every chip processed, its object count and caption.
CHIPS_LAYER = LayerSpec(
    "chips",
    {**CHIP_FIELDS, "objects": FieldType.INTEGER, "caption": FieldType.STRING,
     "run_id": FieldType.STRING},
    outline_style(),
)
_CAPTION = {
    Language.EN: "Describe this aerial image in one sentence.",
    Language.JA: "この航空画像を一文で説明してください。",
    Language.ZH: "用一句话描述这张航拍图像。",
}


class ObjectSource(CheckedEnum):
    """Where the objects come from: a vector layer, an xBD label, or the vision model."""

    FOOTPRINTS = "footprints"
    XBD = "xbd"
    DETECT = "detect"


@dataclass(frozen=True, slots=True)
class ReferSettings:
    """What objects are described, how, and in which language."""

    source: ObjectSource
    #: The vector dataset (footprints) or label file (xbd); None for detect.
    path: str | None = None
    language: Language = Language.EN
    #: The layer of a vector dataset; None for its first polygon layer.
    layer: str | None = None
    #: The most new tokens of a rewrite (each batch gets `geovlm.rewriting.token_budget`).
    rewrite_tokens: int = 48
    caption_tokens: int = 48
    detect_tokens: int = 512
    #: Rule texts per call of the rewrite model (not recorded: it changes no result).
    rewrite_batch_size: int = 64

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values, for the run record."""
        path = None if self.path is None else str(Path(self.path).resolve())
        return {"source": self.source.value, "objects_path": path, "objects_layer": self.layer,
                "language": self.language.value, "rewrite_tokens": self.rewrite_tokens,
                "caption_tokens": self.caption_tokens, "detect_tokens": self.detect_tokens}


@dataclass(frozen=True, slots=True)
class ReferModels:
    """The loaded models of a run; either may be absent."""

    rewrite: Backend | None = None
    vision: Backend | None = None


@dataclass(frozen=True, slots=True)
class ReferSummary:
    """What a refer run did, for the CLI's closing line and the plugin's JSON."""

    output: str
    run_id: str
    chips: int
    objects: int
    already_done: int
    unambiguous: int
    rewrites_kept: int
    rewrites_rejected: int
    detect_skipped: int
    skipped_invalid: int
    #: Objects left out with their chips under ``min_valid``.
    objects_skipped: int
    seconds: float
    #: The source's counts (read, repaired, not polygonal, outside).
    source: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values."""
        return {
            "output": self.output, "run_id": self.run_id, "chips": self.chips,
            "written": self.objects, "already_done": self.already_done,
            "unambiguous": self.unambiguous, "rewrites_kept": self.rewrites_kept,
            "rewrites_rejected": self.rewrites_rejected, "detect_skipped": self.detect_skipped,
            "skipped_invalid": self.skipped_invalid, "objects_skipped": self.objects_skipped,
            "seconds": round(self.seconds, 3),
            "source": self.source,
        }


@dataclass
class _Tally:
    objects: int = 0
    unambiguous: int = 0
    kept: int = 0
    rejected: int = 0
    detect_skipped: int = 0
    chips: set[str] = field(default_factory=set)


def _detected(backend: Backend, chips: list[Chip], settings: ReferSettings,
              tally: _Tally) -> dict[str, list[SceneObject]]:
    """Each chip's buildings as the vision model locates them, as objects of that chip."""
    prompt = grounding_prompt(settings.language)
    answers = backend.generate([c.image for c in chips], [prompt] * len(chips),
                               settings.detect_tokens)
    found: dict[str, list[SceneObject]] = {}
    for chip, answer in zip(chips, answers, strict=True):
        grounding = parse_boxes(answer)
        tally.detect_skipped += grounding.skipped
        size = chip.image.size[0]
        found[chip.chip_id] = [
            SceneObject(f"{chip.chip_id}_{n}", box.polygon(chip.transform, size), None,
                        chip.chip_id, False)
            for n, box in enumerate(grounding.boxes)
        ]
    return found


def _rule_records(
    chip: Chip, objects: Sequence[SceneObject], language: Language
) -> list[tuple[dict[str, Any], Phrase]]:
    centroids = shapely.centroid([o.polygon for o in objects])
    targets = [Target(o.object_id, c.x, c.y, o.polygon.area, o.damage)
               for o, c in zip(objects, centroids, strict=True)]
    references = refer_chip(targets, Frame(*chip.footprint.bounds))
    records = []
    for item, reference in zip(objects, references, strict=True):
        text = render(reference.phrase, language)
        records.append(({
            "object_id": item.object_id, "chip_id": chip.chip_id, "cut": int(item.cut),
            "damage": None if item.damage is None else item.damage.value,
            "expression_rule": text, "expression": text, "ambiguous": int(reference.ambiguous),
            "rewrite_rejected": None, "language": language.value,
        }, reference.phrase))
    return records


def _rewrite(backend: Backend, records: list[tuple[dict[str, Any], Phrase]],
             settings: ReferSettings, tally: _Tally) -> None:
    """Replace each rule text by the model's rewrite where the rewrite keeps every fact."""
    rewrites = rewrite_expressions(
        backend, [r["expression_rule"] for r, _ in records], [p for _, p in records],
        settings.language, batch_size=settings.rewrite_batch_size,
        max_new_tokens=settings.rewrite_tokens,
    )
    for (record, _), rewrite in zip(records, rewrites, strict=True):
        record["expression"] = rewrite or record["expression_rule"]
        record["rewrite_rejected"] = int(rewrite is None)
        tally.kept += rewrite is not None
        tally.rejected += rewrite is None


def _read_objects(tiler: SceneTiler, settings: ReferSettings) -> SceneObjects:
    if settings.source is ObjectSource.DETECT or settings.path is None:
        return SceneObjects((), "detect", 0, 0, 0, 0)
    if settings.source is ObjectSource.XBD:
        return read_xbd_objects(settings.path, tiler)
    return read_vector_objects(settings.path, tiler, settings.layer)


def refer_scene(
    scene: str | Path,
    output: str | Path,
    *,
    settings: ReferSettings,
    tiling: TilingOptions,
    load_models: Callable[[], ReferModels],
    run_parameters: dict[str, Any],
    batch_size: int = 8,
    progress: ProgressMode = ProgressMode.AUTO,
    overwrite: bool = False,
) -> ReferSummary:
    """Write a referring expression per object of a scene to layer ``objects`` of a GeoPackage.

    The scene, the objects' source and the output are checked before `load_models` runs.

    Parameters
    ----------
    scene
        The raster; chips are cut as ``classify`` cuts them.
    output
        The ``.gpkg`` to write or resume.
    settings
        The source of the objects and the language.
    tiling
        How the scene is cut (objects belong to the chip holding their centroid).
    load_models
        Loads the rewrite and vision models asked for; called once the checks passed.
    run_parameters
        Models and other choices recorded with the run.
    batch_size
        Chips per model call.
    progress
        How progress is reported.
    overwrite
        Start afresh, replacing an existing output instead of resuming it.

    Returns
    -------
    ReferSummary
        Counts and timing.

    Raises
    ------
    InputError
        The scene or the objects' source is missing or unreadable, or no object lies on it.
    OutputError
        The output is refused (see `GeoPackageWriter`).
    """
    start = time.perf_counter()
    tally = _Tally()
    with SceneTiler(scene, tiling) as tiler:
        source = _read_objects(tiler, settings)
        run = chip_run_record("refer", scene, tiler, {**settings.as_dict(), **run_parameters},
                              library_versions(ML_PACKAGES))
        style = with_labels(categorized_style("damage", {**DAMAGE_COLOURS, "": (120, 120, 120)}),
                            "expression")
        writer = GeoPackageWriter(
            output, layer="objects", fields=OBJECT_FIELDS, crs=tiler.info.crs, run=run,
            style_qml=style, overwrite=overwrite, id_field="object_id",
            extra_layers=[CHIPS_LAYER],
        )
        with writer:
            models = load_models()
            writer.begin()
            by_chip = source.by_chip()
            every_chip = models.vision is not None or settings.source is ObjectSource.DETECT
            wanted = {cell.chip_id for cell in tiler.cells if every_chip or cell.chip_id in by_chip}
            done = writer.done_ids_of(CHIPS_LAYER.name) & wanted
            skip = done | {cell.chip_id for cell in tiler.cells} - wanted
            already = len(writer.done_ids)
            with (
                ProgressReporter(progress, len(wanted), "chips") as reporter,
                closing(tiler.chips(skip=skip)) as chips,
            ):
                reporter.resume(len(done))
                skipped_before = 0
                for batch in batched(chips, batch_size):
                    _process(batch, by_chip, models, settings, writer, tally)
                    newly_skipped, skipped_before = (tiler.skipped_invalid - skipped_before,
                                                     tiler.skipped_invalid)
                    reporter.advance(len(batch) + newly_skipped)
                writer.count_skipped(tiler.skipped_invalid)
                left_out = sum(len(by_chip.get(chip, ())) for chip in wanted - done - tally.chips)
                if left_out:
                    logger.warning("%d objects lie on chips skipped under --min-valid %g",
                                   left_out, tiling.min_valid)
                summary = ReferSummary(
                    output=str(output), run_id=writer.run_id, chips=len(wanted),
                    objects=tally.objects, already_done=already, unambiguous=tally.unambiguous,
                    rewrites_kept=tally.kept, rewrites_rejected=tally.rejected,
                    detect_skipped=tally.detect_skipped, skipped_invalid=tiler.skipped_invalid,
                    objects_skipped=left_out,
                    seconds=time.perf_counter() - start, source=source.counts(),
                )
                reporter.finish(**summary.as_dict())
    return summary


def _process(
    batch: list[Chip],
    by_chip: dict[str, list[SceneObject]],
    models: ReferModels,
    settings: ReferSettings,
    writer: GeoPackageWriter,
    tally: _Tally,
) -> None:
    """Describe the objects of a batch of chips and write them, then the chips."""
    tally.chips.update(chip.chip_id for chip in batch)
    if settings.source is ObjectSource.DETECT and models.vision is not None:
        by_chip = _detected(models.vision, batch, settings, tally)
    records: list[tuple[dict[str, Any], Phrase]] = []
    geometries = []
    for chip in batch:
        objects = by_chip.get(chip.chip_id, [])
        if not objects:
            continue
        # Expressions single out an object among all of its chip's, even those a killed run
        # already wrote; only the rest are written.
        for item, record in zip(objects, _rule_records(chip, objects, settings.language),
                                strict=True):
            if item.object_id not in writer.done_ids:
                records.append(record)
                geometries.append(item.polygon)
    if models.rewrite is not None:
        _rewrite(models.rewrite, records, settings, tally)
    rows = [{**record, "run_id": writer.run_id} for record, _ in records]
    tally.objects += len(rows)
    tally.unambiguous += sum(not row["ambiguous"] for row in rows)
    writer.write(rows, geometries)
    captions: list[str | None] = [None] * len(batch)
    if models.vision is not None:
        prompt = _CAPTION[settings.language]
        captions = list(models.vision.generate([c.image for c in batch], [prompt] * len(batch),
                                               settings.caption_tokens))
    chip_rows = [
        {**chip_record(chip), "objects": len(by_chip.get(chip.chip_id, [])),
         "caption": caption, "run_id": writer.run_id}
        for chip, caption in zip(batch, captions, strict=True)
    ]
    writer.write(chip_rows, [chip.footprint for chip in batch], layer=CHIPS_LAYER.name)
