"""Where ``geovlm eval --fit-calibration`` writes a calibration: a model folder's preset file.

A trained output folder (``geovlm train``) or an adapter folder carries its own preset,
``geovlm-preset.yaml``, beside the weights. The fitted calibration goes under its
``calibration:`` key (disaster types) or ``damage_calibration:`` (building damage grades, which
``geovlm damage`` applies); the rest of the file is kept as it is. A folder without the file gets a
complete preset (the model, adapter, answer forms and calibration evaluated), so that
``geovlm classify --model FOLDER`` uses exactly what was measured.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from geovlm.backends.choice import ModelChoice
from geovlm.errors import ParameterError, PresetError
from geovlm.labels.calibration import Calibration
from geovlm.labels.prompts import Language
from geovlm.models.local_weights import looks_like_path
from geovlm.models.presets import FOLDER_PRESET, ModelPreset

__all__ = ["calibration_folder", "write_calibration"]


def calibration_folder(model: str, adapter: str | None) -> Path:
    """Return the folder whose preset file receives the calibration, checked writable.

    Parameters
    ----------
    model
        ``--model`` as given.
    adapter
        ``--adapter`` as given (None when not given or ``--no-adapter``).

    Returns
    -------
    Path
        The ``--adapter`` folder when one is given, else the ``--model`` folder.

    Raises
    ------
    ParameterError
        If the model is a preset name or hub id (no folder of its own), the folder is not
        writable, or its preset file is not a YAML mapping.
    """
    given = adapter if adapter is not None else model
    option = "--adapter" if adapter is not None else "--model"
    folder = Path(given).expanduser()
    # A bare name is a folder when it holds a preset file, as `resolve_model` reads it.
    if not (folder.is_dir() and (looks_like_path(given) or (folder / FOLDER_PRESET).is_file())):
        raise ParameterError(
            f"--fit-calibration writes into a model folder's {FOLDER_PRESET}, and {option} {given}"
            " is no local folder: pass the trained output folder with --model (or a local"
            " --adapter folder), or copy the fitted calibration from report.json into a site"
            " preset."
        )
    path = folder / FOLDER_PRESET
    if not os.access(path if path.exists() else folder, os.W_OK):
        raise ParameterError(f"{path} is not writable: make it writable or copy the folder.")
    if path.exists():
        _read_mapping(path)
    return folder


def write_calibration(folder: Path, calibration: Calibration, choice: ModelChoice) -> Path:
    """Put ``calibration`` into the folder's preset file, creating a full preset if none.

    Under its label set's key: ``calibration`` for disaster types, ``damage_calibration``.

    Parameters
    ----------
    folder
        From `calibration_folder`.
    calibration
        The fitted calibration.
    choice
        The model evaluated: what a new preset file names.

    Returns
    -------
    Path
        The preset file, replaced atomically.

    Raises
    ------
    PresetError
        If the existing preset file is not a YAML mapping.
    """
    path = folder / FOLDER_PRESET
    data = _read_mapping(path) if path.exists() else _preset_mapping(choice, folder)
    data[calibration.labels.calibration_key] = calibration.to_mapping()
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    temporary.write_text(
        yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    os.replace(temporary, path)
    return path


def _preset_mapping(choice: ModelChoice, folder: Path) -> dict[str, Any]:
    preset: ModelPreset = choice.preset
    return {
        "name": FOLDER_PRESET.removesuffix(".yaml"),
        "description": f"{preset.description or preset.name}, calibrated by geovlm eval",
        "model_id": _absolute(preset.model_id),
        "adapter_id": _absolute(choice.adapter) if choice.adapter else None,
        "family": preset.family.value,
        "template": preset.template,
        "image_max_pixels": preset.image_max_pixels,
        "chip_size": preset.chip_size,
        "gsd": preset.gsd,
        "supports_images": preset.supports_images,
        "quantize": preset.quantize.value,
        "answers": {language.value: preset.answers.table(language) for language in Language},
        "damage_answers": {language.value: preset.damage_answers.table(language)
                           for language in Language},
    }


def _absolute(model_id: str) -> str:
    """A local folder as an absolute path (the preset file may be read from anywhere)."""
    path = Path(model_id).expanduser()
    return str(path.resolve()) if looks_like_path(model_id) and path.is_dir() else model_id


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        raise PresetError(f"{path} is not readable YAML ({reason}): fix or remove it.") from exc
    if not isinstance(data, dict):
        raise PresetError(f"{path} must hold a YAML mapping of preset fields: fix or remove it.")
    return data
