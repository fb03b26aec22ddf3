"""``geovlm serve``'s model in a process of its own: same answers, clear failures."""

from __future__ import annotations

import os
import signal
import time

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from geovlm.cli import cli
from geovlm.labels.prompts import question
from geovlm.serve.engine import GenerateKey, Prompt, ScoreKey
from tests.serve_fixtures import LiveServer


def _chips(n: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)) for _ in range(n)]


def _start(qwen3_vl_dir):
    from geovlm.backends.choice import ModelChoice
    from geovlm.serve.model_process import ModelProcess

    return ModelProcess(ModelChoice.resolve(str(qwen3_vl_dir), quantize="none", device="cpu"))


@pytest.fixture(scope="module")
def _model_processes():
    """The module's model processes, closed at its end."""
    started = []
    yield started
    for process in started:
        process.close()


@pytest.fixture()
def model_process(qwen3_vl_dir, _model_processes):
    """A model process on one torch thread, as this process's tests compute (the same sums).

    One for the module (each imports torch anew); started again if a test killed it.
    """
    if not _model_processes or not _model_processes[-1].alive:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("OMP_NUM_THREADS", "1")  # read by torch in the spawned child
            _model_processes.append(_start(qwen3_vl_dir))
    return _model_processes[-1]


def _run(engine, key, prompts):
    return engine.run(key, engine.prepare(key, prompts))


def test_batches_answer_as_in_this_process(model_process, served_qwen3_vl):
    local = served_qwen3_vl.engine
    assert model_process.supports_images
    rendered = model_process.chat.render(question("en"), image=True)
    assert rendered == local.chat.render(question("en"), image=True)
    prompts = [Prompt(rendered, chip) for chip in _chips(3, seed=5)]
    score = ScoreKey(rendered, ("fire", "flood", "wind"), True)
    # Two batches in flight at once, answered in the order sent.
    model_process.prepare(score, prompts)
    model_process.prepare(score, prompts[:1])
    first, second = model_process.run(score, None), model_process.run(score, None)
    np.testing.assert_allclose(np.stack(first), np.stack(_run(local, score, prompts)), atol=1e-6)
    np.testing.assert_allclose(second[0], first[0], atol=1e-6)
    generate = GenerateKey(6, 3, True)
    assert _run(model_process, generate, prompts) == _run(local, generate, prompts)


def test_a_failing_batch_fails_alone(model_process):
    rendered = model_process.chat.render(question("en"), image=True)
    unsendable = Prompt(rendered, lambda: None)  # type: ignore[arg-type]
    for _ in range(3):  # more than the batches in flight: none keeps its place
        with pytest.raises(Exception):  # noqa: B017 - pickle's error for a lambda
            model_process.prepare(ScoreKey(rendered, ("fire",), True), [unsendable])
    with pytest.raises(Exception):  # noqa: B017 - whatever the processor raises for no image
        _run(model_process, ScoreKey(rendered, ("fire",), True), [Prompt(rendered, None)])
    (row,) = _run(model_process, ScoreKey(rendered, ("fire", "flood"), True),
                  [Prompt(rendered, _chips(1, seed=6)[0])])
    assert row.sum() == pytest.approx(1)
    assert model_process.alive


def test_a_killed_model_process_is_reported_not_hung(model_process, served_qwen3_vl):
    from geovlm.serve.app import ServedModel

    process = model_process  # the module's: killed here, having answered the tests above
    server = LiveServer(ServedModel("tiny", "tiny", process, served_qwen3_vl.verbalizer)).start()
    try:
        os.kill(process._process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        health = httpx.get(server.url.removesuffix("/v1") + "/healthz")
        assert health.status_code == 503 and "exited" in health.json()["status"]
        reply = httpx.post(server.url + "/classify", timeout=30, json={"images": [
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
        ]})
        assert reply.status_code == 500
        assert "model process exited" in reply.json()["error"]["message"]
    finally:
        server.stop()


def test_a_load_failure_in_the_model_process_is_one_sentence(qwen3_vl_dir, tmp_path):
    result = CliRunner().invoke(cli, [
        "serve", "--model", str(qwen3_vl_dir), "--quantize", "none", "--device", "cpu",
        "--adapter", str(tmp_path / "no-adapter-here"), "--port", "0"])
    assert result.exit_code == 2, result.output
    assert "no-adapter-here" in result.output and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0
