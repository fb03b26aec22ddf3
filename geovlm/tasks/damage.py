"""The ``damage`` task: a damage grade per building footprint, with a probability per grade.

Each building is a work item of `geovlm.sources.building_crops.BuildingCrops`: its crop after
the disaster and, with a pre-disaster scene, the same ground before it. Each building is one
prompt of `geovlm.backends.grade_scoring.GradeScorer`: the two-image question with its
``(pre, post)`` crops, pre first, or the post question with the post crop alone (no pre scene,
or a pre crop under ``--min-valid``, e.g. off the pre scene: such buildings are graded from
the post crop, say so in field ``images`` and are counted as ``post_only``). Every answer form
of the four grades is scored and summed per grade, then calibrated by the preset's damage
calibration when it has one; a building whose best grade is less likely than
``min_confidence`` is ``uncertain``. Records go to layer ``buildings`` (the footprint as its
geometry, id ``object_id``) in the driver every per-item command shares, so a re-run resumes
building by building.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio

from geovlm.backends.base import Backend, ModelRun, PromptImages
from geovlm.backends.grade_scoring import GradeScorer
from geovlm.errors import ModelCapabilityError, check_share
from geovlm.labels.building_damage import GRADES, grade_answer
from geovlm.labels.calibration import Calibration
from geovlm.labels.grade_forms import DAMAGE_GRADES
from geovlm.labels.prompts import Language
from geovlm.labels.ranking import UNCERTAIN, ranked_fields
from geovlm.labels.verbalizer import Verbalizer
from geovlm.output.fields import FieldType
from geovlm.output.styles import GRADE_COLOURS, categorized_style
from geovlm.output.versions import ML_PACKAGES, library_versions
from geovlm.pipeline.driver import RunSummary, run_over_chips
from geovlm.pipeline.plan import ChipTask, RunOptions
from geovlm.pipeline.run_scenes import RunScenes
from geovlm.pipeline.work_items import ChipRecords, ChipSteps
from geovlm.sources.building_crops import BuildingCrop, BuildingCrops

__all__ = [
    "BUILDINGS_LAYER", "DAMAGE_FIELDS", "POST_ONLY", "PRE_POST", "UNCERTAIN", "DamageSettings",
    "building_images", "damage_buildings", "damage_records", "damage_task",
]

logger = logging.getLogger(__name__)

#: The layer of a damage run.
BUILDINGS_LAYER = "buildings"
#: The grade written when the best grade's probability is under ``min_confidence``.
#: Field ``images`` of a building shown with its pre and post crops, and of one shown post alone.
PRE_POST, POST_ONLY = "pre+post", "post"

#: The grades' names, in `GRADES` order.
_NAMES = tuple(grade.value for grade in GRADES)
#: Fields of layer ``buildings``.
DAMAGE_FIELDS: dict[str, FieldType] = {
    "object_id": FieldType.STRING,
    "damage": FieldType.STRING,
    "confidence": FieldType.REAL,
    "runner_up": FieldType.STRING,
    "runner_up_confidence": FieldType.REAL,
    "probs": FieldType.STRING,
    "answer": FieldType.STRING,
    "language": FieldType.STRING,
    "scene": FieldType.STRING,
    "valid_fraction": FieldType.REAL,
    "pre_valid_fraction": FieldType.REAL,
    "images": FieldType.STRING,
    "run_id": FieldType.STRING,
}



@dataclass(frozen=True, slots=True)
class DamageSettings:
    """How buildings are graded, independent of the scenes and the output.

    Attributes
    ----------
    language
        Language of the question and of the grades' answers.
    min_confidence
        Below this probability of the best grade, the building is ``uncertain``.
    verbalizer
        The grades' answer forms scored (the preset's ``damage_answers``).
    calibration
        Applied to the grade probabilities (the preset's ``damage_calibration``), or None.
    pre
        The pre-disaster scene, recorded with the run (None: post crops alone).
    """

    language: Language = Language.EN
    min_confidence: float = 0.5
    verbalizer: Verbalizer = field(default_factory=lambda: Verbalizer.default(DAMAGE_GRADES))
    calibration: Calibration | None = None
    pre: str | None = None

    def __post_init__(self) -> None:
        check_share("--min-confidence", self.min_confidence)

    @property
    def scorer(self) -> GradeScorer:
        """What every building is asked and how its answers become grade probabilities."""
        return GradeScorer(self.language, self.verbalizer, self.calibration)

    def as_dict(self) -> dict[str, Any]:
        """The settings as recorded with the run (``geovlm report`` reads ``pre``).

        Examples
        --------
        >>> facts = DamageSettings(pre="pre.tif").as_dict()
        >>> facts["images"], facts["pre"], facts["calibration"], facts["answers"]["destroyed"]
        ('pre+post', 'pre.tif', None, ['Destroyed.', 'Destroyed'])
        """
        scorer = self.scorer
        return {"prompt": scorer.prompt(with_pre=self.pre is not None),
                "language": self.language.value, "min_confidence": self.min_confidence,
                "answers": self.verbalizer.table(self.language),
                "images": PRE_POST if self.pre is not None else POST_ONLY, "pre": self.pre,
                "calibration": self.calibration.to_mapping() if self.calibration else None}


def building_images(crop: BuildingCrop) -> PromptImages:
    """What the model is shown of a building: ``(pre, post)``, or its post crop alone."""
    return crop.post if crop.pre is None else (crop.pre, crop.post)


def damage_records(crops: Sequence[BuildingCrop], probs: np.ndarray, settings: DamageSettings,
                   scene: str) -> list[dict[str, Any]]:
    """The ``buildings`` records of a batch from its grade probabilities.

    Parameters
    ----------
    crops
        The batch.
    probs
        ``(n, 4)``, `GradeScorer.probabilities`' rows, in `GRADES` order.
    settings
        The language and the confidence threshold.
    scene
        The scene's name, for field ``scene``.

    Returns
    -------
    list of dict
        One record per building, in order (``run_id`` is added by the writer).

    Examples
    --------
    >>> from PIL import Image
    >>> from shapely.geometry import box
    >>> crop = BuildingCrop("7", box(0, 0, 1, 1), (0, 0, 1, 1), Image.new("RGB", (8, 8)), 1.0)
    >>> record, = damage_records([crop], np.array([[0.1, 0.2, 0.3, 0.4]]), DamageSettings(), "s")
    >>> record["damage"], record["runner_up"], record["confidence"]
    ('uncertain', 'major-damage', 0.4)
    """
    records = []
    for crop, row in zip(crops, probs, strict=True):
        records.append({
            "object_id": crop.item_id,
            **ranked_fields(row, _NAMES, settings.min_confidence, "damage"),
            "answer": grade_answer(GRADES[int(np.argmax(row))], settings.language),
            "language": settings.language.value,
            "scene": scene,
            "valid_fraction": round(crop.valid_fraction, 6),
            "pre_valid_fraction": (round(crop.pre_valid_fraction, 6)
                                   if crop.pre_valid_fraction is not None else None),
            "images": POST_ONLY if crop.pre is None else PRE_POST,
        })
    return records


def damage_task(model: ModelRun[Backend], settings: DamageSettings, scene: str,
                counts: Mapping[str, int] | None = None) -> ChipTask:
    """Damage as the driver runs it: layer ``buildings`` and the steps that load `model`.

    Raises
    ------
    ModelCapabilityError
        The model reads text only.
    """
    if not model.reads_images:
        raise ModelCapabilityError(
            f"{model.name} reads text only and cannot grade building damage; choose a"
            " vision-language model with --model (e.g. xview2-qwen3vl)."
        )

    scorer = settings.scorer

    def setup() -> ChipSteps:
        backend = model.load()

        def encode(batch: list[BuildingCrop]) -> Any:
            return scorer.encode(backend, [building_images(crop) for crop in batch])

        def grade(batch: list[BuildingCrop], inputs: Any) -> ChipRecords:
            probs = scorer.probabilities(backend, inputs)
            return ChipRecords(damage_records(batch, probs, settings, scene))

        return ChipSteps(prepare=encode, process=grade)

    def summary_counts(output: Path) -> dict[str, Any]:
        # Read from the layer, not counted in the steps: Ray's actors run those, and a
        # resumed run's earlier buildings count too.
        layer = pyogrio.read_dataframe(output, layer=BUILDINGS_LAYER,
                                       columns=["damage", "images"], read_geometry=False)
        graded = layer["damage"].value_counts()
        return {"footprints": dict(counts or {}),
                "post_only": int((layer["images"] == POST_ONLY).sum()) if settings.pre else 0,
                "grades": {name: int(graded.get(name, 0)) for name in (*_NAMES, UNCERTAIN)}}

    return ChipTask(
        command="damage",
        parameters={**model.record, **settings.as_dict()},
        layer=BUILDINGS_LAYER,
        fields=DAMAGE_FIELDS,
        style_qml=categorized_style("damage", GRADE_COLOURS),
        setup=setup,
        id_field="object_id",
        extra_versions=library_versions(ML_PACKAGES),
        batch_size=16,
        counts=summary_counts,
        unit="buildings",
    )


def damage_buildings(scenes: RunScenes, run: RunOptions, model: ModelRun[Backend],
                     settings: DamageSettings) -> RunSummary:
    """Grade every building of a scene into layer ``buildings``.

    The scene, the footprints, the pre scene and the output (path, lock, resumable or not)
    are checked before the model is loaded.

    Parameters
    ----------
    scenes
        The post scene and its buildings (`geovlm.pipeline.run_scenes.building_scene`).
    run
        The output, batch size (buildings per model call), progress, overwrite and engine.
    model
        Loads the model once the checks passed; its record is kept with the run.
    settings
        Language, confidence threshold, answer forms and calibration, recorded with the run
        (with the crops' pre scene).

    Returns
    -------
    RunSummary
        Counts and timing; ``footprints`` says what was read, repaired and left out;
        ``post_only`` how many buildings of the layer were graded without their pre crop;
        ``grades`` the layer's buildings per grade (and ``uncertain``).

    Raises
    ------
    ModelCapabilityError
        The model reads text only.
    """
    (entry, source), = scenes.opened
    counts: Mapping[str, int] = {}
    if isinstance(source, BuildingCrops):
        counts = source.footprints.counts
        settings = dataclasses.replace(settings, pre=source.options.pre)
    return run_over_chips(scenes, damage_task(model, settings, entry.key, counts), run)
