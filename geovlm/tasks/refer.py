"""The ``refer`` task: a referring expression per object of a scene, tied to its polygon.

Objects come from footprints (any GDAL vector layer, an xBD label) or from a vision-language
model asked to locate buildings (``detect``). Each object gets a rule-based expression unique
among its chip's objects (`geovlm.refer.rules`, context ``chip``) or, with every object known
before the chips are read, among the whole scene's (`geovlm.refer.scene`, context ``scene``,
computed once when the objects are read); an optional text model rewrites them, and a rewrite
is kept only where it keeps every fact of the rule text (`geovlm.refer.rewriting`). An
optional vision model captions each chip. Runs in the chip loop every per-chip command shares
(`geovlm.pipeline.driver`): objects go to layer ``objects``, then their chips to layer
``chips`` of the same run, and a re-run resumes chip by chip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely

from geovlm.backends.base import Backend, ModelRun
from geovlm.enums import CheckedEnum
from geovlm.errors import ParameterError
from geovlm.labels.prompts import Language
from geovlm.output.fields import FieldType, LayerSpec
from geovlm.output.grouped_writes import LayerRows
from geovlm.output.styles import DAMAGE_COLOURS, categorized_style, outline_style, with_labels
from geovlm.output.versions import ML_PACKAGES, library_versions
from geovlm.pipeline.driver import RunSummary, run_over_chips
from geovlm.pipeline.plan import ChipTask, RunOptions
from geovlm.pipeline.run_scenes import RunScenes
from geovlm.pipeline.work_items import ChipRecords, ChipSteps, ItemSource
from geovlm.refer.grounding import grounding_prompt, parse_boxes
from geovlm.refer.phrases import Frame, Phrase, Reference, Target
from geovlm.refer.rewriting import rewrite_expressions
from geovlm.refer.rules import refer_chip
from geovlm.refer.scene import refer_scene_objects
from geovlm.refer.text import render
from geovlm.scenes.tiling import Chip, SceneTiler
from geovlm.sources.footprints import (
    SceneObject,
    SceneObjects,
    read_vector_objects,
    read_xbd_objects,
)
from geovlm.tasks.tile import CHIP_FIELDS, chip_record

__all__ = [
    "CHIPS_LAYER",
    "OBJECT_FIELDS",
    "SCENE_NEEDS_OBJECTS",
    "ObjectSource",
    "ReferContext",
    "ReferModels",
    "ReferSettings",
    "refer_scene",
    "scene_frame",
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
    "context": FieldType.STRING,
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


#: Why --context scene refuses --detect.
SCENE_NEEDS_OBJECTS = ("--context scene needs every object before the chips are read, so it"
                       " takes --footprints or --xbd-labels; with --detect use --context chip.")


class ObjectSource(CheckedEnum):
    """Where the objects come from: a vector layer, an xBD label, or the vision model."""

    FOOTPRINTS = "footprints"
    XBD = "xbd"
    DETECT = "detect"


class ReferContext(CheckedEnum):
    """Among which objects an expression is unique: its chip's, or the whole scene's."""

    CHIP = "chip"
    SCENE = "scene"


@dataclass(frozen=True, slots=True)
class ReferSettings:
    """What objects are described, how, and in which language.

    Raises
    ------
    ParameterError
        The scene context with objects the vision model detects chip by chip.
    """

    source: ObjectSource
    #: The vector dataset (footprints) or label file (xbd); None for detect.
    path: str | None = None
    language: Language = Language.EN
    #: The layer of a vector dataset; None for its first polygon layer.
    layer: str | None = None
    #: The most new tokens of a rewrite (each batch gets `geovlm.refer.rewriting.token_budget`).
    rewrite_tokens: int = 48
    caption_tokens: int = 48
    detect_tokens: int = 512
    #: Rule texts per call of the rewrite model (not recorded: it changes no result).
    rewrite_batch_size: int = 64
    #: Among which objects each expression is unique.
    context: ReferContext = ReferContext.CHIP

    def __post_init__(self) -> None:
        if self.context is ReferContext.SCENE and self.source is ObjectSource.DETECT:
            raise ParameterError(SCENE_NEEDS_OBJECTS)

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values, for the run record."""
        path = None if self.path is None else str(Path(self.path).resolve())
        return {"source": self.source.value, "objects_path": path, "objects_layer": self.layer,
                "language": self.language.value, "rewrite_tokens": self.rewrite_tokens,
                "caption_tokens": self.caption_tokens, "detect_tokens": self.detect_tokens,
                "context": self.context.value}


@dataclass(frozen=True, slots=True)
class ReferModels:
    """The loaded models of a run; either may be absent."""

    rewrite: Backend | None = None
    vision: Backend | None = None


@dataclass
class _Tally:
    unambiguous: int = 0
    kept: int = 0
    rejected: int = 0
    detect_skipped: int = 0


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A batch made ready one batch ahead: rule records (known objects) or encoded images."""

    rules: dict[str, list[tuple[dict[str, Any], Phrase]]]
    detect: Any = None
    caption: Any = None


def _detected(backend: Backend, chips: list[Chip], inputs: Any, settings: ReferSettings,
              tally: _Tally) -> dict[str, list[SceneObject]]:
    """Each chip's buildings as the vision model locates them, as objects of that chip."""
    answers = backend.generate_encoded(inputs, settings.detect_tokens)
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


def _targets(objects: Sequence[SceneObject]) -> list[Target]:
    centroids = shapely.centroid([o.polygon for o in objects])
    return [Target(o.object_id, c.x, c.y, o.polygon.area, o.damage)
            for o, c in zip(objects, centroids, strict=True)]


def scene_frame(tiler: SceneTiler) -> Frame:
    """A scene's extent in map coordinates (its pixels' outline's bounds): the scene context's.

    Parameters
    ----------
    tiler
        The opened scene.

    Returns
    -------
    Frame
    """
    info = tiler.info
    corners = ((0, 0), (info.width, 0), (info.width, info.height), (0, info.height))
    return Frame.around(info.transform @ corner for corner in corners)


def _rule_records(
    chip: Chip, objects: Sequence[SceneObject], language: Language,
    scene: dict[str, Reference] | None = None,
) -> list[tuple[dict[str, Any], Phrase]]:
    """Each object's record and phrase: unique in its chip, or looked up in `scene`'s."""
    if scene is None:
        references = refer_chip(_targets(objects), Frame(*chip.footprint.bounds))
        context = f"chip {chip.chip_id}"
    else:
        references = [scene[item.object_id] for item in objects]
        context = ReferContext.SCENE.value
    records = []
    for item, reference in zip(objects, references, strict=True):
        text = render(reference.phrase, language)
        records.append(({
            "object_id": item.object_id, "chip_id": chip.chip_id, "cut": int(item.cut),
            "damage": None if item.damage is None else item.damage.value,
            "expression_rule": text, "expression": text, "ambiguous": int(reference.ambiguous),
            "context": context, "rewrite_rejected": None, "language": language.value,
        }, reference.phrase))
    return records


def _rewrite(backend: Backend, records: list[tuple[dict[str, Any], Phrase]],
             settings: ReferSettings) -> None:
    """Replace each rule text by the model's rewrite where the rewrite keeps every fact."""
    rewrites = rewrite_expressions(
        backend, [r["expression_rule"] for r, _ in records], [p for _, p in records],
        settings.language, batch_size=settings.rewrite_batch_size,
        max_new_tokens=settings.rewrite_tokens,
    )
    for (record, _), rewrite in zip(records, rewrites, strict=True):
        record["expression"] = rewrite or record["expression_rule"]
        record["rewrite_rejected"] = int(rewrite is None)


class _ReferRun:
    """Refer's steps in the shared chip loop (`geovlm.pipeline.driver.run_over_chips`).

    `check` reads the objects once the scene is open (and with the scene context describes them
    all, so a chip's objects are looked up), `setup` loads the models, `prepare`
    builds the rule records of known objects (or encodes the images for the vision model) one
    batch ahead, and `process` runs the models and gives each chip's objects and its record.
    """

    def __init__(self, settings: ReferSettings, load_models: Callable[[], ReferModels]) -> None:
        self.settings = settings
        self._load_models = load_models
        self._min_valid = 0.0
        self._source = SceneObjects((), "detect", 0, 0, 0, 0)
        self._by_chip: dict[str, list[SceneObject]] = {}
        #: With the scene context: every object's expression, by object id.
        self._scene: dict[str, Reference] | None = None
        self._models = ReferModels()
        self._tally = _Tally()

    def check(self, tiler: ItemSource) -> None:
        if not isinstance(tiler, SceneTiler):
            raise TypeError("refer's objects belong to the chips of a tiled scene")
        self._min_valid = tiler.options.min_valid
        path, source = self.settings.path, self.settings.source
        if source is ObjectSource.XBD and path is not None:
            self._source = read_xbd_objects(path, tiler)
        elif source is ObjectSource.FOOTPRINTS and path is not None:
            self._source = read_vector_objects(path, tiler, self.settings.layer)
        self._by_chip = self._source.by_chip()
        if self.settings.context is ReferContext.SCENE:
            start = time.perf_counter()
            objects = self._source.objects
            references = refer_scene_objects(_targets(objects), scene_frame(tiler))
            self._scene = {ref.object_id: ref for ref in references}
            logger.info("scene context: %d expressions in %.1f s", len(references),
                        time.perf_counter() - start)

    def setup(self) -> ChipSteps:
        self._models = self._load_models()
        every_chip = (self._models.vision is not None
                      or self.settings.source is ObjectSource.DETECT)
        return ChipSteps(self.prepare, self.process,
                         wanted=None if every_chip else frozenset(self._by_chip),
                         kept=self.kept, counts=self.counts)

    def prepare(self, batch: list[Chip]) -> _Prepared:
        vision, language = self._models.vision, self.settings.language
        rules = {chip.chip_id: _rule_records(chip, self._by_chip[chip.chip_id], language,
                                             self._scene)
                 for chip in batch if self._by_chip.get(chip.chip_id)}
        if vision is None:
            return _Prepared(rules)
        images = [chip.image for chip in batch]
        detect = (vision.encode(images, [grounding_prompt(language)] * len(batch))
                  if self.settings.source is ObjectSource.DETECT else None)
        return _Prepared(rules, detect, vision.encode(images, [_CAPTION[language]] * len(batch)))

    def process(self, batch: list[Chip], prepared: _Prepared) -> ChipRecords:
        models, settings = self._models, self.settings
        by_chip, rules = self._by_chip, prepared.rules
        if prepared.detect is not None and models.vision is not None:
            by_chip = _detected(models.vision, batch, prepared.detect, settings, self._tally)
            rules = {chip.chip_id: _rule_records(chip, by_chip[chip.chip_id], settings.language)
                     for chip in batch if by_chip[chip.chip_id]}
        # Expressions single out an object among all of its chip's, even those a killed run
        # already wrote (the pipeline leaves those out).
        records = [record for chip in batch for record in rules.get(chip.chip_id, [])]
        if models.rewrite is not None:
            _rewrite(models.rewrite, records, settings)
        captions: list[str | None] = [None] * len(batch)
        if prepared.caption is not None and models.vision is not None:
            captions = list(models.vision.generate_encoded(prepared.caption,
                                                           settings.caption_tokens))
        polygons = {item.object_id: item.polygon
                    for chip in batch for item in by_chip.get(chip.chip_id, [])}
        objects = LayerRows("objects", [record for record, _ in records],
                            [polygons[record["object_id"]] for record, _ in records])
        chips = [{**chip_record(chip), "objects": len(by_chip.get(chip.chip_id, [])),
                  "caption": caption} for chip, caption in zip(batch, captions, strict=True)]
        return ChipRecords(chips, (objects,))

    def kept(self, objects: LayerRows) -> None:
        rejected = [row["rewrite_rejected"] for row in objects.rows]
        self._tally.unambiguous += sum(not row["ambiguous"] for row in objects.rows)
        self._tally.kept += rejected.count(0)
        self._tally.rejected += rejected.count(1)

    def counts(self, done_chips: Set[str]) -> dict[str, Any]:
        left_out = sum(len(objects) for chip, objects in self._by_chip.items()
                       if chip not in done_chips)
        if left_out:
            logger.warning("%d objects lie on chips skipped under --min-valid %g", left_out,
                           self._min_valid)
        tally = self._tally
        return {"unambiguous": tally.unambiguous, "rewrites_kept": tally.kept,
                "rewrites_rejected": tally.rejected, "detect_skipped": tally.detect_skipped,
                "objects_skipped": left_out, "source": self._source.counts()}


def refer_scene(scenes: RunScenes, run: RunOptions, models: ModelRun[ReferModels],
                settings: ReferSettings) -> RunSummary:
    """Write a referring expression per object of a scene to layer ``objects`` of a GeoPackage.

    Runs in the shared chip loop (`geovlm.pipeline.driver.run_over_chips`): the scene, the
    objects' source and the output are checked before the models load, chips are layer
    ``chips`` (written after their objects, so a re-run resumes chip by chip), and without a
    vision model only chips holding objects are processed.

    Parameters
    ----------
    scenes
        The raster, opened and cut as ``classify`` cuts it (`geovlm.pipeline.run_scenes.one_scene`);
        objects belong to the chip holding their centroid.
    run
        The output, batch size (chips per model call), progress and overwrite.
    models
        Loads the rewrite and vision models asked for, once the checks passed; their record
        is kept with the run.
    settings
        The source of the objects, the context of their expressions and the language.

    Returns
    -------
    RunSummary
        Counts of chips (``total``) and objects (``written``, ``already_done``), and in
        `RunSummary.counts`: ``unambiguous``, ``rewrites_kept`` and ``rewrites_rejected``
        among the objects written, ``detect_skipped`` (boxes), ``objects_skipped`` (on
        chips under ``min_valid``) and ``source`` (the source's counts: read, repaired, not
        polygonal, outside).

    Raises
    ------
    InputError
        The scene or the objects' source is missing or unreadable, or no object lies on it.
    OutputError
        The output is refused (see `GeoPackageWriter`).
    """
    refer = _ReferRun(settings, models.load)
    style = with_labels(categorized_style("damage", {**DAMAGE_COLOURS, "": (120, 120, 120)}),
                        "expression")
    task = ChipTask(
        command="refer", parameters={**settings.as_dict(), **models.record},
        layer="objects", fields=OBJECT_FIELDS, style_qml=style, setup=refer.setup,
        id_field="object_id", chip_layer=CHIPS_LAYER, check=refer.check,
        extra_versions=library_versions(ML_PACKAGES),
    )
    return run_over_chips(scenes, task, run)
