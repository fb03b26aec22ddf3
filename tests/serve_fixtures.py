"""Session fixtures for ``geovlm serve``: the tiny Qwen3-VL served for real on loopback.

`LiveServer` runs uvicorn in a thread on a free port; tests talk to it with the official
``openai`` client and ``httpx``. The model loads once per session and is shared by every server.
"""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

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
    """The tiny Qwen3-VL loaded once as `geovlm.serve.app.ServedModel` (float32, CPU)."""
    from geovlm.model_choice import ModelChoice
    from geovlm.serve.app import ServedModel

    choice = ModelChoice.resolve(str(qwen3_vl_dir), quantize="none", device="cpu")
    return ServedModel(name="tiny", model_id=choice.preset.model_id,
                       backend=choice.load_backend(), verbalizer=choice.preset.answers,
                       calibration=choice.calibration)


@pytest.fixture(scope="session")
def live_server(served_qwen3_vl) -> Iterator[LiveServer]:
    """A server with the default limits on loopback, with an API key."""
    server = LiveServer(served_qwen3_vl, api_key=API_KEY).start()
    yield server
    server.stop()
