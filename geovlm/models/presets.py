"""Model presets: a short name resolves to base model, adapter, template and chip settings.

A preset is one YAML file, named like the preset: those shipped in ``geovlm/presets/`` and a
site's own in ``GEOVLM_PRESETS`` or the platform config folder, which replace shipped ones of the
same name (`geovlm.models.preset_files` finds them). Anywhere a model is accepted, a preset name, a
Hugging Face hub id or a local folder works: the last two give an ad-hoc preset. Nothing here
touches the network or imports torch.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from geovlm.enums import CheckedEnum
from geovlm.errors import ModelFileError, ModelNotFoundError, PresetError
from geovlm.labels.calibration import Calibration
from geovlm.labels.grade_forms import DAMAGE_GRADES
from geovlm.labels.label_set import DISASTER_TYPES, LabelSet
from geovlm.labels.verbalizer import Verbalizer
from geovlm.models.local_weights import find_folder, is_complete, looks_like_path, read_json
from geovlm.models.preset_files import find_preset_files
from geovlm.models.quantization import Quantization

__all__ = [
    "DEFAULT_MODEL",
    "FOLDER_PRESET",
    "ModelFamily",
    "ModelPreset",
    "availability",
    "list_presets",
    "resolve_model",
]

log = logging.getLogger(__name__)

#: The preset used when no model is given.
DEFAULT_MODEL = "xview2-qwen3vl"
#: A model or adapter folder's own preset (``geovlm train`` writes one beside its output).
FOLDER_PRESET = "geovlm-preset.yaml"
_REQUIRED = ("name", "model_id", "family", "chip_size", "supports_images")


class ModelFamily(CheckedEnum):
    """The architecture family a backend loads: ``qwen3_vl``, ``llava``, ``gemma`` or unknown."""

    QWEN3_VL = "qwen3_vl"
    LLAVA = "llava"
    GEMMA = "gemma"
    UNKNOWN = "unknown"

    @classmethod
    def from_model_type(cls, model_type: str | None) -> ModelFamily:
        """Return the family of a transformers ``config.json`` ``model_type``.

        Parameters
        ----------
        model_type
            E.g. ``"qwen3_vl"``, ``"llava"``, ``"gemma3_text"``; None when unknown.

        Returns
        -------
        ModelFamily
            `UNKNOWN` for anything else.

        Examples
        --------
        >>> ModelFamily.from_model_type("gemma2").value
        'gemma'
        """
        kind = (model_type or "").lower()
        if kind.startswith("qwen3_vl"):
            return cls.QWEN3_VL
        if kind == "llava":
            return cls.LLAVA
        return cls.GEMMA if kind.startswith("gemma") else cls.UNKNOWN


@dataclass(frozen=True, slots=True)
class ModelPreset:
    """Everything needed to load a model and feed it chips the way it was trained.

    Examples
    --------
    >>> preset = resolve_model("xview2-qwen3vl")
    >>> preset.model_id, preset.chip_size, preset.gsd
    ('Qwen/Qwen3-VL-8B-Instruct', 512, 3.5)
    """

    #: Preset name, or the id/path an ad-hoc preset was built from.
    name: str
    #: Base model: a hub id or a local folder.
    model_id: str
    #: A peft LoRA adapter on top of the base (hub id or folder), or None.
    adapter_id: str | None
    family: ModelFamily
    #: Chat template name (e.g. ``qwen3_vl_nothink``), or None for the processor's own.
    template: str | None
    #: Images larger than this many pixels are downscaled first, as in training; None: no limit.
    image_max_pixels: int | None
    #: Chip side in pixels.
    chip_size: int
    #: Metres per pixel of the training images as the model saw them; None: native resolution.
    gsd: float | None
    supports_images: bool
    quantize: Quantization = Quantization.AUTO
    description: str = ""
    #: How the model may name each label, per language; the built-in forms unless the YAML's
    #: ``answers:`` (language -> label -> list of forms) replaces some labels' forms.
    answers: Verbalizer = field(default_factory=Verbalizer.default)
    #: Temperature and label-prior correction of score-mode probabilities (``geovlm eval
    #: --fit-calibration`` writes it), or None.
    calibration: Calibration | None = None
    #: How the model may name each damage grade, per language; the built-in
    #: `geovlm.labels.grade_forms.grade_forms` unless the YAML's ``damage_answers:`` replaces some.
    damage_answers: Verbalizer = field(default_factory=lambda: Verbalizer.default(DAMAGE_GRADES))
    #: Temperature and grade-prior correction of damage-grade probabilities, or None.
    damage_calibration: Calibration | None = None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str] | Traversable) -> ModelPreset:
        """Read a preset file.

        Parameters
        ----------
        path
            A YAML mapping with the fields of `ModelPreset`; ``name`` must match the file name
            without ``.yaml``. A path, or a `Traversable` from `importlib.resources`. A folder's
            `FOLDER_PRESET` may have any name, and its relative ``model_id`` and
            ``adapter_id`` (``.``: the folder itself) are read against its folder.

        Returns
        -------
        ModelPreset

        Raises
        ------
        PresetError
            If the file is unreadable, not a mapping, has unknown or missing keys, or bad values.
        """
        if isinstance(path, str | os.PathLike):
            path = Path(path)
        stem = path.name.removesuffix(".yaml")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            reason = " ".join(str(exc).split())
            raise PresetError(f"{path} is not readable YAML ({reason}): fix it.") from exc
        if not isinstance(data, dict):
            raise PresetError(f"{path} must hold a YAML mapping of preset fields: rewrite it.")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if unknown := sorted(set(map(str, data)) - set(fields)):
            raise PresetError(
                f"{path} has unknown keys {unknown}: remove them (allowed: {', '.join(fields)})."
            )
        if missing := sorted(set(_REQUIRED) - set(data)):
            raise PresetError(f"{path} lacks the keys {missing}: add them.")
        in_folder = path.name == FOLDER_PRESET and isinstance(path, Path)
        try:
            adapter_id = _typed(data, "adapter_id", str, optional=True)
            preset = cls(
                name=_typed(data, "name", str),
                model_id=_beside(path, _typed(data, "model_id", str), in_folder),
                adapter_id=adapter_id and _beside(path, adapter_id, in_folder),
                family=ModelFamily(_typed(data, "family", str)),
                template=_typed(data, "template", str, optional=True),
                image_max_pixels=_typed(data, "image_max_pixels", int, optional=True),
                chip_size=_typed(data, "chip_size", int),
                gsd=_typed(data, "gsd", float, optional=True),
                supports_images=_typed(data, "supports_images", bool),
                quantize=Quantization(data.get("quantize", "auto")),
                description=_typed(data, "description", str, optional=True) or "",
                answers=_answers(data, DISASTER_TYPES),
                calibration=_calibration(data, DISASTER_TYPES),
                damage_answers=_answers(data, DAMAGE_GRADES),
                damage_calibration=_calibration(data, DAMAGE_GRADES),
            )
        except ValueError as exc:
            raise PresetError(f"{path} has a bad value: {exc}.") from exc
        if preset.name != stem and not in_folder:
            raise PresetError(f"{path} names itself {preset.name!r}: rename it {stem!r}.")
        return preset

    def answers_for(self, labels: LabelSet) -> Verbalizer:
        """Return the answer forms of a label set: `answers` or `damage_answers`.

        Examples
        --------
        >>> resolve_model("xview2-qwen3vl").answers_for(DAMAGE_GRADES).table("en")["destroyed"]
        ['Destroyed.', 'Destroyed']
        """
        return self.damage_answers if labels is DAMAGE_GRADES else self.answers

    def calibration_for(self, labels: LabelSet) -> Calibration | None:
        """Return the calibration of a label set: `calibration` or `damage_calibration`."""
        return self.damage_calibration if labels is DAMAGE_GRADES else self.calibration

    @classmethod
    def from_id(cls, model_id: str) -> ModelPreset:
        """Build an ad-hoc preset for a hub id or a local folder (model or peft adapter).

        The family, and whether the model takes images, come from its ``config.json`` when that
        is on disk (the folder, or the Hugging Face cache); otherwise the family is unknown and
        images are assumed. A folder holding only an ``adapter_config.json`` becomes the adapter
        on top of its ``base_model_name_or_path``.

        Parameters
        ----------
        model_id
            A hub id (``org/name``) or a local folder.

        Returns
        -------
        ModelPreset
            Chip size 512, no GSD, no template, automatic quantization.

        Raises
        ------
        ModelNotFoundError
            If `model_id` looks like a path but is not a folder.
        """
        adapter_id = None
        if looks_like_path(model_id) and not Path(model_id).expanduser().is_dir():
            raise ModelNotFoundError(
                f"{model_id} is not a folder: pass a model folder, a hub id or a preset name."
            )
        adapter = _json_file(model_id, "adapter_config.json")
        if adapter is not None and _json_file(model_id, "config.json") is None:
            adapter_id, model_id = model_id, str(adapter.get("base_model_name_or_path", ""))
        config = _json_file(model_id, "config.json")
        return cls(
            name=adapter_id or model_id,
            model_id=model_id,
            adapter_id=adapter_id,
            family=ModelFamily.from_model_type(config.get("model_type") if config else None),
            template=None,
            image_max_pixels=None,
            chip_size=512,
            gsd=None,
            supports_images=config is None or "vision_config" in config,
            description="ad-hoc preset",
        )


def list_presets(folder: str | os.PathLike[str] | None = None) -> list[ModelPreset]:
    """Return every preset, sorted by name.

    Parameters
    ----------
    folder
        Read only this folder of ``*.yaml`` files; by default the shipped presets and the site
        folders, a site preset replacing a shipped one of the same name (`find_preset_files`).

    Returns
    -------
    list of ModelPreset

    Raises
    ------
    PresetError
        If a file is malformed, or ``GEOVLM_PRESETS`` names something that is not a folder.
    """
    return [ModelPreset.from_yaml(found.path) for found in find_preset_files(folder)]


def resolve_model(
    name_or_id_or_path: str, *, folder: str | os.PathLike[str] | None = None
) -> ModelPreset:
    """Return the preset of that name, else an ad-hoc preset for a hub id or local folder.

    Parameters
    ----------
    name_or_id_or_path
        A preset name (``xview2-qwen3vl``), a hub id or a local folder; a folder holding a
        `FOLDER_PRESET` (as ``geovlm train`` writes) is read as that preset.
    folder
        Look only in this folder of presets; by default as `list_presets` does.

    Returns
    -------
    ModelPreset

    Raises
    ------
    PresetError
        If the named preset's file is malformed, or ``GEOVLM_PRESETS`` names something that
        is not a folder.
    ModelNotFoundError
        If the argument looks like a path but is not a folder.
    """
    own = Path(name_or_id_or_path).expanduser() / FOLDER_PRESET
    if own.is_file():
        return ModelPreset.from_yaml(own)
    for found in find_preset_files(folder):
        if found.name == name_or_id_or_path:
            return ModelPreset.from_yaml(found.path)
    log.debug("%s is no preset name: building an ad-hoc preset", name_or_id_or_path)
    return ModelPreset.from_id(name_or_id_or_path)


def availability(model_or_adapter_id: str) -> bool:
    """Tell whether a model or adapter can be loaded offline, without touching the network.

    Parameters
    ----------
    model_or_adapter_id
        A local folder, or a hub id looked up in the Hugging Face cache (``HF_HUB_CACHE``).

    Returns
    -------
    bool
        True if it is complete on disk (`geovlm.models.local_weights.lack`): a model's
        ``config.json``, weights and tokenizer, or an adapter's ``adapter_config.json`` and
        weights. A snapshot left by an interrupted download is not available.

    Examples
    --------
    >>> availability("/no/such/folder")
    False
    """
    return is_complete(model_or_adapter_id)


def _typed(data: dict[str, Any], key: str, kind: type, *, optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{key} must be {kind.__name__}, not {value!r}")
    if kind in (int, float) and isinstance(value, int | float) and value <= 0:
        raise ValueError(f"{key} must be positive, not {value!r}")
    return value


def _beside(path: Traversable, value: str, in_folder: bool) -> str:
    """A folder preset's relative model or adapter path, read against the preset's folder."""
    if not in_folder or not value.startswith("."):
        return value
    assert isinstance(path, Path)
    return str((path.parent / value).resolve())


def _json_file(model_id: str, filename: str) -> dict[str, Any] | None:
    """Read `filename` from a local folder or the Hugging Face cache, else return None."""
    folder = find_folder(model_id)
    if folder is None or not (folder / filename).is_file():
        return None
    try:
        data = read_json(folder / filename)
    except ModelFileError:
        # Not a warning: loading the model reports the broken file as its one-line error.
        log.debug("%s/%s is not readable JSON; treating %s as unavailable", folder, filename,
                  model_id)
        return None
    return data if isinstance(data, dict) else None


def _answers(data: dict[str, Any], labels: LabelSet) -> Verbalizer:
    table = _typed(data, labels.key, dict, optional=True) or {}
    return Verbalizer.from_mapping(table, labels=labels)


def _calibration(data: dict[str, Any], labels: LabelSet) -> Calibration | None:
    mapping = data.get(labels.calibration_key)
    return None if mapping is None else Calibration.from_mapping(mapping, labels)
