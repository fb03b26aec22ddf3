"""``--endpoint`` without its ``/v1``: tried, recorded, or told in one sentence.

Against real loopback servers: ``geovlm serve``'s application (`live_server`) and a bare
``http.server`` that has no API (404 for every path, an HTML page under ``/html``).
"""

from __future__ import annotations

import http.server
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from geovlm.backends.openai import OpenAIBackend
from geovlm.cli import cli
from geovlm.errors import EndpointError
from tests.serve_fixtures import API_KEY

SCENE = "rasterio/RGB.byte.tif"


class _NoAPI(http.server.BaseHTTPRequestHandler):
    """404 for every path but ``/html/...``, a web page (200, no model list)."""

    def do_GET(self) -> None:
        if not self.path.startswith("/html/"):
            self.send_error(404)
            return
        body = b"<html><body>a web page</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def no_api() -> Iterator[str]:
    """The base URL of a loopback HTTP server without an OpenAI API."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=10)


def _classify(geotiff_dir, out, model, endpoint, *extra):
    args = ["classify", str(geotiff_dir / SCENE), "-o", str(out), "--model", str(model),
            "--size", "256", "--quantize", "none", "--device", "cpu", "--backend", "openai",
            "--endpoint", endpoint, *extra]
    return CliRunner().invoke(cli, args)


def test_an_endpoint_without_v1_runs_on_its_v1_and_records_it(
    live_server, qwen3_vl_dir, geotiff_dir, tmp_path, caplog,
):
    bare = live_server.url.removesuffix("/v1")
    out = tmp_path / "bare.gpkg"
    with caplog.at_level(logging.INFO, logger="geovlm.backends.endpoint"):
        result = _classify(geotiff_dir, out, qwen3_vl_dir, bare + "/", "--api-key", API_KEY)
    assert result.exit_code == 0, result.output
    assert f"using {live_server.url}" in caplog.text
    with sqlite3.connect(out) as db:
        parameters = json.loads(db.execute("SELECT parameters FROM runs").fetchone()[0])
    assert parameters["endpoint"].rstrip("/") == live_server.url


@pytest.mark.parametrize("path", ["", "/html"])
def test_no_api_is_one_sentence_that_suggests_v1(no_api, qwen3_vl_dir, geotiff_dir, tmp_path,
                                                path):
    url = no_api + path
    result = _classify(geotiff_dir, tmp_path / "x.gpkg", qwen3_vl_dir, url)
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"Error: no OpenAI-compatible API at {url}; did you mean {url}/v1?"]
    assert not (tmp_path / "x.gpkg").exists()


def test_no_api_at_a_v1_url_suggests_nothing(no_api, qwen3_vl_dir, geotiff_dir, tmp_path):
    url = f"{no_api}/v1"
    result = _classify(geotiff_dir, tmp_path / "x.gpkg", qwen3_vl_dir, url)
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"Error: no OpenAI-compatible API at {url}."]


def test_refer_takes_the_same_endpoint_rule(live_server, no_api, geotiff_dir, tmp_path):
    """refer's models connect as classify's do (its remote models only generate)."""
    remote = OpenAIBackend.connect(live_server.url.removesuffix("/v1"), api_key=API_KEY,
                                   method=None)
    assert remote.run_record()["endpoint"].rstrip("/") == live_server.url
    result = CliRunner().invoke(cli, [
        "refer", str(geotiff_dir / SCENE), "-o", str(tmp_path / "r.gpkg"), "--detect",
        "--backend", "openai", "--endpoint", no_api])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        f"Error: no OpenAI-compatible API at {no_api}; did you mean {no_api}/v1?"]
    with pytest.raises(EndpointError, match=r"API at \S+/v1\.$"):
        OpenAIBackend.connect(f"{no_api}/v1", method=None)
