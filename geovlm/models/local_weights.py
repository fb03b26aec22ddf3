"""Whether a model or adapter is whole on this disk: a folder, or a Hugging Face cache snapshot.

One notion of "complete" for every caller: `geovlm.models.presets.availability` (``geovlm models``),
`geovlm.models.hub` (which hub ids to download) and `geovlm.backends.preflight` (which folder to
load). A snapshot that an interrupted download left with a ``config.json`` but no weights is not
complete, so it is downloaded again (huggingface_hub resumes it) rather than loaded. Nothing
here touches the network or imports torch.

A model folder is complete with ``config.json``, its weights (``model.safetensors``, or a
``*.index.json`` and every shard it names, or ``pytorch_model.bin``) and a tokenizer file; an
adapter folder with ``adapter_config.json`` and ``adapter_model.safetensors`` (or ``.bin``).
"""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Any

from geovlm.errors import ModelFileError

__all__ = [
    "Lack",
    "adapter_weights",
    "find_folder",
    "is_complete",
    "lack",
    "looks_like_path",
    "model_weights",
    "read_json",
]

#: Any one of these makes a folder's tokenizer loadable.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
#: transformers' single-file weights and the indexes of sharded ones, in its order of preference.
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


class Lack(Enum):
    """The first part a model or adapter folder lacks; the value names it in a message."""

    CONFIG = "config.json"
    WEIGHTS = "weights"
    TOKENIZER = "tokenizer"
    ADAPTER_WEIGHTS = "adapter weights"


def looks_like_path(text: str) -> bool:
    """Whether `text` is meant as a path (``./x``, ``/x``, ``~/x``, ``a/b/c``), not a hub id.

    Examples
    --------
    >>> looks_like_path("Qwen/Qwen3-VL-8B-Instruct"), looks_like_path("./model")
    (False, True)
    """
    return text.startswith((".", "/", "~")) or os.sep in text.replace("/", "", 1) or "\\" in text


def find_folder(ident: str) -> Path | None:
    """The folder `ident` names, or its snapshot in the Hugging Face cache, complete or not.

    Parameters
    ----------
    ident
        A local folder, or a hub id looked up in the cache of ``HF_HUB_CACHE`` (or
        ``HF_HOME``), read from the environment now.

    Returns
    -------
    Path or None
        None when it is neither a folder nor in the cache.
    """
    if not ident:
        return None
    folder = Path(ident).expanduser()
    if folder.is_dir():
        return folder
    if looks_like_path(ident):
        return None
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.file_download import repo_folder_name

    try:
        repo = _hub_cache() / repo_folder_name(repo_id=ident, repo_type="model")
    except HFValidationError:  # neither a folder nor a well-formed hub id
        return None
    try:
        commit = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):  # never downloaded (or the cache is unreadable)
        return None
    snapshot = repo / "snapshots" / commit
    return snapshot if commit and snapshot.is_dir() else None


def lack(folder: Path) -> Lack | None:
    """The first part `folder` lacks to load as a model (or as an adapter, if it is one).

    Parameters
    ----------
    folder
        A model or peft adapter folder; one with an ``adapter_config.json`` and no
        ``config.json`` is judged as an adapter.

    Returns
    -------
    Lack or None
        None when it is complete.
    """
    if not (folder / "config.json").is_file():
        if not (folder / "adapter_config.json").is_file():
            return Lack.CONFIG
        return None if adapter_weights(folder) else Lack.ADAPTER_WEIGHTS
    if not model_weights(folder):
        return Lack.WEIGHTS
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        return Lack.TOKENIZER
    return None


def is_complete(ident: str) -> bool:
    """Whether `ident` (a folder or a hub id) loads from this disk, without the network.

    Examples
    --------
    >>> is_complete("/no/such/folder")
    False
    """
    folder = find_folder(ident)
    return folder is not None and lack(folder) is None


def model_weights(folder: Path) -> list[Path]:
    """The weight files a model folder loads from; empty if none is complete.

    A sharded checkpoint counts only with every shard its index names, so an interrupted
    download of shard 3 of 4 has no weights. A broken index counts as no weights.
    """
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
    for name in _WEIGHT_INDEXES:
        if not (folder / name).is_file():
            continue
        try:
            weight_map = read_json(folder / name).get("weight_map", {})
            shards = sorted({folder / shard for shard in weight_map.values()})
        except (ModelFileError, AttributeError, TypeError):  # not JSON, or not an index
            return []
        return shards if shards and all(shard.is_file() for shard in shards) else []
    return []


def adapter_weights(folder: Path) -> list[Path]:
    """The weight file of a peft adapter folder, or an empty list."""
    return [folder / name for name in _ADAPTER_WEIGHT_FILES if (folder / name).is_file()][:1]


def read_json(path: Path) -> Any:
    """The content of a model's JSON file.

    Raises
    ------
    ModelFileError
        If it cannot be read or is not valid JSON (a cut download, a hand edit).
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise ModelFileError(
            f"{path} is not valid JSON ({reason}): restore it from the original model."
        ) from None


def _hub_cache() -> Path:
    """The Hugging Face hub cache, read from the environment now (not at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)
