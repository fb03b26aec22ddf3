"""``geovlm damage`` in buildings/s: the crops, the host ceiling and the tiny model, side by side.

Run as ``python bench/damage.py [--per-side N] [--repeat R] [--out DIR]``.

Scene: rasterio's ``cogeo.tif`` (real imagery, Web Mercator, 0.47 m ground pixels, 512² tiles,
an internal mask), 1024² pixels; its pre-disaster twin is the same raster warped to UTM 54N at
0.8 m (another CRS, resolution and pixel grid, 256² tiles). Footprints: a grid of ``N x N``
(default 45: 2,025) 10 x 8 m rectangles written in WGS 84, so the crops (30 m with the default
10 m margin) overlap their neighbours as buildings of a dense town do. Each case runs as the
CLI runs it (`building_scene` then `damage_buildings`, a fresh GeoPackage each time):

- crops: every building's post (and pre) crop read, nothing else;
- host ceiling: the whole command with the model replaced by a zero-cost stand-in
  (`bench.host_ceiling.InstantModel`: the tiny Qwen3-VL's real ``encode``, uniform scores),
  so its rate is what this host can feed a model (target: >= 150 buildings/s, pre and post);
- tiny model: the whole command with the tiny Qwen3-VL scoring on the CPU.

Best of ``--repeat``; CPU ms/building (all threads) beside the wall rate. Other workers share
this machine, so the load average is printed before and after.

**Real size** (``--shape 8b``, a CUDA GPU): the whole command with a randomly initialised model
of Qwen3-VL-8B's published dimensions (``bench/qwen3vl_8b.py``) in bf16 and/or NF4 4-bit
(``--quantize none 4bit``), beside the crops and the host ceiling, e.g.::

    python bench/damage.py --shape 8b --per-side 16 --batch-size 16 --repeat 1
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

_HERE = Path(__file__).resolve()
sys.path.insert(0, str(_HERE.parents[1]))

TARGET = 150.0
DATA = _HERE.parents[2] / "shared" / "data"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _best(run: Callable[[], int], repeat: int) -> tuple[int, float, float]:
    """(buildings, seconds, CPU seconds) of the fastest of `repeat` runs."""
    best: tuple[int, float, float] | None = None
    for _ in range(repeat):
        cpu, start = _cpu(), time.perf_counter()
        count = run()
        timing = (count, time.perf_counter() - start, _cpu() - cpu)
        if best is None or timing[1] < best[1]:
            best = timing
    assert best is not None
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-side", type=int, default=45)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--shape", choices=("tiny", "8b"), default="tiny",
                        help="the model: the tiny Qwen3-VL on the CPU, or the 8B shape on CUDA")
    parser.add_argument("--quantize", nargs="+", choices=("none", "4bit"),
                        default=["none", "4bit"], help="--shape 8b: bf16 and/or NF4 runs")
    parser.add_argument("--batch-size", type=int, default=16, help="buildings per model call")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.shape == "8b" and not torch.cuda.is_available():
        print("--shape 8b needs a CUDA GPU (an 8B model in float32 on this CPU would take hours"
              " per run).", file=sys.stderr)
        sys.exit(2)

    from bench.host_ceiling import InstantModel
    from geovlm.backends.base import ModelRun
    from geovlm.backends.hf import HFBackend
    from geovlm.events.progress import ProgressMode
    from geovlm.pipeline.plan import RunOptions
    from geovlm.pipeline.run_scenes import building_scene
    from geovlm.scenes.scene import open_scene
    from geovlm.sources.building_crops import BuildingCrops, CropOptions, Footprints
    from geovlm.tasks.damage import DamageSettings, damage_buildings
    from tests import tiny_models
    from tests.damage_fixtures import POST, footprint_grid, warp_scene

    torch.set_num_threads(1)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-damage-"))
    out.mkdir(parents=True, exist_ok=True)
    post = DATA / "geotiff" / POST
    pre = warp_scene(post, out / "pre_utm54.tif")
    vector = footprint_grid(post, out / "footprints.gpkg", args.per_side)
    footprints = Footprints.from_vector(vector, open_scene(post))
    model_dir = tiny_models.build_qwen3_vl(out / "tiny_qwen3_vl")
    tiny = HFBackend.load(str(model_dir), quantize="none", device="cpu",
                          template="qwen3_vl_nothink")
    models = {"host ceiling": InstantModel(tiny),
              **(_models_8b(model_dir, args.quantize, args.batch_size) if args.shape == "8b"
                 else {"tiny model": tiny})}
    print(f"load average before: {os.getloadavg()[0]:.2f}; {len(footprints.ids)} buildings;"
          f" {os.cpu_count()} cores")
    print(f"{'case':<14} {'images':<9} {'buildings':>9} {'s':>7} {'buildings/s':>12}"
          f" {'CPU ms/b':>9}")
    runs = 0
    for images, pre_scene in (("post", None), ("pre+post", str(pre))):
        options = CropOptions(pre=pre_scene)

        def crops_only(options: CropOptions = options) -> int:
            with BuildingCrops(post, footprints, options) as crops:
                return sum(1 for _ in crops.items())

        cases: dict[str, Callable[[], int]] = {"crops": crops_only}
        for name, backend in models.items():
            def whole(backend: object = backend, options: CropOptions = options) -> int:
                nonlocal runs
                runs += 1
                summary = damage_buildings(
                    building_scene(post, footprints, options),
                    RunOptions(out / f"run{runs}.gpkg", progress=ProgressMode.NONE,
                               batch_size=args.batch_size),
                    ModelRun(lambda: backend, {"model": "bench"}), DamageSettings())
                return summary.written

            cases[name] = whole
        for name, run in cases.items():
            count, seconds, cpu = _best(run, args.repeat)
            rate = count / seconds
            mark = f"  (target {TARGET:.0f})" if name == "host ceiling" else ""
            print(f"{name:<14} {images:<9} {count:>9} {seconds:>7.2f} {rate:>12.1f}"
                  f" {1000 * cpu / count:>9.2f}{mark}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def _models_8b(tiny_folder: Path, quantize: list[str], batch_size: int) -> dict[str, object]:
    """The 8B shape on CUDA per ``--quantize`` (bf16 17.5 GiB and NF4 together fit an H100)."""
    from transformers import AutoProcessor

    from bench import qwen3vl_8b

    processor = AutoProcessor.from_pretrained(tiny_folder)
    config = qwen3vl_8b.config_8b(qwen3vl_8b.token_ids(processor))
    if "4bit" in quantize and importlib.util.find_spec("bitsandbytes") is None:
        print("4bit skipped: bitsandbytes is not installed (pip install bitsandbytes)")
        quantize = [q for q in quantize if q != "4bit"]
    return {f"8B {'bf16' if q == 'none' else 'NF4'}":
            qwen3vl_8b.backend(processor, config, "cuda", q, batch_size)
            for q in quantize}


if __name__ == "__main__":
    main()
