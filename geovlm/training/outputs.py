"""A training output folder: claimed, logged, checkpointed, and finished with a preset.

Layout of ``--output DIR``::

    geovlm-train.json        the run: recipe, base model, dataset and its fingerprint (first)
    checkpoint-N/            transformers checkpoints every ``save_steps`` (for ``--resume``)
    trainer_log.jsonl        one line per logging step: step, epoch, loss, lr, elapsed, eta
    adapter_config.json,     the peft adapter (LoRA), or config.json, model.safetensors and
    adapter_model.safetensors  the processor's files (full fine-tuning)
    loss.png                 the loss curve, raw and smoothed
    train_results.json       steps, seconds, final loss, samples/s
    geovlm-preset.yaml       written last: ``geovlm classify --model DIR`` reads it

A folder holding ``geovlm-preset.yaml`` is a finished run; one holding only
``geovlm-train.json`` is resumable. Nothing else is ever written into or deleted from a folder
that lacks ``geovlm-train.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from geovlm import __version__
from geovlm.errors import OutputError
from geovlm.models.presets import FOLDER_PRESET

__all__ = [
    "LOG_FILE",
    "LOSS_PLOT",
    "RESULTS_FILE",
    "RUN_FILE",
    "OutputFolder",
    "data_fingerprint",
    "read_log",
]

#: The run's identity, written first: what ``--resume`` compares.
RUN_FILE = "geovlm-train.json"
#: One JSON line per logging step.
LOG_FILE = "trainer_log.jsonl"
#: The loss curve.
LOSS_PLOT = "loss.png"
#: The closing figures.
RESULTS_FILE = "train_results.json"
_CHECKPOINT = "checkpoint-"


def data_fingerprint(root: Path) -> str:
    """A digest of a dataset's training records and manifest: equal data, equal digest.

    Parameters
    ----------
    root
        The dataset folder.

    Returns
    -------
    str
        Hex SHA-256.
    """
    digest = hashlib.sha256()
    for name in ("train.json", "geovlm-dataset.json"):
        digest.update((root / name).read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class OutputFolder:
    """The folder one training run writes, checked and claimed before any model loads.

    Attributes
    ----------
    path
        The folder.
    """

    path: Path

    @classmethod
    def claim(
        cls, path: Path, run: Mapping[str, Any], *, resume: bool, overwrite: bool
    ) -> OutputFolder:
        """Check ``path`` may take this run and record the run in it.

        Parameters
        ----------
        path
            The output folder.
        run
            What identifies the run (recipe, base model, data fingerprint), JSON-ready.
        resume
            Continue the run already in ``path``; it must be this very run.
        overwrite
            Replace a run already in ``path``.

        Returns
        -------
        OutputFolder

        Raises
        ------
        OutputError
            If ``path`` is a file or a foreign folder, holds a run and neither ``resume`` nor
            ``overwrite`` is given, or holds another run than the one to resume, or a finished
            one.
        """
        folder = cls(path)
        recorded = folder._recorded()
        if path.exists() and not path.is_dir():
            raise OutputError(f"{path} is a file: pass --output a folder.")
        if path.is_dir() and any(path.iterdir()) and recorded is None:
            raise OutputError(
                f"{path} exists and holds no geovlm training run: choose another --output."
            )
        if resume:
            if recorded is None:
                raise OutputError(f"{path} holds no training run to resume: leave out --resume.")
            if changed := sorted(_differences(recorded, run)):
                raise OutputError(
                    f"{path} was trained with other {', '.join(changed)}: resume with the same"
                    " settings and data, or train into another --output."
                )
            if (path / RESULTS_FILE).is_file():  # Trainer would run one step past the end
                raise OutputError(
                    f"{path} holds a finished run, with nothing left to resume: train into"
                    " another --output, or pass --overwrite instead of --resume to start afresh."
                )
            return folder
        if recorded is not None and not overwrite:
            raise OutputError(
                f"{path} holds a training run: pass --resume to continue it, or --overwrite"
                " to start afresh."
            )
        if recorded is not None:
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        _write_atomic(path / RUN_FILE, json.dumps({**run, "geovlm": __version__}, indent=1))
        return folder

    def _recorded(self) -> dict[str, Any] | None:
        file = self.path / RUN_FILE
        if not file.is_file():
            return None
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            raise OutputError(
                f"{file} is not readable JSON: pass --overwrite to start afresh."
            ) from None
        return data if isinstance(data, dict) else None

    def last_checkpoint(self) -> Path | None:
        """The checkpoint with the most steps, or None before the first save."""
        steps = [
            (int(p.name.removeprefix(_CHECKPOINT)), p)
            for p in self.path.glob(f"{_CHECKPOINT}*")
            if p.is_dir() and p.name.removeprefix(_CHECKPOINT).isdigit()
        ]
        return max(steps)[1] if steps else None

    @property
    def log_file(self) -> Path:
        """Where the per-step log goes."""
        return self.path / LOG_FILE

    def rewind_log(self, step: int) -> float:
        """Drop log lines past ``step`` (a resumed run logs them again).

        Parameters
        ----------
        step
            The step of the checkpoint resumed from; 0 empties the log.

        Returns
        -------
        float
            Seconds the kept lines had taken, so elapsed time continues from there.
        """
        rows = [row for row in read_log(self.log_file) if row["step"] <= step]
        _write_atomic(self.log_file, "".join(json.dumps(row) + "\n" for row in rows))
        return float(rows[-1]["elapsed"]) if rows else 0.0

    def finish(self, staged: Path, preset: Mapping[str, Any], results: Mapping[str, Any]) -> None:
        """Move the saved model in, plot the loss, and write the results and preset last.

        Parameters
        ----------
        staged
            A folder holding the saved adapter or model (and processor), moved in file by file.
        preset
            The fields of the output's `geovlm.models.presets.ModelPreset`.
        results
            The closing figures.
        """
        from geovlm.training.plots import plot_loss

        for item in staged.iterdir():
            target = self.path / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
        shutil.rmtree(staged)
        plot_loss(read_log(self.log_file), self.path / LOSS_PLOT)
        _write_atomic(self.path / RESULTS_FILE, json.dumps(dict(results), indent=1))
        header = "# Written by `geovlm train`: `geovlm classify --model THIS_FOLDER` reads it.\n"
        text = yaml.safe_dump(dict(preset), allow_unicode=True, sort_keys=False)
        _write_atomic(self.path / FOLDER_PRESET, header + text)


def read_log(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``trainer_log.jsonl`` (none if it is absent)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _differences(recorded: Mapping[str, Any], run: Mapping[str, Any]) -> list[str]:
    """The names of the settings that differ between two runs' records."""
    changed = [
        key for key in recorded.get("config", {}) | run.get("config", {})
        if recorded.get("config", {}).get(key) != run.get("config", {}).get(key)
    ]
    changed += [key for key in ("model", "data") if recorded.get(key) != run.get(key)]
    return changed


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` under a temporary name and rename it, so ``path`` is never half-written."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
