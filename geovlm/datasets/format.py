r"""Training sets on disk: images plus LLaMA-Factory's multimodal sharegpt records.

One folder, readable by geovlm and by LLaMA-Factory alike (``dataset_dir: DS``)::

    DS/images/*.png            the pictures (relative paths in the records)
    DS/train.json, test.json   lists of {"messages": [user, assistant], "images": [path, ...],
                               "geovlm": {label, language, task, tile, event[, building]}}
    DS/dataset_info.json       registers ``geovlm_train`` and ``geovlm_test`` (sharegpt)
    DS/geovlm-dataset.json     the manifest: source, split rule and seed, counts; written last

The user turn is ``"<image>\n"`` per image, then the question: LLaMA-Factory's
``qwen3_vl_nothink`` renders it exactly as `geovlm.backends.chat.PromptTemplate` does at
inference, newline after each image. `DatasetWriter` builds the folder under a temporary name
and renames it when complete, so a folder with a manifest is always whole; `read_dataset`
checks LLaMA-Factory's rules (one ``<image>`` per image, ``images`` a list, every path inside
the folder and present). What a builder left out, and why, is counted in the manifest
(``left_out``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from geovlm import __version__
from geovlm.datasets.samples import Sample, Split
from geovlm.datasets.splits import SplitRule, assign_splits
from geovlm.errors import DatasetError, OutputError

__all__ = [
    "DATASET_INFO",
    "MANIFEST",
    "DatasetWriter",
    "TrainingSet",
    "read_dataset",
]

logger = logging.getLogger(__name__)

#: LLaMA-Factory's dataset registry file, inside the dataset folder.
DATASET_INFO = "dataset_info.json"
#: geovlm's description of the set; a folder without it is no finished dataset.
MANIFEST = "geovlm-dataset.json"
_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class TrainingSet:
    """A dataset folder as read back: its manifest and its samples per split."""

    root: Path
    manifest: Mapping[str, Any]
    train: tuple[Sample, ...]
    test: tuple[Sample, ...]

    def samples(self, split: Split | str | None = None) -> tuple[Sample, ...]:
        """Return one split's samples, or all of them (train first) when ``split`` is None."""
        if split is None:
            return self.train + self.test
        return self.train if Split(split) is Split.TRAIN else self.test

    def image_path(self, sample: Sample) -> Path:
        """Return the absolute path of a sample's (first) picture."""
        return self.root / sample.image

    def image_paths(self, sample: Sample) -> tuple[Path, ...]:
        """Return the absolute paths of all a sample's pictures, in prompt order."""
        return tuple(self.root / image for image in sample.images)


@dataclass
class DatasetWriter:
    """Collects samples and writes a dataset folder whole, or not at all; a context manager.

    Parameters
    ----------
    root
        The dataset folder to create.
    source
        What the set was built from, e.g. ``"xbd"``, ``"map"``, ``"vector"``.
    split_rule
        How samples are divided between train and test (by tile or by event, seeded).
    parameters
        The command's options, recorded in the manifest.
    overwrite
        Replace an existing folder; otherwise an existing one is refused before any work.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> from geovlm.datasets.samples import Sample, Task
    >>> from geovlm.labels.prompts import Language
    >>> root = Path(tempfile.mkdtemp()) / "ds"
    >>> with DatasetWriter(root, "example", SplitRule()) as writer:
    ...     for tile in ("a", "b"):
    ...         image = writer.add_image(tile, Image.new("RGB", (8, 8)))
    ...         writer.add(Sample(image, "Q?", "A.", "fire", Language.EN, Task.DISASTER,
    ...                           tile, "event"))
    >>> len(read_dataset(root).samples())
    2
    """

    root: Path
    source: str
    split_rule: SplitRule
    parameters: Mapping[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    _samples: list[Sample] = field(default_factory=list, init=False)
    _left_out: Counter[str] = field(default_factory=Counter, init=False)
    _staging: Path | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.root.exists() and not self.overwrite:
            raise OutputError(f"{self.root} exists: pass --overwrite to replace it.")
        if self.root.exists() and not (self.root / MANIFEST).is_file():
            raise OutputError(
                f"{self.root} exists and is no geovlm dataset: choose another output folder."
            )

    def __enter__(self) -> DatasetWriter:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        self._staging = self.root.with_name(f".{self.root.name}.partial-{os.getpid()}")
        shutil.rmtree(self._staging, ignore_errors=True)
        (self._staging / "images").mkdir(parents=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self._finish()
        elif self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)

    def add_image(self, name: str, image: Image.Image | Path) -> str:
        """Store a picture as ``images/<name>.png`` and return its path for `Sample.image`.

        Parameters
        ----------
        name
            A file name stem unique within the set (no folders).
        image
            A PIL image, or a PNG file copied as it is.

        Returns
        -------
        str
            The relative path to put in samples.
        """
        if self._staging is None:
            raise RuntimeError("use DatasetWriter as a context manager")
        relative = f"images/{name}.png"
        target = self._staging / relative
        if target.exists():
            raise ValueError(f"two images named {name!r} in one dataset")
        if isinstance(image, Path):
            shutil.copyfile(image, target)
        else:
            image.save(target, format="PNG")
        return relative

    def add(self, sample: Sample) -> None:
        """Queue one sample; its split is decided when the set is complete."""
        self._samples.append(sample)

    def extend(self, samples: Iterable[Sample]) -> None:
        """Queue several samples."""
        self._samples.extend(samples)

    def leave_out(self, what: str, count: int = 1) -> None:
        """Count things of the source not made into samples, by reason, for the manifest.

        Parameters
        ----------
        what
            What was left out and why, e.g. ``"un-classified buildings"``.
        count
            How many.
        """
        if count:
            self._left_out[what] += count

    def _finish(self) -> None:
        assert self._staging is not None
        if not self._samples:
            shutil.rmtree(self._staging, ignore_errors=True)
            raise DatasetError(
                f"no samples for {self.root}: the source holds nothing to learn; check that it"
                " holds labelled images (or chips) for the chosen --tasks."
            )
        for what, count in sorted(self._left_out.items()):
            logger.warning("%d %s left out of %s", count, what, self.root)
        splits = assign_splits(self._samples, self.split_rule)
        parts: dict[Split, list[Sample]] = {Split.TRAIN: [], Split.TEST: []}
        for sample, split in zip(self._samples, splits, strict=True):
            parts[split].append(sample)
        for split, samples in parts.items():
            _write_json(self._staging / f"{split.value}.json", [s.to_record() for s in samples])
        _write_json(self._staging / DATASET_INFO, _dataset_info())
        _write_json(self._staging / MANIFEST, self._manifest(parts))
        if self.root.exists():
            shutil.rmtree(self.root)
        os.replace(self._staging, self.root)

    def _manifest(self, parts: Mapping[Split, list[Sample]]) -> dict[str, Any]:
        def counts(samples: list[Sample]) -> dict[str, Any]:
            return {
                "samples": len(samples),
                "tiles": len({s.tile for s in samples}),
                "events": sorted({s.event for s in samples}),
                "labels": dict(sorted(Counter(s.label for s in samples).items())),
            }

        return {
            "format": _FORMAT_VERSION,
            "geovlm": __version__,
            "source": self.source,
            "split": self.split_rule.as_dict(),
            "parameters": dict(self.parameters),
            "tasks": sorted({s.task.value for s in self._samples}),
            "languages": sorted({s.language.value for s in self._samples}),
            "train": counts(parts[Split.TRAIN]),
            "test": counts(parts[Split.TEST]),
            "left_out": dict(sorted(self._left_out.items())),
        }


def read_dataset(root: str | os.PathLike[str]) -> TrainingSet:
    """Read a dataset folder written by `DatasetWriter` (or `geovlm dataset`), checking it whole.

    Parameters
    ----------
    root
        The dataset folder.

    Returns
    -------
    TrainingSet

    Raises
    ------
    DatasetError
        If the folder is no finished dataset, a record breaks LLaMA-Factory's rules, or an image
        is missing or outside the folder. The message names the file.
    """
    folder = Path(root)
    if not (folder / MANIFEST).is_file():
        raise DatasetError(
            f"{folder} is no geovlm dataset (no {MANIFEST}): build one with `geovlm dataset`."
        )
    manifest = _read_json(folder / MANIFEST)
    info = _read_json(folder / DATASET_INFO)
    parts: dict[Split, tuple[Sample, ...]] = {}
    for split in Split:
        entry = info.get(f"geovlm_{split.value}") if isinstance(info, dict) else None
        if not isinstance(entry, dict) or "file_name" not in entry:
            raise DatasetError(
                f"{folder / DATASET_INFO} does not register geovlm_{split.value}: rebuild the"
                " dataset with `geovlm dataset`."
            )
        path = folder / entry["file_name"]
        records = _read_json(path)
        if not isinstance(records, list):
            raise DatasetError(f"{path} must hold a JSON list of records: rebuild the dataset.")
        samples = tuple(
            Sample.from_record(record, f"{path} record {i}") for i, record in enumerate(records)
        )
        for i, sample in enumerate(samples):
            for image in sample.images:
                _check_image(folder, image, f"{path} record {i}")
        parts[split] = samples
    return TrainingSet(folder, manifest, parts[Split.TRAIN], parts[Split.TEST])


def _check_image(folder: Path, relative: str, where: str) -> None:
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise DatasetError(f"{where}: image {relative} lies outside {folder}: keep it inside.")
    if not path.is_file():
        raise DatasetError(f"{where}: image {relative} is missing: rebuild the dataset.")


def _dataset_info() -> dict[str, Any]:
    """LLaMA-Factory's registration of both splits, every column and tag spelled out."""

    def entry(split: Split) -> dict[str, Any]:
        return {
            "file_name": f"{split.value}.json",
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
            },
        }

    return {f"geovlm_{split.value}": entry(split) for split in Split}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(
            f"{path} is missing: rebuild the dataset with `geovlm dataset`."
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(
            f"{path} is not readable JSON ({exc}): rebuild the dataset with `geovlm dataset`."
        ) from None
