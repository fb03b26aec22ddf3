"""A training recipe: one frozen dataclass read from YAML, with ``--set key=value`` overrides.

Keys are LLaMA-Factory's names for the same settings (``lora_rank``, ``cutoff_len``,
``per_device_train_batch_size``, ...), so a recipe reads the same in both tools. Recipes ship
as package data (``geovlm/train_configs/*.yaml``, also ``configs/train/`` in a checkout):
``--config NAME`` finds a shipped one by name, any other value is a path. Nothing here imports
torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from geovlm.backends.chat import PromptTemplate
from geovlm.enums import CheckedEnum
from geovlm.errors import ParameterError

__all__ = [
    "SHIPPED_CONFIGS",
    "FinetuningType",
    "LoraTarget",
    "Schedule",
    "TrainConfig",
    "find_config",
]

#: The folder of the recipes shipped with geovlm (package data).
SHIPPED_CONFIGS: Traversable = resources.files("geovlm") / "train_configs"


class FinetuningType(CheckedEnum):
    """What is trained: a LoRA adapter on the language model, or the language model itself."""

    #: Low-rank adapters on the language model's linear layers; the base stays frozen.
    LORA = "lora"
    #: Every weight of the language model (and its output layer); the vision tower stays frozen.
    FULL = "full"


class LoraTarget(CheckedEnum):
    """Which layers LoRA wraps: ``all`` linear layers of the language model (LLaMA-Factory's)."""

    ALL = "all"
    #: Only the attention projections (q, k, v, o).
    ATTENTION = "attention"


class Schedule(CheckedEnum):
    """The learning-rate schedule after warmup (transformers' ``lr_scheduler_type`` names)."""

    COSINE = "cosine"
    LINEAR = "linear"
    CONSTANT = "constant"
    CONSTANT_WITH_WARMUP = "constant_with_warmup"
    POLYNOMIAL = "polynomial"
    INVERSE_SQRT = "inverse_sqrt"


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """How to fine-tune a vision-language model on a geovlm dataset.

    Examples
    --------
    >>> config = TrainConfig.from_yaml("qwen3vl_8b_xview2_4bit")
    >>> config.lora_rank, config.learning_rate, config.quantization_bit
    (8, 0.0001, 4)
    >>> config.with_overrides(["learning_rate=2e-4"]).learning_rate
    0.0002
    """

    #: Base model: a hub id, a local folder or a preset name (its base model is used); None:
    #: the recipe names none and ``geovlm train --model`` must.
    model_name_or_path: str | None
    #: Named chat format of training and inference (e.g. ``qwen3_vl_nothink``); None: the model's.
    template: str | None = None
    finetuning_type: FinetuningType = FinetuningType.LORA
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target: LoraTarget = LoraTarget.ALL
    #: 4 or 8: bitsandbytes weights of the frozen base on CUDA (QLoRA); None: full precision.
    #: The CPU always trains without quantization.
    quantization_bit: int | None = None
    #: Cap on each image's pixels after the processor's resize, as at inference; None: no cap.
    image_max_pixels: int | None = None
    #: Longest sequence (prompt with image tokens, then answer) in tokens; answers are cut.
    cutoff_len: int = 2048
    learning_rate: float = 1e-4
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    num_train_epochs: float = 3.0
    #: Stop after this many optimizer steps instead of the epochs; None: the epochs decide.
    max_steps: int | None = None
    lr_scheduler_type: Schedule = Schedule.COSINE
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    #: Gradients are clipped to this norm; 0: no clipping.
    max_grad_norm: float = 1.0
    #: bfloat16 mixed precision on CUDA (the CPU trains in float32).
    bf16: bool = True
    gradient_checkpointing: bool = True
    logging_steps: int = 10
    save_steps: int = 500
    seed: int = 42

    def __post_init__(self) -> None:
        positive = (
            "lora_rank", "lora_alpha", "cutoff_len", "learning_rate",
            "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
            "logging_steps", "save_steps", "max_steps", "image_max_pixels",
        )
        for name in positive:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ParameterError(f"{name} must be positive, not {value}: fix the recipe.")
        if not 0 <= self.lora_dropout < 1 or not 0 <= self.warmup_ratio < 1:
            raise ParameterError(
                "lora_dropout and warmup_ratio must lie in [0, 1): fix the recipe."
            )
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ParameterError(
                "weight_decay and max_grad_norm cannot be negative: fix the recipe."
            )
        if self.template is not None:
            try:
                PromptTemplate(self.template)
            except ValueError as exc:
                raise ParameterError(f"{exc}, or null for the model's own.") from None
        if self.quantization_bit not in (None, 4, 8):
            raise ParameterError(
                f"quantization_bit must be 4, 8 or null, not {self.quantization_bit}:"
                " fix the recipe."
            )

    @classmethod
    def from_yaml(cls, config: str | os.PathLike[str]) -> TrainConfig:
        """Read a recipe: a shipped one by name (see `find_config`) or a YAML file.

        Parameters
        ----------
        config
            ``tiny-cpu``, ``qwen3vl_8b_xview2_4bit``, or a path to a YAML mapping of fields.

        Returns
        -------
        TrainConfig

        Raises
        ------
        ParameterError
            If the file is missing or unreadable, or has unknown keys, missing or bad values.
        """
        path = find_config(config)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            reason = " ".join(str(exc).split())
            raise ParameterError(f"{path} is not readable YAML ({reason}): fix it.") from None
        if not isinstance(data, dict):
            raise ParameterError(f"{path} must hold a YAML mapping of training settings.")
        return cls.from_mapping(data, str(path))

    @classmethod
    def from_mapping(cls, data: dict[str, Any], where: str) -> TrainConfig:
        """Build a recipe from plain data, each value checked against its field's type.

        Parameters
        ----------
        data
            Field name -> value (YAML types).
        where
            Names the source in errors.

        Returns
        -------
        TrainConfig

        Raises
        ------
        ParameterError
            If a key is unknown, ``model_name_or_path`` missing, or a value of the wrong type.
        """
        fields = _field_types()
        if unknown := sorted(set(map(str, data)) - set(fields)):
            raise ParameterError(
                f"{where} has unknown keys {unknown}: remove them (known: {', '.join(fields)})."
            )
        if "model_name_or_path" not in data:
            raise ParameterError(
                f"{where} lacks model_name_or_path: name the base model (null: --model names it)."
            )
        values = {key: _coerce(key, value, fields[key], where) for key, value in data.items()}
        return cls(**values)

    def with_overrides(self, assignments: list[str] | tuple[str, ...]) -> TrainConfig:
        """Return the recipe with ``key=value`` settings replaced, each typed by its field.

        Parameters
        ----------
        assignments
            E.g. ``["learning_rate=2e-4", "quantization_bit=null"]``.

        Returns
        -------
        TrainConfig

        Raises
        ------
        ParameterError
            If an assignment has no ``=``, names an unknown key, or its value does not fit.
        """
        fields = _field_types()
        changes: dict[str, Any] = {}
        for assignment in assignments:
            key, equals, text = assignment.partition("=")
            key = key.strip()
            if not equals:
                raise ParameterError(
                    f"--set {assignment!r} must be KEY=VALUE, e.g. --set learning_rate=2e-4."
                )
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                raise ParameterError(
                    f"--set {assignment!r} names no recipe setting: "
                    + (f"did you mean {close[0]}?" if close
                       else f"KEY is one of {', '.join(fields)}.")
                )
            changes[key] = _coerce(key, _parse_text(text.strip()), fields[key], "--set")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Return the recipe as YAML/JSON-ready data (enums as their values)."""
        return {
            f.name: (v.value if isinstance(v := getattr(self, f.name), CheckedEnum) else v)
            for f in dataclasses.fields(self)
        }


def find_config(config: str | os.PathLike[str]) -> Path:
    """The YAML file of a recipe: a shipped one by name, else the path given.

    Parameters
    ----------
    config
        A shipped recipe's name (file name without ``.yaml``) or a path.

    Returns
    -------
    Path

    Raises
    ------
    ParameterError
        If it is neither a shipped name nor an existing file.
    """
    name = str(config)
    shipped = SHIPPED_CONFIGS / f"{name}.yaml"
    if os.sep not in name and not name.endswith(".yaml") and shipped.is_file():
        return Path(str(shipped))
    path = Path(name).expanduser()
    if not path.is_file():
        names = sorted(p.name.removesuffix(".yaml") for p in SHIPPED_CONFIGS.iterdir()
                       if p.name.endswith(".yaml"))
        raise ParameterError(
            f"no training config {name}: pass a YAML file or a shipped one ({', '.join(names)})."
        )
    return path


def _field_types() -> dict[str, Any]:
    return dict(get_type_hints(TrainConfig))


def _parse_text(text: str) -> Any:
    """A ``--set`` value: null, true/false, a number or the string itself."""
    lowered = text.lower()
    if lowered in ("null", "none", "~", ""):
        return None
    if lowered in ("true", "yes", "on", "false", "no", "off"):
        return lowered in ("true", "yes", "on")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _coerce(key: str, value: Any, hint: Any, where: str) -> Any:
    """``value`` as the field's type: ints widen to floats, strings become enums."""
    args = get_args(hint)
    optional = get_origin(hint) in (Union, types.UnionType) and type(None) in args
    kind = next(a for a in args if a is not type(None)) if optional else hint
    if value is None:
        if optional:
            return None
        raise ParameterError(f"{where}: {key} cannot be null: give a {kind.__name__}.")
    if isinstance(kind, type) and issubclass(kind, CheckedEnum):
        try:
            return kind(str(value))
        except ValueError as exc:
            raise ParameterError(f"{where}: {key}: {exc}.") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ParameterError(
            f"{where}: {key} must be {kind.__name__}, not {value!r}: fix the value."
        )
    return value
