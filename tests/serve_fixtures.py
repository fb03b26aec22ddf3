"""Session fixtures for ``geovlm serve``: the tiny Qwen3-VL served for real on loopback.

`LiveServer` runs uvicorn in a thread on a free port; tests talk to it with the official
``openai`` client and ``httpx``. The model loads once per session and is shared by every server.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from PIL import Image

API_KEY = "test-key-0123456789"


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def data_url(image: Image.Image, fmt: str = "PNG") -> str:
    """An image as a ``data:image/...;base64,`` URL."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def start_serve_process(model_dir: Path, name: str) -> SimpleNamespace:
    """``geovlm serve`` of `model_dir` as its own process, as a user runs it, once it answers.

    Its key comes from ``GEOVLM_API_KEY`` (`API_KEY`). Returns ``url`` (the API base),
    ``process`` and ``stderr``: what the server printed, complete once `stop_serve_process`
    returned (a thread reads it meanwhile, so the pipe never fills).
    """
    port = free_port()
    env = {**os.environ, "GEOVLM_API_KEY": API_KEY, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "geovlm.cli", "serve", "--model", str(model_dir),
         "--quantize", "none", "--device", "cpu", "--port", str(port),
         "--served-model-name", name],
        env=env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    running = SimpleNamespace(url=f"http://127.0.0.1:{port}/v1", process=process, stderr="",
                              _lines=lines, _reader=reader)
    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return running
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                stop_serve_process(running)
                pytest.fail(f"geovlm serve did not start: {running.stderr[-2000:]}")
            time.sleep(0.2)


def stop_serve_process(running: SimpleNamespace) -> None:
    """SIGTERM the server of `start_serve_process` unless it ended; wait for it to exit."""
    if running.process.poll() is None:
        running.process.send_signal(signal.SIGTERM)
    running.process.wait(timeout=30)
    running._reader.join(timeout=30)
    running.stderr = "".join(running._lines)


@contextmanager
def serve_process(model_dir: Path, name: str) -> Iterator[SimpleNamespace]:
    """`start_serve_process` for the block; stopped (SIGTERM) after it."""
    running = start_serve_process(model_dir, name)
    try:
        yield running
    finally:
        stop_serve_process(running)


@pytest.fixture(scope="session")
def _serve_processes() -> Iterator[dict[str, SimpleNamespace]]:
    """The session's ``geovlm serve`` processes by served name; stopped at its end."""
    running: dict[str, SimpleNamespace] = {}
    yield running
    for server in running.values():
        stop_serve_process(server)


@pytest.fixture()
def tiny_serve_process(qwen3_vl_dir: Path,
                       _serve_processes: dict[str, SimpleNamespace]) -> SimpleNamespace:
    """``geovlm serve`` of the tiny Qwen3-VL as its own process, serving it as ``tiny``.

    One process for the session's tests (it takes two imports of torch, here and in its model
    process, to start); started again if a test stopped it.
    """
    server = _serve_processes.get("tiny")
    if server is None or server.process.poll() is not None:
        server = _serve_processes["tiny"] = start_serve_process(qwen3_vl_dir, "tiny")
    return server


class LiveServer:
    """``geovlm serve``'s application under uvicorn in a thread; `stop` and `start` again."""

    def __init__(self, served: Any, port: int | None = None, **limits: Any) -> None:
        self.served = served
        self.port = port or free_port()
        self.limits = limits
        self.app: Any = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LiveServer:
        import uvicorn

        from geovlm.serve.app import create_app
        from geovlm.serve.settings import ServeSettings

        settings = ServeSettings(port=self.port, **self.limits)
        self.app = create_app(self.served, settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)

    @property
    def batcher(self) -> Any:
        return self.app.app.state.batcher


@pytest.fixture(scope="session")
def served_qwen3_vl(qwen3_vl_dir):
    """The tiny Qwen3-VL loaded once in this process as `geovlm.serve.app.ServedModel`.

    Its engine is `geovlm.serve.engine.ModelEngine` (float32, CPU), so servers start in
    milliseconds; ``geovlm serve`` itself runs the model in a process of its own
    (`serve_process`, `geovlm.serve.model_process`).
    """
    from geovlm.backends.choice import ModelChoice
    from geovlm.serve.app import ServedModel
    from geovlm.serve.engine import ModelEngine

    choice = ModelChoice.resolve(str(qwen3_vl_dir), quantize="none", device="cpu")
    return ServedModel(name="tiny", model_id=choice.preset.model_id,
                       engine=ModelEngine(choice.load_backend()),
                       verbalizer=choice.preset.answers, calibration=choice.calibration)


@pytest.fixture(scope="session")
def live_server(served_qwen3_vl) -> Iterator[LiveServer]:
    """A server with the default limits on loopback, with an API key."""
    server = LiveServer(served_qwen3_vl, api_key=API_KEY).start()
    yield server
    server.stop()
