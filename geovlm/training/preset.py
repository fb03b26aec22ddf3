"""The preset a training run leaves beside its output, so ``classify --model DIR`` just works.

It names the base model and the adapter (``.``, the folder itself) or, after full fine-tuning,
the folder as the model; the chat template and pixel cap the run trained with; the chip size
and ground resolution of the training images (the dataset's, else the base preset's); and the
answer forms: the dataset's answers first, then the base preset's other forms of each label.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from geovlm.datasets.format import TrainingSet
from geovlm.datasets.samples import Task
from geovlm.errors import DatasetError
from geovlm.labels.prompts import DisasterLabel, Language
from geovlm.labels.verbalizer import Verbalizer
from geovlm.models.presets import ModelFamily, ModelPreset
from geovlm.training.config import FinetuningType, TrainConfig

__all__ = ["answer_forms_of", "output_preset"]


def answer_forms_of(data: TrainingSet, base: Verbalizer) -> Verbalizer:
    """The base's answer forms with each trained label's dataset answers put first.

    Parameters
    ----------
    data
        The training set; its disaster-type samples' answers become forms of their labels.
    base
        The forms to extend (the base preset's).

    Returns
    -------
    Verbalizer

    Raises
    ------
    DatasetError
        If a disaster-type sample's label is no `DisasterLabel`, or one answer names two labels
        in one language.
    """
    trained: dict[tuple[Language, DisasterLabel], list[str]] = {}
    for sample in data.train:
        if sample.task is not Task.DISASTER:
            continue
        try:
            label = DisasterLabel(sample.label)
        except ValueError as exc:
            raise DatasetError(
                f"{data.root} asks the disaster type with the label {sample.label!r} ({exc}):"
                " rebuild the dataset with `geovlm dataset`."
            ) from None
        forms = trained.setdefault((sample.language, label), [])
        if sample.answer not in forms:
            forms.append(sample.answer)
    mapping: dict[str, dict[str, list[str]]] = {}
    for (language, label), forms in trained.items():
        rest = [f.text for f in base.forms(language) if f.label is label and f.text not in forms]
        mapping.setdefault(language.value, {})[label.value] = [*forms, *rest]
    try:
        return Verbalizer.from_mapping(mapping, base)
    except ValueError as exc:
        raise DatasetError(
            f"{data.root}'s answers cannot be told apart ({exc}): give each label its own answer."
        ) from None


def output_preset(
    *,
    name: str,
    config: TrainConfig,
    base: ModelPreset,
    base_model: str,
    model_type: str,
    data: TrainingSet,
    description: str,
) -> dict[str, Any]:
    """The fields of the output folder's `geovlm.models.presets.FOLDER_PRESET`, YAML-ready.

    Parameters
    ----------
    name
        The preset's name (the output folder's).
    config
        The recipe trained with.
    base
        The base model's preset (chip size, ground resolution, answers, quantization).
    base_model
        The base model as the adapter names it (`geovlm.training.model.base_model_name`).
    model_type
        The base's ``config.json`` ``model_type``.
    data
        The training set.
    description
        One line about the run.

    Returns
    -------
    dict
        The preset's fields.
    """
    parameters: Mapping[str, Any] = data.manifest.get("parameters") or {}
    chip_size = parameters.get("chip_size", parameters.get("size", base.chip_size))
    gsd = parameters.get("gsd", base.gsd)
    answers = answer_forms_of(data, base.answers)
    lora = config.finetuning_type is FinetuningType.LORA
    return {
        "name": name,
        "description": description,
        "model_id": base_model if lora else ".",
        "adapter_id": "." if lora else None,
        "family": ModelFamily.from_model_type(model_type).value,
        "template": config.template,
        "image_max_pixels": config.image_max_pixels,
        "chip_size": int(chip_size),
        "gsd": None if gsd is None else float(gsd),
        "supports_images": True,
        "quantize": base.quantize.value,
        "answers": {language.value: answers.table(language) for language in Language},
    }
