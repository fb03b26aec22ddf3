"""Benchmark ``geovlm serve``: concurrent clients on loopback against in-process classify.

Usage: ``python bench/serve.py [--requests 200] [--size 256] [--repeat 2] [--width 64]
[--depth 2] [--model-threads 1] [--connections 32]``.

Model: the tests' tiny random Qwen3-VL (``tests.tiny_models.build_qwen3_vl``, float32 on the
CPU), built into a temporary folder; nothing is downloaded. ``--width`` and ``--depth`` make
it bigger, so that a chip costs the model more next to what a request costs the server (HTTP,
JSON, base64, image decoding), as a real model's chip does. Chips: ``--requests`` chips of
``--size`` pixels cut from the real NAIP image of ``../shared/data`` (repeated in order when
more are asked for), sent as the remote backend sends them (lossless WebP,
``geovlm.backends.image_url``).

The model runs on ``--model-threads`` torch threads in both setups (this process's, and the
server's model process through ``OMP_NUM_THREADS``), one by default: one core stands in for
the GPU, which runs the model apart from the host's cores, and the host's work (the client,
HTTP, decoding, reading and writing) shares the other. With ``--model-threads 2`` the model's
threads take both cores, and the served setup's extra host work (the client and HTTP, which a
real deployment runs on other machines and cores) stalls them: a CPU-only effect.

1. **In-process**: a whole ``classify`` run (``classify_scenes``, the model loaded once; the
   NAIP scene in overlapping chips of ``--size``, a hundred or so; read, encoded, scored and
   written), the baseline the target is set against; and, as a harder baseline, the model
   alone: ``HFBackend.score`` of the preset's English answer forms over the chips in batches
   of 8, no tiling or writing.
2. **Served**: ``geovlm serve`` in a subprocess on 127.0.0.1 (``--max-batch 8`` then ``1``), and
   ``--requests`` concurrent ``POST /v1/classify`` requests of one chip each from one
   ``openai.AsyncOpenAI`` client (retries off, so every error counts) over at most
   ``--connections`` keep-alive connections. Printed: errors, p50 and
   p95 latency, chips/s and its ratio to the classify run (target >= 0.9 with batching), and the
   batching gain (chips/s at max-batch 8 over max-batch 1).

Both servers run at once (idle in turn); the three measurements are interleaved ``--repeat``
times and the best of each is printed, since this process, the servers and other processes
share the machine's cores (count and load printed).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))
NAIP = _ROOT.parent / "shared/data/geotiff/opengeos/m_4709963_se_14_1_20200831.tif"

from geovlm.backends.image_url import chip_url  # noqa: E402
from geovlm.labels.prompts import question  # noqa: E402
from geovlm.labels.verbalizer import Verbalizer  # noqa: E402


def _chips(n: int, size: int) -> list:
    from geovlm.scenes.tiling import SceneTiler, TilingOptions

    with SceneTiler(NAIP, TilingOptions(size, min_valid=0.0)) as tiler:
        chips = [chip.image for chip in tiler.chips()]
    return list(itertools.islice(itertools.cycle(chips), n))


def _in_process(model_dir: Path, chips: list):
    """A timer of in-process score mode over `chips` (the model loaded once)."""
    from geovlm.backends.hf import HFBackend

    backend = HFBackend.load(str(model_dir), quantize="none", device="cpu", batch_size=8)
    forms = [form.text for form in Verbalizer.default().forms("en")]
    backend.score(chips[:8], question("en"), forms)  # warm-up

    def timed() -> float:
        start = time.perf_counter()
        backend.score(chips, question("en"), forms)
        return len(chips) / (time.perf_counter() - start)

    return backend, timed


def _classify_run(model_dir: Path, backend: object, folder: Path, size: int):
    """A timer of a whole in-process ``classify`` run (model loaded once): chips/s written."""
    from geovlm.backends.base import ModelRun
    from geovlm.events.progress import ProgressMode
    from geovlm.pipeline.plan import RunOptions
    from geovlm.pipeline.run_scenes import one_scene
    from geovlm.scenes.tiling import TilingOptions
    from geovlm.tasks.classify import ClassifySettings, classify_scenes

    runs = iter(range(10**6))

    def timed() -> float:
        summary = classify_scenes(
            # Overlapping chips, so the small scene gives a hundred of them.
            one_scene(NAIP, TilingOptions(size, overlap=size * 3 // 4, min_valid=0.0)),
            RunOptions(folder / f"classify_{next(runs)}.gpkg", 8, ProgressMode.NONE),
            ModelRun(lambda: backend), ClassifySettings(),
        )
        return summary.written / summary.seconds

    return timed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(model_dir: Path, max_batch: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "geovlm.cli", "serve", "--model", str(model_dir), "--quantize",
         "none", "--device", "cpu", "--port", str(port), "--max-batch", str(max_batch),
         "--max-wait-ms", "5", "--max-queue", "1024"],
        env={**os.environ, "PYTHONPATH": str(_ROOT), "HF_HUB_OFFLINE": "1"},
    )
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server, f"http://127.0.0.1:{port}/v1"
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("geovlm serve did not start")


async def _burst(url: str, chips: list[str],
                 connections: int) -> tuple[int, list[float], float]:
    import httpx
    import openai

    # At most `connections` open at once, as a real client pools them: with one connection per
    # request the client's pool bookkeeping took more CPU than its requests on this machine.
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600,
                                http_client=openai.DefaultAsyncHttpxClient(limits=limits))

    async def one(chip: str) -> float | None:
        start = time.perf_counter()
        try:
            await client.post("/classify", cast_to=object, body={"images": [chip]})
        except openai.APIError:
            return None
        return time.perf_counter() - start

    await one(chips[0])  # warm-up
    start = time.perf_counter()
    latencies = await asyncio.gather(*(one(chip) for chip in chips))
    wall = time.perf_counter() - start
    await client.close()
    ok = [lat for lat in latencies if lat is not None]
    return len(chips) - len(ok), ok, wall


def _served(url: str, chips: list[str], connections: int) -> dict:
    errors, latencies, wall = asyncio.run(_burst(url, chips, connections))
    return {"errors": errors, "p50": float(np.percentile(latencies, 50)),
            "p95": float(np.percentile(latencies, 95)), "chips_s": len(chips) / wall}


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--width", type=int, default=64,
                        help="hidden size of the random model (64: the tests' tiny model)")
    parser.add_argument("--depth", type=int, default=2, help="layers of each tower")
    parser.add_argument("--connections", type=int, default=32,
                        help="HTTP connections the client keeps open for its requests")
    parser.add_argument("--model-threads", type=int, default=1,
                        help="torch threads of the model in both setups (1: a core as the GPU)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.model_threads)
    os.environ["OMP_NUM_THREADS"] = str(args.model_threads)  # the servers' model processes
    from tests.tiny_models import build_qwen3_vl

    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f};"
          f" model width {args.width}, depth {args.depth}, {torch.get_num_threads()} torch"
          " threads")
    images = _chips(args.requests, args.size)
    encoded = [chip_url(image) for image in images]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_qwen3_vl(Path(tmp) / "qwen3_vl", args.width, args.depth)
        backend, local = _in_process(model_dir, images)
        run = _classify_run(model_dir, backend, Path(tmp), args.size)
        servers = {batch: _start_server(model_dir, batch) for batch in (8, 1)}
        best: dict[str, float] = {}
        served: dict[int, dict] = {}
        errors = 0
        try:
            for _ in range(args.repeat):  # interleaved: the machine's load hits all alike
                best["local"] = max(best.get("local", 0.0), local())
                best["run"] = max(best.get("run", 0.0), run())
                for batch, (_, url) in servers.items():
                    result = _served(url, encoded, args.connections)
                    errors += result["errors"]
                    if result["chips_s"] > served.get(batch, {}).get("chips_s", 0.0):
                        served[batch] = result
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=30)
    print(f"in-process classify run, batch 8: {best['run']:.1f} chips/s (best of {args.repeat})")
    print(f"in-process model alone (score, batch 8): {best['local']:.1f} chips/s")
    for batch, result in served.items():
        print(f"serve --max-batch {batch}: {args.requests} concurrent requests, p50"
              f" {result['p50'] * 1000:.0f} ms, p95 {result['p95'] * 1000:.0f} ms,"
              f" {result['chips_s']:.1f} chips/s ({result['chips_s'] / best['run']:.2f}x the"
              f" classify run, {result['chips_s'] / best['local']:.2f}x the model alone)")
    print(f"errors in all bursts: {errors}")
    print(f"batching gain (max-batch 8 / 1): {served[8]['chips_s'] / served[1]['chips_s']:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
