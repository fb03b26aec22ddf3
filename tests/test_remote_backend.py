"""``classify --backend openai`` against a live ``geovlm serve`` on loopback.

vLLM itself cannot run here: its protocol paths (``chat-logprobs``, ``prompt-logprobs``,
``chat-choice``) are tested against geovlm serve's chat completions endpoint, which speaks the
same protocol.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time

import numpy as np
import pyogrio
import pytest
from click.testing import CliRunner

from geovlm.backends.openai import OpenAIBackend, RemoteMethod
from geovlm.backends.prompt_logprobs import prompt_token_logprobs
from geovlm.cli import cli
from geovlm.errors import EndpointError
from geovlm.labels.prompts import DisasterLabel, Language, question
from geovlm.labels.verbalizer import Verbalizer
from tests.serve_fixtures import API_KEY, LiveServer, free_port
from tests.test_serve import _chips

SCENE = "rasterio/RGB.byte.tif"


def _classify(geotiff_dir, out, model, *extra):
    args = ["classify", str(geotiff_dir / SCENE), "-o", str(out), "--model", str(model),
            "--size", "256", "--quantize", "none", "--device", "cpu", *extra]
    return CliRunner().invoke(cli, args)


@pytest.fixture(scope="module")
def in_process(qwen3_vl_dir, geotiff_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("in_process") / "local.gpkg"
    result = _classify(geotiff_dir, out, qwen3_vl_dir, "--batch-size", "3")
    assert result.exit_code == 0, result.output
    return pyogrio.read_dataframe(out, layer="chips").sort_values("chip_id")


def _assert_same(frame, expected):
    frame = frame.sort_values("chip_id")
    assert list(frame["chip_id"]) == list(expected["chip_id"])
    assert list(frame["label"]) == list(expected["label"])
    assert list(frame["answer"]) == list(expected["answer"])
    for got, want in zip(frame["probs"], expected["probs"], strict=True):
        got, want = json.loads(got), json.loads(want)
        assert list(got) == list(want)
        np.testing.assert_allclose(list(got.values()), list(want.values()), atol=1e-4)


def _parameters(path):
    with sqlite3.connect(path) as db:
        return json.loads(db.execute("SELECT parameters FROM runs").fetchone()[0])


def test_remote_classify_equals_in_process(live_server, in_process, qwen3_vl_dir, geotiff_dir,
                                           tmp_path):
    out = tmp_path / "remote.gpkg"
    result = _classify(geotiff_dir, out, qwen3_vl_dir, "--backend", "openai", "--endpoint",
                       live_server.url, "--api-key", API_KEY, "--batch-size", "4")
    assert result.exit_code == 0, result.output
    _assert_same(pyogrio.read_dataframe(out, layer="chips"), in_process)
    parameters = _parameters(out)
    assert parameters["endpoint"].rstrip("/") == live_server.url
    assert parameters["served_model"] == "tiny"
    assert parameters["method"] == "geovlm-classify"
    assert parameters["backend"] == "openai"
    # The served model ran, not the preset's weights: those are not recorded as if they had.
    assert "model" not in parameters and "adapter" not in parameters
    assert parameters["preset"] and parameters["answers"]


def test_retries_recover_from_a_server_restarted_mid_run(
    served_qwen3_vl, in_process, qwen3_vl_dir, geotiff_dir, tmp_path,
):
    port = free_port()
    server = LiveServer(served_qwen3_vl, port=port, max_wait_ms=150).start()
    out = tmp_path / "restarted.gpkg"
    outcome = {}
    run = threading.Thread(target=lambda: outcome.update(result=_classify(
        geotiff_dir, out, qwen3_vl_dir, "--backend", "openai", "--endpoint", server.url,
        "--batch-size", "2", "--concurrency", "2")))
    run.start()
    deadline = time.monotonic() + 60
    while not server.batcher.batch_sizes and time.monotonic() < deadline:
        time.sleep(0.01)
    served_before = len(server.batcher.batch_sizes)
    server.stop()  # in-flight requests finish, new connections are refused
    time.sleep(1.5)
    server = LiveServer(served_qwen3_vl, port=port, max_wait_ms=150).start()
    run.join(timeout=120)
    server.stop()
    result = outcome["result"]
    assert result.exit_code == 0, result.output
    assert served_before < 5 and server.batcher.batch_sizes  # both servers did work
    frame = pyogrio.read_dataframe(out, layer="chips")
    assert frame["chip_id"].is_unique  # none twice
    _assert_same(frame, in_process)  # none lost


def test_unreachable_endpoint_is_one_sentence(qwen3_vl_dir, geotiff_dir, tmp_path):
    result = _classify(geotiff_dir, tmp_path / "x.gpkg", qwen3_vl_dir, "--backend", "openai",
                       "--endpoint", f"http://127.0.0.1:{free_port()}/v1")
    assert result.exit_code == 2 and "did not answer" in result.output
    assert not (tmp_path / "x.gpkg").exists()


def test_wrong_key_and_missing_endpoint_exit_2(live_server, qwen3_vl_dir, geotiff_dir, tmp_path):
    result = _classify(geotiff_dir, tmp_path / "x.gpkg", qwen3_vl_dir, "--backend", "openai",
                       "--endpoint", live_server.url, "--api-key", "wrong")
    assert result.exit_code == 2 and "API key" in result.output
    result = _classify(geotiff_dir, tmp_path / "x.gpkg", qwen3_vl_dir, "--backend", "openai")
    assert result.exit_code == 2 and "--endpoint" in result.output
    for endpoint in ("gpu-host:8000", "ftp://gpu-host/v1", "http:///v1"):
        result = _classify(geotiff_dir, tmp_path / "x.gpkg", qwen3_vl_dir, "--backend", "openai",
                           "--endpoint", endpoint)
        assert result.exit_code == 2 and "not an http(s) URL" in result.output
    assert not (tmp_path / "x.gpkg").exists()


def test_chat_choice_method_picks_the_likeliest_form(live_server, served_qwen3_vl):
    remote = OpenAIBackend.connect(live_server.url, api_key=API_KEY, method="chat-choice")
    assert remote.run_record()["method"] == "chat-choice"
    chips = _chips(3, seed=7)
    forms = [f.text for f in Verbalizer.default().forms("en")]
    rows = remote.score(chips, question("en"), forms)
    expected = served_qwen3_vl.engine.backend.score(chips, question("en"), forms)
    assert (rows.sum(axis=1) == 1).all() and set(np.unique(rows)) <= {0.0, 1.0}
    assert list(rows.argmax(axis=1)) == list(expected.argmax(axis=1))


def test_chat_logprobs_method_reads_first_token_probabilities(live_server):
    remote = OpenAIBackend.connect(live_server.url, api_key=API_KEY, method="chat-logprobs")
    image = _chips(1, seed=8)
    reply = remote._chat(remote.encode(image, ["?"]).images[0], question("en"), max_tokens=1,
                         logprobs=True, top_logprobs=20)
    top = [(t.token, t.logprob) for t in reply.choices[0].logprobs.content[0].top_logprobs]
    usable = [(t, lp) for t, lp in top if t.strip() and t == t.lstrip() and t.isprintable()]
    usable = [(t, lp) for t, lp in usable
              if not any(o != t and o.startswith(t) for o, _ in top)][:6]
    if len(usable) < 6:
        pytest.skip("the random model's top tokens are not six printable ones")
    mapping = {"en": {label.value: [f"{token} {label.value}"]
                      for label, (token, _) in zip(DisasterLabel, usable, strict=True)}}
    remote.verbalizer = Verbalizer.from_mapping(mapping)
    forms = [f.text for f in remote.verbalizer.forms("en")]
    (row,) = remote.score(image, question("en"), forms)
    weights = np.array([math.exp(lp) for _, lp in usable])
    np.testing.assert_allclose(row, weights / weights.sum(), atol=1e-9)


def test_chat_logprobs_refuses_forms_whose_first_tokens_collide(live_server):
    remote = OpenAIBackend.connect(live_server.url, api_key=API_KEY, method="auto",
                                   language="en")
    assert remote.method is RemoteMethod.GEOVLM_CLASSIFY  # geovlm serve is recognised
    remote.method = RemoteMethod.CHAT_LOGPROBS
    forms = [f.text for f in Verbalizer.default().forms("en")]  # "A fire ...", "A flooding ..."
    with pytest.raises(EndpointError, match="chat-choice"):
        remote.score(_chips(1), question("en"), forms)


def test_served_model_must_be_listed(live_server):
    assert OpenAIBackend.connect(live_server.url, api_key=API_KEY,
                                 served_model="tiny").served_model == "tiny"
    with pytest.raises(EndpointError, match="pass one of tiny"):
        OpenAIBackend.connect(live_server.url, api_key=API_KEY, served_model="xview2")


def test_prompt_logprobs_method_equals_in_process(live_server, in_process, qwen3_vl_dir,
                                                  geotiff_dir, tmp_path):
    out = tmp_path / "whole_forms.gpkg"
    result = _classify(geotiff_dir, out, qwen3_vl_dir, "--backend", "openai", "--endpoint",
                       live_server.url, "--api-key", API_KEY, "--batch-size", "4",
                       "--remote-method", "prompt-logprobs")
    assert result.exit_code == 0, result.output
    _assert_same(pyogrio.read_dataframe(out, layer="chips"), in_process)
    assert _parameters(out)["method"] == "prompt-logprobs"


def test_auto_scores_whole_forms_where_first_tokens_do_not_separate(live_server):
    remote = OpenAIBackend.connect(live_server.url, api_key=API_KEY, method="chat-choice")
    # Every form starts with "A": first tokens never tell the labels apart.
    remote.verbalizer = Verbalizer.from_mapping(
        {"en": {label.value: [f"A {label.value}."] for label in DisasterLabel}})
    assert remote._probe(Language.EN) is RemoteMethod.PROMPT_LOGPROBS


def test_a_reply_without_prompt_logprobs_is_an_endpoint_error(live_server):
    remote = OpenAIBackend.connect(live_server.url, api_key=API_KEY, method="chat-choice")
    with pytest.raises(EndpointError, match="chat-choice"):
        prompt_token_logprobs(remote._chat(None, "Hi", max_tokens=1))


@pytest.mark.parametrize(("entry", "weights"), [
    ({"owned_by": "geovlm", "root": "org/base", "adapter": "org/lora"}, ("org/base", "org/lora")),
    ({"owned_by": "geovlm", "root": "org/base", "adapter": None}, ("org/base", None)),
    ({"owned_by": "vllm", "root": "org/lora", "parent": "org/base"}, ("org/base", "org/lora")),
    ({"owned_by": "vllm", "root": "org/base", "parent": None}, ("org/base", None)),
    ({"owned_by": "someone"}, None),
    # A geovlm serve from before it named its adapter: unknown, not "no adapter".
    ({"owned_by": "geovlm", "root": "org/base"}, None),
    # vLLM's LoRA parent is its base's served id (an alias here), whose root names the weights.
    ({"owned_by": "vllm", "root": "org/lora", "parent": "qwen"}, ("org/base", "org/lora")),
])
def test_served_weights_read_geovlm_and_vllm_model_entries(entry, weights):
    from openai.types import Model

    from geovlm.backends.openai import ServedWeights

    base = Model(id="qwen", object="model", created=0, owned_by="vllm", root="org/base")
    got = ServedWeights.from_entry(Model(id="m", object="model", created=0, **entry),
                                   [base])
    assert (got if got is None else (got.base, got.adapter)) == weights


def _calibrated_preset(folder, model_dir, adapter):
    """A site preset of the tiny model with a calibration (and, if given, its adapter)."""
    import yaml

    from geovlm.labels.calibration import Calibration

    folder.mkdir(exist_ok=True)
    name = "cal-tiny" if adapter is None else "cal-tiny-lora"
    (folder / f"{name}.yaml").write_text(yaml.safe_dump({
        "name": name, "model_id": str(model_dir), "family": "qwen3_vl", "chip_size": 256,
        "supports_images": True, "calibration": Calibration(2.0, (0.0,) * 6).to_mapping(),
        **({"adapter_id": adapter} if adapter else {}),
    }))
    return name


def test_a_calibration_applies_on_a_server_only_to_its_own_model(
    live_server, qwen3_vl_dir, geotiff_dir, tmp_path, monkeypatch, caplog
):
    presets = tmp_path / "presets"
    monkeypatch.setenv("GEOVLM_PRESETS", str(presets))
    remote = ("--backend", "openai", "--endpoint", live_server.url, "--api-key", API_KEY)
    # The server runs the tiny model without an adapter: its own preset's calibration applies.
    same = _calibrated_preset(presets, qwen3_vl_dir, None)
    result = _classify(geotiff_dir, tmp_path / "same.gpkg", same, *remote)
    assert result.exit_code == 0, result.output
    parameters = _parameters(tmp_path / "same.gpkg")
    assert parameters["calibration"]["temperature"] == 2.0
    assert parameters["served_weights"] == str(qwen3_vl_dir)
    # A preset calibrated for an adapter the server does not run: not applied, and said so.
    other = _calibrated_preset(presets, qwen3_vl_dir, "org/adapter")
    with caplog.at_level("WARNING", logger="geovlm.backends.choice"):
        result = _classify(geotiff_dir, tmp_path / "other.gpkg", other, *remote)
    assert result.exit_code == 0, result.output
    assert "calibration" not in _parameters(tmp_path / "other.gpkg")
    assert "org/adapter" in caplog.text and "not applied" in caplog.text
