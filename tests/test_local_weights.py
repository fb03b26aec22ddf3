"""One notion of a complete model or adapter on disk: which part a folder or snapshot lacks."""

from __future__ import annotations

import json

import pytest

from geovlm.errors import ModelFileError
from geovlm.models.local_weights import (
    Lack,
    find_folder,
    is_complete,
    lack,
    model_weights,
    read_json,
)
from tests.helpers import MODEL_FILES, cache_snapshot


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "hub"
    folder.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    return folder


def test_a_model_folder_lacks_its_parts_in_order(tmp_path):
    assert lack(tmp_path) is Lack.CONFIG
    (tmp_path / "config.json").write_text("{}")
    assert lack(tmp_path) is Lack.WEIGHTS
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    assert lack(tmp_path) is Lack.TOKENIZER
    (tmp_path / "tokenizer_config.json").write_text("{}")
    assert lack(tmp_path) is None
    assert model_weights(tmp_path) == [tmp_path / "pytorch_model.bin"]


def test_sharded_weights_count_only_with_every_shard(tmp_path):
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": shards[0], "b": shards[1], "c": shards[1]}}))
    (tmp_path / shards[0]).write_bytes(b"")
    assert model_weights(tmp_path) == []  # shard 2 still downloading
    (tmp_path / shards[1]).write_bytes(b"")
    assert model_weights(tmp_path) == [tmp_path / name for name in shards]
    index.write_text("{cut")
    assert model_weights(tmp_path) == []
    index.write_text("[1, 2]")
    assert model_weights(tmp_path) == []


def test_an_adapter_folder_needs_its_weights(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    assert lack(tmp_path) is Lack.ADAPTER_WEIGHTS
    (tmp_path / "adapter_model.bin").write_bytes(b"")
    assert lack(tmp_path) is None


def test_find_folder_reads_the_cache_without_the_network(cache, tmp_path):
    snapshot = cache_snapshot(cache, "org/model", "config.json")
    assert find_folder("org/model") == snapshot
    assert not is_complete("org/model")  # an interrupted download
    for name in MODEL_FILES[1:]:
        (snapshot / name).write_text("{}")
    assert is_complete("org/model")
    assert find_folder(str(tmp_path)) == tmp_path
    for absent in ("org/other", "./org/model", "not a valid id!", ""):
        assert find_folder(absent) is None, absent


def test_find_folder_without_a_ref_or_its_snapshot(cache):
    snapshot = cache_snapshot(cache, "org/model", *MODEL_FILES)
    (snapshot.parents[1] / "refs" / "main").write_text("f" * 40)  # a commit not downloaded
    assert find_folder("org/model") is None
    (snapshot.parents[1] / "refs" / "main").unlink()
    assert find_folder("org/model") is None


def test_read_json_is_one_sentence(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"a":\n')
    with pytest.raises(ModelFileError) as caught:
        read_json(path)
    assert str(caught.value).startswith(f"{path} is not valid JSON (")
    assert "\n" not in str(caught.value)
