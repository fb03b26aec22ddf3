"""Benchmark an event run: one model load for many scenes, against a loop of single-scene runs.

Usage: ``python bench/events.py [--scenes 20] [--side 2048] [--size 512] [--engines local ray]``.

Scenes: ``--scenes`` GeoTIFFs of ``--side`` pixels square (RGB uint8, tiled, deflate), made in
a temporary folder from the real 5 m NAIP image of ``../shared/data`` (its 934 x 723 pixels
mirrored to fill the square), each shifted to its own place on the ground; every third scene is
warped to Web Mercator, so the event spans two CRSs and its layer is in EPSG:4326. Model: the
tests' tiny random Qwen3-VL (``tests.tiny_models.build_qwen3_vl``), float32 on the CPU; nothing
is downloaded. Chips of ``--size`` pixels at the scenes' own resolution (``--native-gsd``).

Every run is a whole ``geovlm classify`` command in its own process, as a user runs it:

1. **Loop**: one run per scene, each to its own GeoPackage (the model loads once per scene).
2. **Event**: one run over all scenes into one GeoPackage (the model loads once).
3. **Ray** (``--engines ... ray``, needs ``geovlm[ray]``): the event run with ``--engine ray``
   on a local cluster the run starts on this machine's cores.

Printed: each total, the loop/event ratio (target >= 2 for a tiny model whose load is a large
share), the model-load share of one single-scene run (a run over a scene of one chip, whose time
is almost all start-up and load), the ray/local ratio (target <= 1.3), and the peak RSS of the
event run's process over a quarter of the scenes and over all of them (it must not grow with the
number of scenes). Other processes share this machine's cores: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))
NAIP = _ROOT.parent / "shared/data/geotiff/opengeos/m_4709963_se_14_1_20200831.tif"

#: Runs the command given as arguments and prints its peak RSS (kB): the only child it waits for.
_PEAK_RSS = ("import resource, subprocess, sys;"
             "code = subprocess.run(sys.argv[1:]).returncode;"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr);"
             "sys.exit(code)")


def _make_scenes(folder: Path, count: int, side: int) -> list[Path]:
    """`count` scenes of `side` pixels from the NAIP image, shifted apart, some in Web Mercator."""
    import rasterio
    from rasterio.transform import Affine
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(NAIP) as src:
        pixels = src.read((1, 2, 3))
        crs, (res_x, res_y) = src.crs, src.res
        west, north = src.bounds.left, src.bounds.top
    reps = (1, -(-side // pixels.shape[1]) + 1, -(-side // pixels.shape[2]) + 1)
    tiled = np.tile(np.concatenate([pixels, pixels[:, :, ::-1]], axis=2), reps)[:, :side, :side]
    profile = {"driver": "GTiff", "count": 3, "dtype": "uint8", "width": side, "height": side,
               "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate"}
    scenes = []
    for index in range(count):
        transform = Affine(res_x, 0, west + index * side * res_x, 0, -res_y, north)
        path = folder / f"scene_{index:02d}.tif"
        with rasterio.open(path, "w", crs=crs, transform=transform, **profile) as dst:
            dst.write(tiled)
        if index % 3 == 2:  # warped to Web Mercator
            warped = folder / f"scene_{index:02d}_3857.tif"
            dst_transform, width, height = calculate_default_transform(
                crs, "EPSG:3857", side, side, *rasterio.transform.array_bounds(side, side,
                                                                              transform))
            with rasterio.open(path) as src, rasterio.open(
                warped, "w", crs="EPSG:3857", transform=dst_transform,
                **{**profile, "width": width, "height": height},
            ) as dst:
                for band in (1, 2, 3):
                    reproject(rasterio.band(src, band), rasterio.band(dst, band),
                              resampling=Resampling.bilinear)
            path.unlink()
            path = warped
        scenes.append(path)
    return scenes


def _classify(scenes: list[Path], out: Path, model: Path, size: int,
              extra: tuple[str, ...] = ()) -> tuple[float, int]:
    """Run ``geovlm classify`` in a fresh process: its wall time and peak RSS (kB)."""
    command = [sys.executable, "-m", "geovlm.cli", "classify", *map(str, scenes), "-o",
               str(out), "--model", str(model), "--size", str(size), "--native-gsd",
               "--quantize", "none", "--device", "cpu", "-q", *extra]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS, *command], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(_ROOT),
                                          "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"geovlm classify failed: {done.stderr[-2000:]}")
    return seconds, int(done.stderr.strip().splitlines()[-1])


def _one_chip_scene(folder: Path, size: int) -> Path:
    """A scene of exactly one chip: a run over it is start-up and model load."""
    import rasterio

    path = folder / "one_chip.tif"
    with rasterio.open(NAIP) as src:
        profile = {**src.profile, "width": size, "height": size, "count": 3,
                   "transform": src.window_transform(((0, size), (0, size)))}
        pixels = src.read((1, 2, 3), window=((0, size), (0, size)))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
    return path


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--engines", nargs="+", choices=("local", "ray"), default=["local"])
    args = parser.parse_args()
    from tests.tiny_models import build_qwen3_vl

    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = build_qwen3_vl(folder / "qwen3_vl")
        scenes = _make_scenes(folder, args.scenes, args.side)
        chips = args.scenes * (-(-args.side // args.size)) ** 2
        print(f"{args.scenes} scenes of {args.side}^2 px, about {chips} chips of"
              f" {args.size} px")

        one, _ = _classify([_one_chip_scene(folder, args.size)], folder / "one.gpkg", model,
                           args.size)
        loop = sum(_classify([scene], folder / f"loop_{n}.gpkg", model, args.size)[0]
                   for n, scene in enumerate(scenes))
        event, rss_all = _classify(scenes, folder / "event.gpkg", model, args.size)
        quarter = scenes[: max(1, len(scenes) // 4)]
        _, rss_quarter = _classify(quarter, folder / "quarter.gpkg", model, args.size)
        per_scene = loop / len(scenes)
        print(f"loop of single-scene runs: {loop:.1f} s ({per_scene:.2f} s per scene)")
        print(f"event run: {event:.1f} s; loop/event: {loop / event:.2f}x (target >= 2)")
        print(f"start-up and model load (a one-chip run): {one:.2f} s, {one / per_scene:.0%}"
              " of a single-scene run")
        print(f"event run peak RSS: {rss_quarter / 1024:.0f} MB over {len(quarter)} scenes,"
              f" {rss_all / 1024:.0f} MB over {len(scenes)}")
        if "ray" in args.engines:
            ray, _ = _classify(scenes, folder / "ray.gpkg", model, args.size,
                               ("--engine", "ray"))
            print(f"ray engine (local cluster): {ray:.1f} s; ray/local: {ray / event:.2f}x"
                  " (target <= 1.3)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
