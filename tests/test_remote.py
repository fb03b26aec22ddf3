"""A COG read over HTTP through GDAL's /vsicurl/, from a Range-capable server on loopback."""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path

import pytest

from geovlm.scenes.tiling import iter_chips


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one file with HTTP Range support, as object stores do for COGs."""

    payload: bytes = b""

    def do_HEAD(self) -> None:
        self._reply(self.payload, 200, body=False)

    def do_GET(self) -> None:
        match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if not match:
            self._reply(self.payload, 200)
            return
        start = int(match[1])
        end = int(match[2]) if match[2] else len(self.payload) - 1
        self._reply(self.payload[start : end + 1], 206,
                    extra={"Content-Range": f"bytes {start}-{end}/{len(self.payload)}"})

    def _reply(self, data: bytes, status: int, body: bool = True, extra=None) -> None:
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served_cog(geotiff_dir: Path):
    handler = type("Handler", (_RangeHandler,), {
        "payload": (geotiff_dir / "rasterio/cogeo.tif").read_bytes()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"/vsicurl/http://127.0.0.1:{server.server_port}/cogeo.tif"
    server.shutdown()


def test_vsicurl_cog_gives_the_same_chips_as_the_local_file(served_cog, geotiff_dir):
    remote = [(c.chip_id, c.image.tobytes(), c.footprint.wkt) for c in iter_chips(served_cog, 512)]
    local = [(c.chip_id, c.image.tobytes(), c.footprint.wkt)
             for c in iter_chips(geotiff_dir / "rasterio/cogeo.tif", 512)]
    assert remote == local and len(remote) == 4
