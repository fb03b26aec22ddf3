"""``refer --backend openai`` against ``geovlm serve`` on loopback, equal to in-process.

The server is a ``geovlm serve`` process of the tiny Qwen3-VL (its key from GEOVLM_API_KEY),
serving both roles here: rewrites (text-only chat messages) and captions or boxes (image and
text).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pyogrio
import pytest
from click.testing import CliRunner

from geovlm.cli import cli
from tests.serve_fixtures import API_KEY, free_port

SPACENET = "solaris/sample_geotiff.tif"
SPACENET_LABELS = "vector/solaris/geotiff_labels.geojson"
LOCAL = ("--quantize", "none", "--device", "cpu")


def _refer(*args: object) -> object:
    return CliRunner().invoke(cli, ["refer", *map(str, args)])


def _layers(path) -> dict[str, list[dict]]:
    """Both layers' rows (geometry as WKB), without the run's id, sorted by their ids."""
    layers = {}
    for layer, key in (("objects", "object_id"), ("chips", "chip_id")):
        frame = pyogrio.read_dataframe(path, layer=layer)
        rows = frame.drop(columns=["run_id", "geometry"]).assign(wkb=frame.geometry.to_wkb())
        layers[layer] = rows.sort_values(key).to_dict("records")
    return layers


def _parameters(path) -> dict:
    with closing(sqlite3.connect(path)) as db:
        return json.loads(db.execute("SELECT parameters FROM runs").fetchone()[0])


@pytest.fixture(scope="module")
def footprints_args(geotiff_dir):
    return (geotiff_dir / SPACENET, "--footprints", geotiff_dir.parent / SPACENET_LABELS,
            "--size", "448", "--batch-size", "4")


def test_remote_rewrites_and_captions_equal_in_process(tiny_serve_process, qwen3_vl_dir,
                                                       footprints_args, tmp_path):
    local, remote = tmp_path / "local.gpkg", tmp_path / "remote.gpkg"
    result = _refer(*footprints_args, "-o", local, "--rewrite-model", qwen3_vl_dir,
                    "--caption-model", qwen3_vl_dir, *LOCAL)
    assert result.exit_code == 0, result.output
    result = _refer(*footprints_args, "-o", remote, "--backend", "openai", "--endpoint",
                    tiny_serve_process.url, "--api-key", API_KEY, "--rewrite-model", "tiny",
                    "--caption-model", "tiny", "--concurrency", "3")
    assert result.exit_code == 0, result.output
    expected, got = _layers(local), _layers(remote)
    assert len(got["objects"]) == 43 and len(got["chips"]) == 9
    assert all(row["rewrite_rejected"] in (0, 1) for row in got["objects"])
    assert all(isinstance(row["caption"], str) for row in got["chips"])
    assert got == expected
    parameters = _parameters(remote)
    for role in ("rewrite_model", "caption_model"):
        record = parameters[role]
        assert record["backend"] == "openai" and record["served_model"] == "tiny"
        assert record["endpoint"].rstrip("/") == tiny_serve_process.url and "method" not in record
    assert _parameters(local)["caption_model"]["model"]  # in-process names the weights


def test_remote_detect_equals_in_process(tiny_serve_process, qwen3_vl_dir, geotiff_dir, tmp_path):
    # One batch of the 9 chips: each batch generates up to 512 tokens, here and on the server.
    args = (geotiff_dir / SPACENET, "--detect", "--size", "448", "--batch-size", "9")
    local, remote = tmp_path / "local.gpkg", tmp_path / "remote.gpkg"
    result = _refer(*args, "-o", local, "--caption-model", qwen3_vl_dir, *LOCAL)
    assert result.exit_code == 0, result.output
    # Without --caption-model, --detect takes the endpoint's first model; the key comes
    # from the environment.
    result = CliRunner(env={"GEOVLM_API_KEY": API_KEY}).invoke(cli, [
        "refer", *map(str, args), "-o", str(remote), "--backend", "openai",
        "--endpoint", tiny_serve_process.url])
    assert result.exit_code == 0, result.output
    got = _layers(remote)
    assert got == _layers(local) and len(got["chips"]) == 9
    assert sum(row["objects"] for row in got["chips"]) == len(got["objects"])
    assert _parameters(remote)["caption_model"]["served_model"] == "tiny"


def test_endpoint_refusals_exit_2_before_writing(tiny_serve_process, footprints_args, tmp_path):
    out = tmp_path / "never.gpkg"
    remote = ("-o", out, "--backend", "openai", "--endpoint", tiny_serve_process.url)
    cases = [
        ((*remote, "--api-key", "wrong", "--rewrite-model", "tiny"), "refused the API key"),
        ((*remote, "--api-key", API_KEY, "--caption-model", "xview2"),
         "does not serve 'xview2': pass one of tiny."),
        (("-o", out, "--backend", "openai", "--endpoint", f"http://127.0.0.1:{free_port()}/v1",
          "--rewrite-model", "tiny"), "did not answer"),
        (("-o", out, "--backend", "openai", "--rewrite-model", "tiny"), "needs --endpoint"),
        (("-o", out, "--endpoint", tiny_serve_process.url), "--endpoint needs --backend openai"),
    ]
    for args, message in cases:
        result = CliRunner(env={"GEOVLM_API_KEY": None}).invoke(
            cli, ["refer", *map(str, footprints_args), *map(str, args)])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and result.output.count("Error:") == 1
        assert "Traceback" not in result.output
        assert not out.exists()


def test_remote_text_only_answers_equal_in_process(tiny_serve_process, served_qwen3_vl):
    # Random weights seldom keep a rewrite's facts, so the layers above may hold rule texts
    # only: compare the raw text-only answers behind them too.
    from geovlm.backends.openai import OpenAIBackend
    from geovlm.labels.prompts import Language
    from geovlm.refer.rewriting import rewrite_prompt

    prompts = [rewrite_prompt(text, Language.EN) for text in
               ("the only building", "the large building in the north-west corner",
                "the destroyed building in the south")]
    remote = OpenAIBackend.connect(tiny_serve_process.url, api_key=API_KEY, method=None)
    assert remote.generate(None, prompts, 24) == served_qwen3_vl.engine.backend.generate(
        None, prompts, 24)


def test_the_server_stops_at_the_end_of_turn_like_in_process(qwen3_vl_dir):
    # A checkpoint whose generation config lists the tokenizer's EOS alone (as fine-tuned ones
    # often do), made to answer the end-of-turn token first: in-process generation stops there,
    # and so must the server's, or its answers run on.
    import openai
    import torch

    from geovlm.backends.choice import ModelChoice
    from geovlm.serve.app import ServedModel
    from geovlm.serve.engine import ModelEngine
    from tests.serve_fixtures import LiveServer

    backend = ModelChoice.resolve(str(qwen3_vl_dir), quantize="none",
                                  device="cpu").load_backend()
    end_of_turn = backend.tokenizer.convert_tokens_to_ids("<|im_end|>")
    backend.model.generation_config.eos_token_id = [backend.tokenizer.pad_token_id]
    boost = torch.zeros(backend.model.lm_head.out_features)
    boost[end_of_turn] = 1e4
    backend.model.lm_head.register_forward_hook(lambda module, inputs, logits: logits + boost)
    server = LiveServer(ServedModel("eot", str(qwen3_vl_dir), ModelEngine(backend),
                                    ModelChoice.resolve(str(qwen3_vl_dir)).preset.answers)).start()
    try:
        reply = openai.OpenAI(base_url=server.url, api_key="none").chat.completions.create(
            model="eot", messages=[{"role": "user", "content": "Rewrite this."}], max_tokens=8)
    finally:
        server.stop()
    assert backend.generate(None, ["Rewrite this."], 8) == [""]
    assert reply.choices[0].finish_reason == "stop" and reply.usage.completion_tokens == 1
    assert reply.choices[0].message.content == ""
