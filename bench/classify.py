"""Benchmark chip classification: the seed card's one-chip-per-call loop against geovlm's backend.

Usage: ``python bench/classify.py [--chips N] [--batch-size B] [--repeat R] [--profile]
[--shape tiny|8b] [--quantize none 4bit] [--dry-run] [--skip-host]``.

Model: the tiny random Qwen3-VL of the tests (``tests.tiny_models.build_qwen3_vl``, ~0.5M
parameters, float32 on the CPU), built into a temporary folder; nothing is downloaded. Chips: the
81 chips of 512 px that ``../shared/data/geotiff/rasterio/cogeo.tif`` (1024², RGB uint8, a real
COG) gives with ``--size 512 --overlap 448``, repeated in order if ``--chips`` asks for more. Every
chip is a 256-token image (279 prompt tokens with the question), as the seed adapter sees one.

- **A, the seed card's way**: one chip per call with plain transformers, as LLaMA-Factory's
  ``ChatModel`` does: render the ``qwen3_vl_nothink`` prompt, ``processor(text, images)``,
  ``model.generate(max_new_tokens=16)``, decode.
- **B, geovlm generate**: ``HFBackend.generate`` over all chips in batches (the next batch is
  encoded in a thread while the model runs), ``max_new_tokens=16``.
- **C, geovlm score**: ``HFBackend.score`` of the six English label answers (one prefill per chip,
  then one forward over the candidates).

The random model may emit its end-of-turn token early, so A and B both run with no EOS token at
all: every answer is exactly 16 new tokens and both do the same decoding work (checked for A;
B's answers are compared to A's).

**Scene**: a full ``classify_scenes`` run (score mode, tiling, preprocessing, model, GeoPackage
writing, the model already loaded) over the same scene and tiling. The pipeline reads and encodes
batch k+1 on a background thread while the model scores batch k, and writes batch k-1 on another.
"Outside the model" is the wall time not spent in the backend's model calls (``score_encoded``:
the two forward passes, their rope positions and the log-probabilities): tiling, preprocessing
and writing that the overlap does not hide, plus set-up. The share outside the bare forward
passes (pre/post forward hooks on the model) is printed too.

Each timing is the best of ``--repeat`` runs (median also printed) after one warm-up batch. Other
processes share this machine's cores, so the load average is printed before and after.

**Host ceiling** (``bench/host_ceiling.py``, skipped with ``--skip-host``): the same
``classify_scenes`` with the model call replaced by an instant stand-in (real reading, resampling,
``HFBackend.encode`` and GeoPackage writing), at native resolution and at the preset's ``--gsd``
on a scene 4x finer, with and without overviews; see that module's docstring.

**Real size** (``--shape 8b``): A, B, C and the scene run with a randomly initialised model of
Qwen3-VL-8B's published dimensions (``bench/qwen3vl_8b.py``: 8.77 B parameters) built directly on
the GPU, in bf16 and with the language model in bitsandbytes NF4 (``--quantize``), paired with the
tiny model's processor (same image processing, a small vocabulary). It needs CUDA and refuses
without it; ``--shape 8b --dry-run`` only prints the configuration and its parameter count
(counted on the meta device, nothing allocated), which any machine can do. On a GPU machine::

    python bench/classify.py --shape 8b --quantize none 4bit --chips 64 --repeat 2 --skip-host

(about 18 GB of GPU memory in bf16, 6 GB in NF4; A is the slow part, one chip per call; about
5 minutes in all). The lent H200 machines (device tool) have torch and transformers but not
bitsandbytes: fetch its wheel here into the git-ignored ``.whl/`` (``pip download
bitsandbytes==0.50.2 --no-deps -d .whl``, 43 MB) and run, with ``carry=[".whl"]``::

    pip install -q --no-deps .whl/bitsandbytes-*.whl && python bench/classify.py --shape 8b \
        --quantize none 4bit --chips 64 --repeat 2 --skip-host

geovlm's own dependencies (rasterio, pyogrio, shapely, click, PyYAML) must import there too;
carry their wheels the same way where they are missing (``--quantize none`` alone needs no
bitsandbytes).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import itertools
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_HERE = Path(__file__).resolve()
sys.path.insert(0, str(_HERE.parents[1]))
sys.path.insert(0, str(_HERE.parent))

SCENE = _HERE.parents[2] / "shared/data/geotiff/rasterio/cogeo.tif"
SIZE, OVERLAP = 512, 448
NEW_TOKENS = 16
QUESTION = "What type of disaster occurred in this image?"
#: LLaMA-Factory's qwen3_vl_nothink rendering of one user turn with one image.
SEED_PROMPT = (
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>\n{q}<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def _timed(run: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Best and median wall seconds of ``repeat`` calls, and the last result."""
    seconds = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    return min(seconds), statistics.median(seconds), result


class _Clock:
    """Wall time spent inside some calls: a module's top-level forward, or wrapped functions."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def enter(self, *_: object) -> None:
        self._start = time.perf_counter()

    def leave(self, *_: object) -> None:
        self.seconds += time.perf_counter() - self._start

    def wrap(self, function: Callable) -> Callable:
        def timed(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def _seed_way(processor: Any, model: Any) -> Callable[[list], list[str]]:
    """One chip per call through processor + generate, written plainly with transformers."""
    import torch

    model.generation_config.eos_token_id = None  # always NEW_TOKENS tokens, as in B
    text = SEED_PROMPT.format(q=QUESTION)

    def run(images: list) -> list[str]:
        answers = []
        for image in images:
            inputs = processor(text=[text], images=[image], return_tensors="pt").to(model.device)
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
            new = out[:, inputs["input_ids"].shape[1] :]
            assert new.shape[1] == NEW_TOKENS, new.shape
            answers.append(processor.batch_decode(new, skip_special_tokens=True)[0].strip())
        return answers

    return run


def _profile(run: Callable[[], object], top: int = 14) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(top)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=81, help="chips per run (>= 64)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads for every run (default: torch's own)")
    parser.add_argument("--profile", action="store_true", help="print cProfile of B and C")
    parser.add_argument("--shape", choices=("tiny", "8b"), default="tiny",
                        help="the tiny test model on the CPU, or Qwen3-VL-8B's size on a GPU")
    parser.add_argument("--quantize", nargs="+", choices=("none", "4bit"),
                        default=["none", "4bit"], help="--shape 8b: bf16 and/or NF4 runs")
    parser.add_argument("--dry-run", action="store_true",
                        help="--shape 8b: print the configuration and parameter count only")
    parser.add_argument("--skip-host", action="store_true", help="no host-ceiling table")
    parser.add_argument("--host-repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=_HERE.parent / "out", help="scene cache")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    if args.shape == "8b" and not args.dry_run and not torch.cuda.is_available():
        print("--shape 8b needs a CUDA GPU (an 8B model in float32 on this CPU would take hours"
              " per run); add --dry-run to check its configuration here.", file=sys.stderr)
        sys.exit(2)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="geovlm-bench-classify-") as tmp:
        work = Path(tmp)
        if args.dry_run:
            _dry_run(work)
            return
        for label, seed, backend in _variants(args, work):
            _run(args, work, label, seed, backend, load_before)
            del seed, backend
        if args.shape == "tiny" and not args.skip_host:
            import host_ceiling

            host_ceiling.run(_tiny_backend(work, args.batch_size), work, args.out,
                             args.host_repeat, args.batch_size)


def _tiny_folder(work: Path) -> Path:
    from tests.tiny_models import build_qwen3_vl

    folder = work / "qwen3_vl"
    return folder if folder.exists() else build_qwen3_vl(folder)


def _tiny_backend(work: Path, batch_size: int) -> Any:
    from geovlm.backends.hf import HFBackend

    return HFBackend.load(
        str(_tiny_folder(work)), quantize="none", device="cpu", template="qwen3_vl_nothink",
        batch_size=batch_size,
    )


def _dry_run(work: Path) -> None:
    """Print the 8B configuration and its parameter count, allocating nothing."""
    import qwen3vl_8b
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(_tiny_folder(work))
    config = qwen3vl_8b.config_8b(qwen3vl_8b.token_ids(processor))
    count = qwen3vl_8b.parameter_count(config)
    text, vision = config.text_config, config.vision_config
    print(f"Qwen3-VL-8B shape: {count:,} parameters ({count / 1e9:.2f} B; bf16 weights"
          f" {2 * count / 2**30:.1f} GiB), counted on the meta device, nothing allocated")
    print(f"  text: {text.num_hidden_layers} layers, hidden {text.hidden_size}, heads"
          f" {text.num_attention_heads}/{text.num_key_value_heads} KV, head_dim {text.head_dim},"
          f" intermediate {text.intermediate_size}, vocab {text.vocab_size},"
          f" rope {text.rope_parameters}")
    print(f"  vision: depth {vision.depth}, hidden {vision.hidden_size}, heads {vision.num_heads},"
          f" intermediate {vision.intermediate_size}, patch {vision.patch_size}, merge"
          f" {vision.spatial_merge_size}, temporal {vision.temporal_patch_size}, out"
          f" {vision.out_hidden_size}, deepstack {list(vision.deepstack_visual_indexes)}")


def _variants(args: argparse.Namespace, work: Path) -> Iterator[tuple[str, Callable, Any]]:
    """(label, seed way, backend) per model measured; the previous one is freed before the next."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = _tiny_folder(work)
    processor = AutoProcessor.from_pretrained(folder)
    if args.shape == "tiny":
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
        yield "tiny fp32 CPU", _seed_way(processor, model), _tiny_backend(work, args.batch_size)
        return
    import qwen3vl_8b

    config = qwen3vl_8b.config_8b(qwen3vl_8b.token_ids(processor))
    for quantize in args.quantize:
        if quantize == "4bit" and importlib.util.find_spec("bitsandbytes") is None:
            print("4bit skipped: bitsandbytes is not installed (pip install bitsandbytes)")
            continue
        backend = qwen3vl_8b.backend(processor, config, "cuda", quantize, args.batch_size)
        yield (f"8B {'bf16' if quantize == 'none' else 'NF4'} CUDA",
               _seed_way(processor, backend.model), backend)
        del backend
        torch.cuda.empty_cache()


def _run(
    args: argparse.Namespace,
    work: Path,
    label: str,
    seed: Callable[[list], list[str]],
    backend: Any,
    load_before: tuple[float, float, float],
) -> None:
    """Time A, B, C and the scene run with one model, and print the table."""
    import torch
    import transformers

    from geovlm.backends.base import ModelRun
    from geovlm.events.progress import ProgressMode
    from geovlm.labels.prompts import Language, answers
    from geovlm.pipeline.plan import RunOptions
    from geovlm.pipeline.run_scenes import one_scene
    from geovlm.scenes.tiling import TilingOptions, iter_chips
    from geovlm.tasks.classify import ClassifySettings, classify_scenes

    folder = _tiny_folder(work)
    scene_chips = list(iter_chips(SCENE, SIZE, OVERLAP))
    images = [c.image for c in itertools.islice(itertools.cycle(scene_chips), args.chips)]
    n = len(images)
    candidates = list(answers(Language.EN).values())
    print(f"\n{label}: scene {SCENE.name} {SIZE} px overlap {OVERLAP}: {len(scene_chips)} chips;"
          f" {n} chips per run, batch {args.batch_size}, best of {args.repeat}; "
          f"torch {torch.__version__} threads {torch.get_num_threads()}, "
          f"transformers {transformers.__version__}")

    seed(images[:2])
    a_best, a_med, a_answers = _timed(lambda: seed(images), args.repeat)

    backend.model.generation_config.eos_token_id = None  # always NEW_TOKENS tokens, as in A
    prompts = [QUESTION] * n
    backend.generate(images[: args.batch_size], prompts[: args.batch_size], NEW_TOKENS)
    b_best, b_med, b_answers = _timed(
        lambda: backend.generate(images, prompts, NEW_TOKENS), args.repeat
    )
    backend.score(images[: args.batch_size], QUESTION, candidates)
    c_best, c_med, _ = _timed(lambda: backend.score(images, QUESTION, candidates), args.repeat)
    same = sum(x == y for x, y in zip(a_answers, b_answers, strict=True))

    # Where classify_scenes's time goes: model forwards (hooks), chip encoding (the backend's
    # encode, here serial: one backend batch per pipeline batch), and waiting for the tiler's
    # next chip (it reads a few chips ahead on its own threads; only the wait is counted).
    model_clock, call_clock = _Clock(), _Clock()
    hooks = [backend.model.register_forward_pre_hook(model_clock.enter),
             backend.model.register_forward_hook(model_clock.leave)]
    backend.score_encoded = call_clock.wrap(backend.score_encoded)
    scene_runs = []
    for i in range(args.repeat):
        for clock in (model_clock, call_clock):
            clock.seconds = 0.0
        start = time.perf_counter()
        summary = classify_scenes(
            one_scene(SCENE, TilingOptions(SIZE, OVERLAP)),
            RunOptions(work / f"scene{i}.gpkg", args.batch_size, ProgressMode.NONE),
            ModelRun(lambda: backend, {"model": str(folder), "quantize": "none"}),
            ClassifySettings(),
        )
        total = time.perf_counter() - start
        scene_runs.append((total, call_clock.seconds, model_clock.seconds, summary.written))
    del backend.score_encoded
    for hook in hooks:
        hook.remove()
    s_total, s_calls, s_forward, s_written = min(scene_runs)
    outside = (s_total - s_calls) / s_total
    load_after = os.getloadavg()

    rate_a = n / a_best
    rows = [
        ("A seed way, 1 chip/call, generate 16", a_best, a_med),
        (f"B geovlm generate 16, batch {args.batch_size}", b_best, b_med),
        (f"C geovlm score 6 EN answers, batch {args.batch_size}", c_best, c_med),
    ]
    print(f"\n{'run':46s} {'chips/s':>8s} {'median':>8s} {'x A':>6s}")
    for name, best, median in rows:
        print(f"{name:46s} {n / best:8.1f} {n / median:8.1f} {n / best / rate_a:6.2f}")
    print(f"B answers equal to A's: {same}/{n}")
    print(f"scene: classify_scenes score mode, {s_written} chips, best {s_total:.2f} s "
          f"({s_written / s_total:.1f} chips/s); outside the model {outside:.1%} (runs: "
          + ", ".join(f"{(r[0] - r[1]) / r[0]:.1%}" for r in scene_runs) + ")")
    print(f"  model calls {s_calls:.2f} s {s_calls / s_total:.1%}, of which forward passes "
          f"{s_forward:.2f} s; outside the bare forward passes "
          f"{(s_total - s_forward) / s_total:.1%}")
    print("load average before {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} {:.2f}".format(
        *load_before, *load_after))
    targets = [("C >= 2x A", n / c_best >= 2 * rate_a),
               ("B >= 1.5x A", n / b_best >= 1.5 * rate_a),
               ("outside model <= 10%", outside <= 0.10)]
    print("targets: " + "; ".join(f"{t} {'met' if ok else 'NOT met'}" for t, ok in targets))
    if args.profile:
        print(_profile(lambda: backend.generate(images, prompts, NEW_TOKENS)))
        print(_profile(lambda: backend.score(images, QUESTION, candidates)))


if __name__ == "__main__":
    main()
