"""``geovlm serve`` for real on loopback: the official ``openai`` client and raw HTTP."""

from __future__ import annotations

import base64
import io
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from click.testing import CliRunner
from PIL import Image

from geovlm.cli import cli
from geovlm.labels.prompts import DisasterLabel, Language, question
from geovlm.tasks.classify import ClassifySettings, scored_answers
from tests.serve_fixtures import API_KEY, LiveServer, data_url, stop_serve_process

LABELS = [label.value for label in DisasterLabel]


def _chips(n: int, size: int = 64, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            for _ in range(n)]


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _client(server: LiveServer, key: str = API_KEY, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=key, max_retries=0, **kwargs)


def _post(server: LiveServer, path: str, body: dict, key: str | None = API_KEY, **kwargs):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.url + path, json=body, headers=headers, **{"timeout": 30, **kwargs})


def _image_message(image: Image.Image, text: str = "What disaster is shown?") -> list[dict]:
    return [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(image)}},
        {"type": "text", "text": text},
    ]}]


def test_models_and_health(live_server):
    assert [m.id for m in _client(live_server).models.list().data] == ["tiny"]
    health = httpx.get(live_server.url.removesuffix("/v1") + "/healthz").json()
    assert health["status"] == "ok" and health["server"] == "geovlm"


def test_chat_with_an_image_is_deterministic(live_server):
    client = _client(live_server)
    image = _chips(1)[0]
    first = client.chat.completions.create(model="tiny", messages=_image_message(image),
                                           max_tokens=5)
    again = client.chat.completions.create(model="tiny", messages=_image_message(image),
                                           max_tokens=5)
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].finish_reason in ("stop", "length")
    assert 0 < first.usage.completion_tokens <= 5
    assert first.usage.prompt_tokens > 16  # the image's tokens count


def test_text_only_chat(live_server):
    reply = _client(live_server).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hello?"}], max_tokens=3)
    assert isinstance(reply.choices[0].message.content, str)


def test_logprobs_are_the_greedy_tokens_with_their_alternatives(live_server):
    reply = _client(live_server).chat.completions.create(
        model="tiny", messages=_image_message(_chips(1, seed=1)[0]), max_tokens=4,
        logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert content, "a generated token at least"
    assert "".join(entry.token for entry in content).strip() == reply.choices[0].message.content
    for entry in content:
        assert len(entry.top_logprobs) == 3
        assert entry.logprob <= 0
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-9)
        assert sum(math.exp(t.logprob) for t in entry.top_logprobs) <= 1 + 1e-9


def test_structured_outputs_choice_picks_a_choice(live_server):
    choices = ["Flood disaster", "Fire disaster", "Earthquake"]
    reply = _client(live_server).chat.completions.create(
        model="tiny", messages=_image_message(_chips(1, seed=2)[0]), logprobs=True,
        top_logprobs=3, extra_body={"structured_outputs": {"choice": choices}})
    assert reply.choices[0].message.content in choices
    (entry,) = reply.choices[0].logprobs.content
    assert sum(math.exp(t.logprob) for t in entry.top_logprobs) == pytest.approx(1, abs=1e-9)
    assert {t.token for t in entry.top_logprobs} == set(choices)


def test_guided_choice_is_refused_with_the_replacement(live_server):
    with pytest.raises(openai.BadRequestError, match="structured_outputs"):
        _client(live_server).chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}],
            extra_body={"guided_choice": ["a", "b"]})


def test_classify_equals_the_engine_score_mode(live_server, served_qwen3_vl):
    chips = _chips(3, seed=3)
    body = {"images": [_b64(c) for c in chips], "language": "ja", "forms": True}
    reply = _post(live_server, "/classify", body)
    assert reply.status_code == 200, reply.text
    result = reply.json()
    settings = ClassifySettings(Language.JA, verbalizer=served_qwen3_vl.verbalizer)
    forms = [f.text for f in settings.verbalizer.forms(Language.JA)]
    assert [f["text"] for f in result["forms"]] == forms
    expected = scored_answers(served_qwen3_vl.engine.backend.score(chips, question("ja"), forms),
                              settings)
    for got, want in zip(result["data"], expected, strict=True):
        assert list(got["probs"]) == LABELS
        assert got["label"] == want["label"] and got["answer"] == want["answer"]
        assert got["runner_up"] == want["runner_up"]
        for label, p in json.loads(want["probs"]).items():
            assert got["probs"][label] == pytest.approx(p, abs=1e-6)
        assert sum(got["form_probs"]) == pytest.approx(1, abs=1e-9)


def test_concurrent_requests_are_batched_with_unbatched_results(served_qwen3_vl):
    chips = _chips(8, seed=4)
    single = LiveServer(served_qwen3_vl, max_batch=1).start()
    batched = LiveServer(served_qwen3_vl, max_batch=8, max_wait_ms=500).start()
    try:
        def ask(server, chip):
            return _post(server, "/classify", {"images": [_b64(chip)], "forms": True},
                         key=None).json()["data"][0]["form_probs"]

        alone = [ask(single, chip) for chip in chips]
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda chip: ask(batched, chip), chips))
        assert max(batched.batcher.batch_sizes) > 1
        assert set(single.batcher.batch_sizes) == {1}
        np.testing.assert_allclose(together, alone, atol=1e-6)
    finally:
        single.stop()
        batched.stop()


def test_wrong_or_missing_key_is_401(live_server):
    with pytest.raises(openai.AuthenticationError):
        _client(live_server, key="wrong").models.list()
    assert _post(live_server, "/classify", {"images": ["x"]}, key=None).status_code == 401


def test_bad_images_are_400_with_the_reason(live_server):
    cases = {
        "not valid base64": "@@@",
        "not a readable image": base64.b64encode(b"not an image at all").decode(),
        "opens no URLs or paths": "/etc/passwd",
    }
    for reason, data in cases.items():
        reply = _post(live_server, "/classify", {"images": [data]})
        assert reply.status_code == 400 and reason in reply.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="opens no URLs"):
        _client(live_server).chat.completions.create(model="tiny", messages=[
            {"role": "user", "content": [{"type": "image_url",
                                          "image_url": {"url": "https://example.com/a.png"}}]}])


def test_limits_answer_413_and_oversized_images_400(served_qwen3_vl):
    server = LiveServer(served_qwen3_vl, max_body_bytes=20_000, max_images=2,
                        max_image_pixels=50 * 50).start()
    try:
        small = _b64(_chips(1, size=32)[0])
        assert _post(server, "/classify", {"images": [small] * 3}).status_code == 413
        big_body = {"images": [small], "padding": "x" * 30_000}
        assert _post(server, "/classify", big_body).status_code == 413
        reply = _post(server, "/classify", {"images": [_b64(_chips(1, size=64)[0])]})
        assert reply.status_code == 400 and "over the server's limit" in reply.text
        assert _post(server, "/classify", {"images": [small]}).status_code == 200
    finally:
        server.stop()


def test_full_queue_is_503_with_retry_after_and_a_leaving_client_frees_its_slot(
    served_qwen3_vl,
):
    server = LiveServer(served_qwen3_vl, max_queue=1, max_wait_ms=3000).start()
    body = {"images": [_b64(_chips(1)[0])]}
    try:
        with pytest.raises(httpx.ReadTimeout):  # waits for its batch; the client gives up
            _post(server, "/classify", body, timeout=0.5)
        deadline = time.monotonic() + 2
        while server.batcher.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.batcher.pending() == 0  # freed long before the 3 s wait ends
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(_post, server, "/classify", body)
            time.sleep(0.3)
            second = _post(server, "/classify", body)
            assert second.status_code == 503 and second.headers["Retry-After"] == "1"
            assert first.result().status_code == 200  # the server lives on
    finally:
        server.stop()


def test_timeout_is_504(served_qwen3_vl):
    server = LiveServer(served_qwen3_vl, timeout_s=0.2, max_wait_ms=2000).start()
    try:
        reply = _post(server, "/classify", {"images": [_b64(_chips(1)[0])]}, key=None)
        assert reply.status_code == 504 and "limit" in reply.json()["error"]["message"]
    finally:
        server.stop()


def test_non_loopback_bind_without_key_is_refused(monkeypatch):
    monkeypatch.delenv("GEOVLM_API_KEY", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--model", "/nowhere"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "--api-key" in result.output


@pytest.mark.parametrize("args", [["--max-batch", "0"], ["--port", "70000"], ["--bogus"]])
def test_wrong_arguments_exit_2(args):
    result = CliRunner().invoke(cli, ["serve", *args])
    assert result.exit_code == 2


def test_help():
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0 and "--max-wait-ms" in result.output


def test_serve_command_runs_and_stops_on_sigterm(tiny_serve_process):
    # The session's server (test_refer_remote.py's, if it ran): it stops, having served.
    running = tiny_serve_process
    client = openai.OpenAI(base_url=running.url, api_key=API_KEY)
    assert [m.id for m in client.models.list().data] == ["tiny"]
    with pytest.raises(openai.AuthenticationError):  # the key came from the environment
        openai.OpenAI(base_url=running.url, api_key="x").models.list()
    stop_serve_process(running)  # SIGTERM, and what it printed
    assert running.process.returncode == 0, running.stderr
    assert "Traceback" not in running.stderr
