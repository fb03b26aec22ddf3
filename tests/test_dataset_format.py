"""The dataset folder format: LLaMA-Factory's sharegpt rules, whole-or-nothing writes, splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from geovlm.datasets import DatasetWriter, Sample, Split, SplitBy, SplitRule, Task, read_dataset
from geovlm.errors import DatasetError, OutputError
from geovlm.labels.prompts import Language


def _write(root: Path, rule: SplitRule, tiles: int = 6, **kwargs: object) -> None:
    with DatasetWriter(root, "test", rule, **kwargs) as writer:  # type: ignore[arg-type]
        for t in range(tiles):
            image = writer.add_image(f"t{t}", Image.new("RGB", (8, 8), (t, 0, 0)))
            for language in (Language.EN, Language.JA):
                writer.add(Sample(image, "What?", f"Answer {t}.", "fire", language,
                                  Task.DISASTER, f"tile{t}", f"event{t % 3}"))


def test_records_follow_llamafactory_rules(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _write(root, SplitRule(test_fraction=0.34, seed=2))
    info = json.loads((root / "dataset_info.json").read_text())
    assert info["geovlm_train"]["formatting"] == "sharegpt"
    assert info["geovlm_train"]["columns"] == {"messages": "messages", "images": "images"}
    for split in ("train", "test"):
        for record in json.loads((root / info[f"geovlm_{split}"]["file_name"]).read_text()):
            assert isinstance(record["images"], list)
            user = record["messages"][0]["content"]
            assert user.count("<image>") == len(record["images"]) == 1
            assert user.startswith("<image>\n")
            assert all((root / path).is_file() for path in record["images"])
    data = read_dataset(root)
    assert len(data.train) + len(data.test) == 12
    assert {s.tile for s in data.train}.isdisjoint({s.tile for s in data.test})
    assert data.manifest["split"] == {"by": "tile", "test_fraction": 0.34, "seed": 2,
                                      "holdout": []}
    assert data.samples(Split.TEST) == data.test
    assert data.image_path(data.test[0]).is_file()


def test_event_split_holds_whole_events_out_and_is_seeded(tmp_path: Path) -> None:
    rule = SplitRule(SplitBy.EVENT, test_fraction=0.3, seed=5)
    _write(tmp_path / "a", rule)
    _write(tmp_path / "b", rule)
    first, second = read_dataset(tmp_path / "a"), read_dataset(tmp_path / "b")
    assert {s.event for s in first.test} == {s.event for s in second.test}
    assert len({s.event for s in first.test}) == 1
    assert {s.event for s in first.train}.isdisjoint({s.event for s in first.test})


def test_holdout_names_the_test_events(tmp_path: Path) -> None:
    _write(tmp_path / "ds", SplitRule(SplitBy.EVENT, holdout=("event1",)))
    assert {s.event for s in read_dataset(tmp_path / "ds").test} == {"event1"}
    with pytest.raises(DatasetError, match="nowhere"):
        SplitRule(SplitBy.EVENT, holdout=("nowhere",)).test_units(["event0"])


def test_one_event_cannot_be_split_by_event() -> None:
    with pytest.raises(DatasetError, match="--split tile"):
        SplitRule(SplitBy.EVENT).test_units(["only"])


def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    with pytest.raises(RuntimeError), DatasetWriter(root, "test", SplitRule()) as writer:
        writer.add_image("x", Image.new("RGB", (4, 4)))
        raise RuntimeError("killed half-way")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _write(root, SplitRule())
    with pytest.raises(OutputError, match="--overwrite"):
        DatasetWriter(root, "test", SplitRule())
    _write(root, SplitRule(), tiles=2, overwrite=True)
    assert len(read_dataset(root).samples()) == 4
    (tmp_path / "other").mkdir()
    with pytest.raises(OutputError, match="no geovlm dataset"):
        DatasetWriter(tmp_path / "other", "test", SplitRule(), overwrite=True)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.update(images="images/t0.png"), "list of one path"),
        (lambda r: r["messages"][0].update(content="no placeholder"), "0 <image>"),
        (lambda r: r.update(images=["../../etc/passwd"]), "outside"),
        (lambda r: r.update(images=["images/gone.png"]), "missing"),
        (lambda r: r.pop("geovlm"), "not a geovlm sharegpt record"),
    ],
)
def test_broken_records_are_named(tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "ds"
    _write(root, SplitRule(test_fraction=0))
    records = json.loads((root / "train.json").read_text())
    edit(records[0])
    (root / "train.json").write_text(json.dumps(records))
    with pytest.raises(DatasetError, match=message) as caught:
        read_dataset(root)
    assert "train.json record 0" in str(caught.value)


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="geovlm dataset"):
        read_dataset(tmp_path)
