"""Benchmark geovlm's tiler against the whole-scene read bound, torchgeo and a rasterio window loop.

Usage: ``python bench/tiling.py [--quick] [--out DIR]``.

The scene is a generated RGB uint8 GeoTIFF laid out like a COG delivery: 512x512 tiles, pixel
interleaved, DEFLATE with horizontal predictor (``--compress JPEG`` gives YCbCr JPEG q90 instead),
filled with smooth noise plus grain so it compresses about as well as real imagery (~1.4:1). Scenes
are cached under ``--out`` (default ``bench/out``, git-ignored).

Every measurement runs in a fresh subprocess, so each starts with a cold GDAL block cache (the OS
page cache is warm for all) and reports its own peak RSS (``ru_maxrss``; for torchgeo the largest
of the main process and its DataLoader workers). Timings are the best of ``--repeat`` runs and
include opening the scene; imports are not timed. Chips/s counts 512 px chips; the bound is one
single-threaded ``dataset.read()`` of the whole scene, expressed as (pixels / 512²) per second.

``--quick`` runs each timing once instead of ``--repeat`` times (about 30 s against about 50 s for
the full run on 2 cores); the first run of either also spends about a minute generating the scenes.
Wall-clock figures depend on what else the machine runs, so the CPU seconds (user + system, all
threads and worker processes) are printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

CHIP = 512
BLOCK = 512
#: Bumped when the generated scenes change, so stale cached scenes are rebuilt.
_SCENE_VERSION = "1"
_HERE = Path(__file__).resolve()


def _smooth_noise(side: int, rows: int, seed: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(row_off, strip)`` uint8 RGB strips (bands, rows, side) of one smooth-noise scene.

    A coarse random field (one value per 16 px) is bilinearly upsampled, then +-6 grain is added:
    smooth like land cover, noisy like a sensor, so DEFLATE gets a realistic ratio.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    step = 16
    n = side // step + 1
    coarse = [Image.fromarray(rng.normal(128, 40, (n, n)).astype(np.float32)) for _ in range(3)]
    for r0 in range(0, side, rows):
        box = (0.0, r0 / step, side / step, (r0 + rows) / step)
        planes = [np.asarray(c.resize((side, rows), Image.Resampling.BILINEAR, box=box))
                  for c in coarse]
        strip = np.stack(planes) + rng.integers(-6, 7, (3, rows, side), dtype=np.int8)
        yield r0, np.clip(strip, 0, 255).astype(np.uint8)


def make_scene(
    path: Path, side: int, compress: str, res: float = 0.5, overviews: bool = False
) -> Path:
    """Write (once) a ``side`` x ``side`` RGB uint8 tiled GeoTIFF and return its path.

    ``res`` is the pixel size in metres (UTM 18N); ``overviews`` adds internal overviews at
    2, 4, 8 and 16 (average), as a COG delivery has them.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    levels = [2, 4, 8, 16] if overviews else []
    if path.exists():
        with rasterio.open(path) as ds:
            if (ds.width == side and ds.tags().get("BENCH_SCENE") == _SCENE_VERSION
                    and ds.res[0] == res and ds.overviews(1) == levels):
                return path
    path.parent.mkdir(parents=True, exist_ok=True)
    profile: dict[str, object] = {
        "driver": "GTiff", "width": side, "height": side, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32618", "transform": from_origin(500000, 4500000, res, res),
        "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "interleave": "pixel",
        "compress": compress, "BIGTIFF": "IF_SAFER",
    }
    if compress == "JPEG":
        profile.update(photometric="YCBCR", jpeg_quality=90)
    else:
        profile.update(photometric="RGB", predictor=2)
    tmp = path.with_suffix(".part.tif")
    start = time.perf_counter()
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"), rasterio.open(tmp, "w", **profile) as dst:
        for r0, strip in _smooth_noise(side, BLOCK * 2):
            dst.write(strip, window=Window(0, r0, side, strip.shape[1]))
        dst.update_tags(BENCH_SCENE=_SCENE_VERSION)
    if levels:
        overview_options = {"COMPRESS_OVERVIEW": compress, "GDAL_NUM_THREADS": "ALL_CPUS"}
        if compress != "JPEG":
            overview_options["PREDICTOR_OVERVIEW"] = "2"
        with rasterio.Env(**overview_options), rasterio.open(tmp, "r+") as dst:
            dst.build_overviews(levels, Resampling.average)
    tmp.replace(path)
    mib = path.stat().st_size / 2**20
    print(f"  generated {path} ({side}² of {res} m, {compress}, overviews {levels or 'none'},"
          f" {mib:.0f} MiB) in"
          f" {time.perf_counter() - start:.0f} s", flush=True)
    return path


# --- measurements, each run in a fresh subprocess (``--child KIND PATH``) ----------------------


def _bound(path: str) -> int:
    import rasterio

    with rasterio.open(path) as ds:
        data = ds.read()
    return data.shape[1] * data.shape[2] // CHIP**2


def _geovlm(path: str) -> int:
    from geovlm.scenes.tiling import SceneTiler

    count = 0
    with SceneTiler(path) as tiler:
        for chip in tiler.chips():
            chip.image.getpixel((CHIP - 1, CHIP - 1))
            count += 1
    return count


def _window_loop(path: str) -> int:
    """What a user writes first: one window read per chip, in GDAL's default environment."""
    import rasterio
    from rasterio.windows import Window

    count = 0
    with rasterio.open(path) as ds:
        for row in range(0, ds.height - CHIP + 1, CHIP):
            for col in range(0, ds.width - CHIP + 1, CHIP):
                data = ds.read(window=Window(col, row, CHIP, CHIP))
                data[:, -1, -1].sum()
                count += 1
    return count


def _torchgeo(path: str) -> int:
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset, stack_samples
    from torchgeo.samplers import GridGeoSampler, Units

    dataset = RasterDataset(paths=[path])
    sampler = GridGeoSampler(dataset, size=CHIP, stride=CHIP, units=Units.PIXELS)
    loader = DataLoader(
        dataset, batch_size=1, sampler=sampler, num_workers=2, collate_fn=stack_samples
    )
    count = 0
    for batch in loader:
        batch["image"][0, :, -1, -1].sum()
        count += 1
    return count


_KINDS: dict[str, Callable[[str], int]] = {
    "bound": _bound,
    "geovlm": _geovlm,
    "torchgeo": _torchgeo,
    "window loop": _window_loop,
}


def _child(kind: str, path: str) -> None:
    if kind == "torchgeo":  # import outside the timed region, like the others
        import torchgeo.datasets  # noqa: F401
    import rasterio  # noqa: F401

    import geovlm.scenes.tiling  # noqa: F401

    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    chips = _KINDS[kind](path)
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime - cpu_before
    rss = max(own.ru_maxrss, workers.ru_maxrss) / 1024
    print(json.dumps({"seconds": seconds, "cpu": cpu, "chips": chips, "rss_mib": rss}))


def _run(kind: str, path: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(_HERE), "--child", kind, str(path)],
        capture_output=True, text=True, env=env, check=False, cwd=_HERE.parent.parent,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _torchgeo_version() -> str | None:
    proc = subprocess.run(
        [sys.executable, "-c", "import torchgeo; print(torchgeo.__version__)"],
        capture_output=True, text=True, check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def main(argv: list[str] | None = None) -> None:
    """Generate the scenes if needed, measure every reader and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per timing (< 1 min)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing, best kept")
    parser.add_argument("--out", type=Path, default=_HERE.parent / "out", help="scene cache")
    parser.add_argument("--compress", choices=("DEFLATE", "JPEG"), default="DEFLATE")
    parser.add_argument("--no-torchgeo", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--make", nargs=2, metavar=("PATH", "SIDE"), help=argparse.SUPPRESS)
    parser.add_argument("--res", type=float, default=0.5, help=argparse.SUPPRESS)
    parser.add_argument("--overviews", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child)
        return
    if args.make:
        make_scene(Path(args.make[0]), int(args.make[1]), args.compress, args.res, args.overviews)
        return
    repeat = 1 if args.quick else args.repeat
    suffix = args.compress.lower()
    small = args.out / f"scene_8192_{suffix}.tif"
    large = args.out / f"scene_16384_{suffix}.tif"
    for path, side in ((small, 8192), (large, 16384)):
        # In a subprocess: a child started later inherits ru_maxrss from the parent it was
        # forked from, so the parent must never hold a scene-sized buffer.
        subprocess.run([sys.executable, str(_HERE), "--compress", args.compress, "--make",
                        str(path), str(side)], check=True)

    kinds = ["bound", "geovlm", "window loop"]
    tg_version = None if args.no_torchgeo else _torchgeo_version()
    if tg_version:
        kinds.append("torchgeo")
    # Interleave the kinds across repeats, so a burst of load elsewhere hits all of them alike.
    best: dict[str, dict[str, float]] = {}
    rss_small: dict[str, float] = {}
    for _ in range(repeat):
        for kind in kinds:
            result = _run(kind, small)
            rss_small[kind] = max(rss_small.get(kind, 0.0), result["rss_mib"])
            if kind not in best or result["seconds"] < best[kind]["seconds"]:
                best[kind] = result
    rss_large = {kind: _run(kind, large)["rss_mib"] for kind in ("geovlm", "window loop")}

    bound = best["bound"]["chips"] / best["bound"]["seconds"]
    print(f"\n8192² RGB uint8, 512² tiles, {args.compress}; 512 px chips; best of {repeat};"
          f" {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    print(f"{'reader':<36}{'wall s':>7}{'cpu s':>7}{'chips/s':>9}{'x bound':>9}{'RSS 8k':>9}"
          f"{'RSS 16k':>9}{'16k/8k':>8}")
    labels = {
        "bound": "bound: dataset.read(), 1 thread",
        "geovlm": "geovlm SceneTiler.chips()",
        "window loop": "rasterio window loop, GDAL defaults",
        "torchgeo": f"torchgeo {tg_version} grid, 2 workers",
    }
    for kind in kinds:
        result = best[kind]
        rate = result["chips"] / result["seconds"]
        line = (f"{labels[kind]:<36}{result['seconds']:>7.2f}{result['cpu']:>7.2f}{rate:>9.0f}"
                f"{rate / bound:>8.2f}x{rss_small[kind]:>8.0f}M")
        if kind in rss_large:
            line += f"{rss_large[kind]:>8.0f}M{rss_large[kind] / rss_small[kind]:>8.2f}"
        print(line)
    geovlm = best["geovlm"]["chips"] / best["geovlm"]["seconds"]
    checks = [("geovlm >= 1.0x bound", geovlm >= bound),
              ("RSS 16k within 10% of 8k", rss_large["geovlm"] <= 1.1 * rss_small["geovlm"])]
    if tg_version:
        torchgeo = best["torchgeo"]["chips"] / best["torchgeo"]["seconds"]
        checks.insert(1, (f"geovlm >= 2x torchgeo ({geovlm / torchgeo:.1f}x)",
                          geovlm >= 2 * torchgeo))
    else:
        print("torchgeo: not importable in this environment; comparison skipped")
    print("targets: " + "; ".join(f"{name} {'OK' if ok else 'MISSED'}" for name, ok in checks))


if __name__ == "__main__":
    main()
