"""The ``classify`` task: the disaster type of every chip, with a probability per label.

Score mode (default) asks the model once per chip and reads the log-likelihood of every answer
form of every label (the preset's verbalizer: "A flooding disaster occurred in this image.",
"Flood disaster", "Flooding", ...); a label's probability is the normalised log-sum-exp over its
forms. Records keep the best label, the runner-up and the most likely form of the best label.
Generate mode lets the model answer freely and parses the text back to a label.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geovlm.backends.base import Backend, ModelRun
from geovlm.enums import CheckedEnum
from geovlm.errors import DeviceError, ModelCapabilityError, check_share
from geovlm.labels.calibration import Calibration
from geovlm.labels.prompts import DisasterLabel, Language, question
from geovlm.labels.ranking import UNCERTAIN, ranked_fields
from geovlm.labels.verbalizer import Verbalizer, label_probabilities
from geovlm.output.fields import FieldType
from geovlm.output.styles import categorized_style
from geovlm.output.versions import ML_PACKAGES, library_versions
from geovlm.pipeline.driver import RunSummary, run_over_chips
from geovlm.pipeline.plan import ChipTask, RunOptions
from geovlm.pipeline.run_scenes import RunScenes
from geovlm.pipeline.work_items import ChipRecords, ChipSteps
from geovlm.scenes.tiling import Chip
from geovlm.tasks.tile import CHIP_FIELDS, chip_record

__all__ = [
    "CLASSIFY_FIELDS",
    "UNCERTAIN",
    "ClassifyMode",
    "ClassifySettings",
    "classify_chips",
    "classify_scenes",
    "classify_task",
    "encode_chips",
    "scored_answers",
]

logger = logging.getLogger(__name__)

#: The label written when the best label's probability is under ``min_confidence``, or a
#: generated answer names no single disaster.

#: Fields of the classify layer.
CLASSIFY_FIELDS: dict[str, FieldType] = {
    **CHIP_FIELDS,
    "label": FieldType.STRING,
    "confidence": FieldType.REAL,
    "runner_up": FieldType.STRING,
    "runner_up_confidence": FieldType.REAL,
    "probs": FieldType.STRING,
    "answer": FieldType.STRING,
    "language": FieldType.STRING,
    "run_id": FieldType.STRING,
}


class ClassifyMode(CheckedEnum):
    """``score``: a probability per label from one pass; ``generate``: free text, parsed."""

    SCORE = "score"
    GENERATE = "generate"


@dataclass(frozen=True, slots=True)
class ClassifySettings:
    """How chips are classified, independent of the scene and the output."""

    language: Language = Language.EN
    mode: ClassifyMode = ClassifyMode.SCORE
    min_confidence: float = 0.0
    max_new_tokens: int = 24
    #: The answer forms scored (score mode) or recognised (generate mode): the preset's.
    verbalizer: Verbalizer = field(default_factory=Verbalizer.default)
    #: Applied to score mode's label probabilities (the preset's, unless refused), or None;
    #: generate mode ignores it.
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        check_share("--min-confidence", self.min_confidence)

    @property
    def prompt(self) -> str:
        """The question asked about every chip."""
        return question(self.language)

    def as_dict(self) -> dict[str, Any]:
        """The settings as recorded with the run.

        The calibration is recorded only where score mode applies it, so outputs of
        uncalibrated runs keep their signature.
        """
        return {
            "prompt": self.prompt,
            "language": self.language.value,
            "mode": self.mode.value,
            "min_confidence": self.min_confidence,
            "max_new_tokens": self.max_new_tokens,
            "answers": self.verbalizer.table(self.language),
            **({"calibration": self.calibration.to_mapping()}
               if self.calibration and self.mode is ClassifyMode.SCORE else {}),
        }


def _scored_records(
    backend: Backend, chips: list[Chip], inputs: Any, settings: ClassifySettings
) -> list[dict[str, Any]]:
    forms = settings.verbalizer.forms(settings.language)
    form_probs = backend.score_encoded(inputs, [form.text for form in forms])
    answers = scored_answers(form_probs, settings)
    return [{**chip_record(chip), **answer} for chip, answer in zip(chips, answers, strict=True)]


def scored_answers(form_probs: np.ndarray, settings: ClassifySettings) -> list[dict[str, Any]]:
    """Score mode's fields of each chip from its answer forms' probabilities.

    Parameters
    ----------
    form_probs
        ``(B, F)``: `Backend.score_encoded` of the settings' forms (`Verbalizer.forms` of the
        language, in that order).
    settings
        Language, confidence threshold, verbalizer and calibration.

    Returns
    -------
    list of dict
        Per chip: ``label``, ``confidence``, ``runner_up``, ``runner_up_confidence``, ``probs``
        (JSON text), ``answer`` (the best label's likeliest form) and ``language``.
    """
    forms = settings.verbalizer.forms(settings.language)
    labels = list(DisasterLabel)
    form_labels = np.array([labels.index(form.label) for form in forms])
    label_probs = label_probabilities(form_probs, forms)
    if settings.calibration is not None:
        label_probs = settings.calibration.apply(label_probs)
    answers = []
    names = [label.value for label in labels]
    for form_row, row in zip(form_probs, label_probs, strict=True):
        best_form = int(np.argmax(np.where(form_labels == np.argmax(row), form_row, -1.0)))
        answers.append({
            **ranked_fields(row, names, settings.min_confidence, "label"),
            "answer": forms[best_form].text,
            "language": settings.language.value,
        })
    return answers


def _generated_records(
    backend: Backend, chips: list[Chip], inputs: Any, settings: ClassifySettings
) -> list[dict[str, Any]]:
    texts = backend.generate_encoded(inputs, settings.max_new_tokens)
    records = []
    for chip, text in zip(chips, texts, strict=True):
        label = settings.verbalizer.parse(text, settings.language)
        records.append({
            **chip_record(chip),
            "label": label.value if label is not None else UNCERTAIN,
            "confidence": None,
            "runner_up": None,
            "runner_up_confidence": None,
            "probs": None,
            "answer": text,
            "language": settings.language.value,
        })
    return records


def _out_of_memory_errors() -> tuple[type[BaseException], ...]:
    """The out-of-memory error of torch once imported (a backend without torch cannot raise it).

    Looked up lazily so that tasks stay free of torch: the `Backend` protocol does not need it.
    """
    torch = sys.modules.get("torch")
    return (torch.OutOfMemoryError,) if torch is not None else ()


@contextmanager
def _fits_in_memory(batch_size: int) -> Iterator[None]:
    """Turn the GPU running out of memory on a batch into a sentence that says what to lower."""
    try:
        yield
    except _out_of_memory_errors():
        fix = (
            "lower --batch-size" if batch_size > 1
            else "pass --quantize 4bit, a smaller --size, or use a GPU with more memory"
        )
        raise DeviceError(f"out of GPU memory at batch size {batch_size}; {fix}.") from None


def encode_chips(backend: Backend, chips: list[Chip], settings: ClassifySettings) -> Any:
    """The model inputs for a batch of chips: each chip's image with the settings' question.

    Parameters
    ----------
    backend
        The model.
    chips
        The batch.
    settings
        The language (and so the question).

    Returns
    -------
    object
        `Backend.encode`'s batch, for `classify_chips`.

    Raises
    ------
    DeviceError
        If the GPU runs out of memory holding the batch.
    """
    with _fits_in_memory(len(chips)):
        return backend.encode([chip.image for chip in chips], [settings.prompt] * len(chips))


def classify_chips(
    backend: Backend, chips: list[Chip], settings: ClassifySettings, inputs: Any = None
) -> list[dict[str, Any]]:
    """Classify a batch of chips into records of the classify layer.

    Parameters
    ----------
    backend
        The model.
    chips
        The batch.
    settings
        Language, mode, confidence threshold and answer forms.
    inputs
        `encode_chips`'s result for this batch, if already made (e.g. in another thread).

    Returns
    -------
    list of dict
        One record per chip, in order (without ``run_id``, which the writer adds).

    Raises
    ------
    DeviceError
        If the GPU runs out of memory on the batch.
    """
    if inputs is None:
        inputs = encode_chips(backend, chips, settings)
    with _fits_in_memory(len(chips)):
        if settings.mode is ClassifyMode.SCORE:
            return _scored_records(backend, chips, inputs, settings)
        return _generated_records(backend, chips, inputs, settings)


def classify_scenes(
    scenes: RunScenes, run: RunOptions, model: ModelRun[Backend], settings: ClassifySettings
) -> RunSummary:
    """Classify every valid chip of a scene, or of an event's scenes, into layer ``chips``.

    The scenes and the output (path, lock, resumable or not) are checked before the model is
    loaded (once, for every scene), so a typo or a refused output costs no model load.

    Parameters
    ----------
    scenes
        One raster (`geovlm.pipeline.run_scenes.one_scene`) or an event's scenes
        (`geovlm.pipeline.run_scenes.survey_scenes`: one layer in one CRS, with fields
        ``scene`` and ``scene_chip_id``), opened and cut.
    run
        The output, batch size (chips per model call), progress, overwrite and engine.
    model
        Loads the model once the checks passed; its record is kept with the run.
    settings
        Language, mode, confidence threshold, answer forms and calibration; all are recorded
        with the run, so resuming with other answer forms is refused like other parameters.

    Returns
    -------
    RunSummary
        Counts and timing; an event's add the scenes processed and those that failed to open.

    Raises
    ------
    ModelCapabilityError
        The model reads text only.
    DeviceError
        The GPU runs out of memory on a batch (lower the batch size).
    """
    return run_over_chips(scenes, classify_task(model, settings), run)


def classify_task(model: ModelRun[Backend], settings: ClassifySettings) -> ChipTask:
    """Classify as the driver runs it: layer ``chips`` and the steps that load and run `model`.

    Raises
    ------
    ModelCapabilityError
        The model reads text only.
    """
    if not model.reads_images:
        raise ModelCapabilityError(
            f"{model.name} reads text only and cannot classify images; choose a"
            " vision-language model with --model (e.g. xview2-qwen3vl)."
        )

    def setup() -> ChipSteps:
        backend = model.load()

        def encode(batch: list[Chip]) -> Any:
            return encode_chips(backend, batch, settings)

        def classify(batch: list[Chip], inputs: Any) -> ChipRecords:
            return ChipRecords(classify_chips(backend, batch, settings, inputs))

        return ChipSteps(prepare=encode, process=classify)

    return ChipTask(
        command="classify",
        parameters={**model.record, **settings.as_dict()},
        layer="chips",
        fields=CLASSIFY_FIELDS,
        style_qml=categorized_style("label"),
        setup=setup,
        extra_versions=library_versions(ML_PACKAGES),
    )
