"""Benchmark ``geovlm refer``: unambiguous share on real xBD tiles, rewrites kept, time per object.

Usage: ``python bench/refer.py [--chip-size 512] [--dense 1000] [--batch-size 8]
[--scene-sizes 1000,3000,10000] [--no-rewrite]``.

1. **Unambiguous share, both contexts**: the post-disaster tiles of ``../shared/data/xbd/real``
   are georeferenced (``geovlm xbd georef``) into a temporary folder and every building gets its
   rule-based expression from its xBD label. Per tile: with ``--context chip`` (chips of
   ``--chip-size`` pixels) the objects whose expression denotes them alone in their chip, and
   the objects whose text another object of the same tile also has (the map problem); with
   ``--context scene`` the objects whose expression denotes them alone in the whole tile
   (checked: no two share a text). The SpaceNet and opengeos footprints follow.
2. **Time per 1,000 objects, rules only**: `geovlm.refer.rules.refer_chip` plus rendering, over
   the real xBD chips and over ``--dense`` synthetic objects in chips of 25, 50 and 100 objects
   (xBD's densest tiles hold about 100 buildings per 512 px chip); then
   `geovlm.refer.scene.refer_scene_objects` plus rendering over the real xBD tiles and over
   synthetic scenes of ``--scene-sizes`` objects at that density (100 per 256 x 256 m, random
   damage grades), with their unambiguous share.
3. **Time per 1,000 objects with the tiny rewrite model**: the tests' tiny random Gemma 3
   (``tests.tiny_models.build_gemma_text``, float32 on the CPU, nothing downloaded) rewrites the
   real xBD expressions, ``--batch-size`` chips a round, before (calls of 8 prompts, 48 new
   tokens) and after (`geovlm.refer.rewriting`: calls of 64 sorted by length, budgeted tokens), in
   the same run; the share of rewrites kept by the fact check is printed (a random model's junk is
   all rejected: the check works, not the model).

Figures depend on what else the machine runs; the machine's core count is printed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import astuple, dataclass
from pathlib import Path

_HERE = Path(__file__).resolve()
sys.path.insert(0, str(_HERE.parents[1]))

from geovlm.events.progress import ProgressMode  # noqa: E402
from geovlm.labels.damage import Damage  # noqa: E402
from geovlm.labels.prompts import Language  # noqa: E402
from geovlm.refer.phrases import Frame, Target  # noqa: E402
from geovlm.refer.rules import refer_chip  # noqa: E402
from geovlm.refer.scene import refer_scene_objects  # noqa: E402
from geovlm.refer.text import render  # noqa: E402
from geovlm.scenes.tiling import SceneTiler, TilingOptions, cell_footprints  # noqa: E402
from geovlm.sources.footprints import (  # noqa: E402
    SceneObjects,
    read_vector_objects,
    read_xbd_objects,
)
from geovlm.tasks.refer import scene_frame  # noqa: E402

DATA = _HERE.parents[2] / "shared" / "data"


def _chips(objects: SceneObjects, tiler: SceneTiler) -> list[tuple[Frame, list[Target]]]:
    cells = cell_footprints(tiler)
    return [
        (Frame(*cells[chip].bounds),
         [Target(o.object_id, o.polygon.centroid.x, o.polygon.centroid.y, o.polygon.area,
                 o.damage) for o in items])
        for chip, items in objects.by_chip().items()
    ]


def _share(chips: list[tuple[Frame, list[Target]]]) -> tuple[int, int]:
    total = unique = 0
    for frame, targets in chips:
        references = refer_chip(targets, frame)
        total += len(references)
        unique += sum(not r.ambiguous for r in references)
    return unique, total


@dataclass(frozen=True)
class _Contexts:
    """One scene's objects: unique in their chip, sharing a chip text, unique in the scene."""

    total: int
    chip_unique: int
    repeated: int
    repeated_texts: int
    scene_unique: int

    def __add__(self, other: _Contexts) -> _Contexts:
        return _Contexts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def line(self) -> str:
        return (f"chip {self.chip_unique:>4}/{self.total:<4} repeated in the scene"
                f" {self.repeated:>3} ({self.repeated_texts} texts)  scene"
                f" {self.scene_unique:>4}/{self.total:<4}")


def _contexts(chips: list[tuple[Frame, list[Target]]], frame: Frame) -> _Contexts:
    """Both contexts over one scene (its chips, and the scene's frame)."""
    texts = [render(r.phrase, Language.EN) for chip, targets in chips
             for r in refer_chip(targets, chip)]
    counts = Counter(texts)
    chip_unique = _share(chips)[0]
    references = refer_scene_objects([t for _, targets in chips for t in targets], frame)
    scene_texts = [render(r.phrase, Language.EN) for r in references if not r.ambiguous]
    assert len(set(scene_texts)) == len(scene_texts), "two scene expressions share a text"
    return _Contexts(len(texts), chip_unique, sum(n for n in counts.values() if n > 1),
                     sum(n > 1 for n in counts.values()), len(scene_texts))


def _scene(n: int, seed: int = 0) -> tuple[Frame, list[Target]]:
    """`n` random objects over a square scene at about 100 per 256 x 256 m."""
    rng = random.Random(seed)
    side = 256 * (n / 100) ** 0.5
    damages = [None, Damage.NO_DAMAGE, Damage.MINOR_DAMAGE, Damage.DESTROYED]
    return Frame(0, 0, side, side), [
        Target(str(i), rng.uniform(0, side), rng.uniform(0, side), rng.uniform(20, 400),
               rng.choice(damages)) for i in range(n)]


def _timed_scene(frame: Frame, targets: list[Target]) -> tuple[float, float]:
    """Seconds per 1,000 objects for scene expressions plus English text, and the share."""
    start = time.perf_counter()
    references = refer_scene_objects(targets, frame)
    for reference in references:
        render(reference.phrase, Language.EN)
    seconds = time.perf_counter() - start
    return 1000 * seconds / len(targets), sum(not r.ambiguous for r in references) / len(targets)


def _timed_rules(chips: list[tuple[Frame, list[Target]]], repeat: int = 3) -> float:
    """Best seconds per 1,000 objects for expressions plus English text."""
    count = sum(len(targets) for _, targets in chips)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for frame, targets in chips:
            for reference in refer_chip(targets, frame):
                render(reference.phrase, Language.EN)
        best = min(best, time.perf_counter() - start)
    return 1000 * best / count


def _dense(n: int, per_chip: int, seed: int = 0) -> list[tuple[Frame, list[Target]]]:
    rng = random.Random(seed)
    damages = [None, Damage.NO_DAMAGE, Damage.MINOR_DAMAGE, Damage.DESTROYED]
    chips = []
    for start in range(0, n, per_chip):
        chips.append((Frame(0, 0, 256, 256), [
            Target(str(i), rng.uniform(0, 256), rng.uniform(0, 256), rng.uniform(20, 400),
                   rng.choice(damages)) for i in range(start, min(n, start + per_chip))
        ]))
    return chips


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chip-size", type=int, default=512)
    parser.add_argument("--dense", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8, help="chips per rewrite round")
    parser.add_argument("--scene-sizes", default="1000,3000,10000",
                        help="objects of the synthetic scenes timed with --context scene")
    parser.add_argument("--no-rewrite", action="store_true", help="leave out measurement 3")
    args = parser.parse_args()
    tiling = TilingOptions(args.chip_size)
    print(f"cores: {os.cpu_count()}, chip size {args.chip_size} px")
    with tempfile.TemporaryDirectory() as tmp:
        from geovlm.tasks.xbd_georef import georeference_xbd

        georef = Path(tmp) / "xbd"
        georeference_xbd(DATA / "xbd/real", georef, phase="post", progress=ProgressMode.NONE)
        xbd_chips, xbd_scenes = [], []
        total: _Contexts | None = None
        print("\n1. unambiguous expressions, --context chip and --context scene")
        for image in sorted((georef / "images").glob("*.tif")):
            with SceneTiler(image, tiling) as tiler:
                objects = read_xbd_objects(DATA / "xbd/real/labels" / f"{image.stem}.json", tiler)
                chips, frame = _chips(objects, tiler), scene_frame(tiler)
            xbd_chips += chips
            xbd_scenes.append((frame, [t for _, targets in chips for t in targets]))
            found = _contexts(chips, frame)
            print(f"  {image.stem:<45} {found.line()}")
            total = found if total is None else total + found
        assert total is not None
        print(f"  real xBD, all tiles: {total.line()}")
        print(f"    = {100 * total.chip_unique / total.total:.1f} % unique in their chip,"
              f" {100 * total.scene_unique / total.total:.1f} % in their scene")
        for scene, vector, size in (
            ("geotiff/solaris/sample_geotiff.tif", "vector/solaris/geotiff_labels.geojson", 256),
            ("geotiff/opengeos/dsm.tif", "vector/opengeos/buildings.shp", 128),
        ):
            with SceneTiler(DATA / scene, TilingOptions(size, min_valid=0)) as tiler:
                chips = _chips(read_vector_objects(DATA / vector, tiler), tiler)
                frame = scene_frame(tiler)
            print(f"  {vector} ({size} px chips): {_contexts(chips, frame).line()}")

        print("\n2. rules only, seconds per 1,000 objects (best of 3)")
        print(f"  real xBD chips: {_timed_rules(xbd_chips):.3f} s")
        for per_chip in (25, 50, 100):
            chips = _dense(args.dense, per_chip)
            unique, total_n = _share(chips)
            print(f"  {args.dense} random objects, {per_chip} per chip:"
                  f" {_timed_rules(chips):.3f} s ({100 * unique / total_n:.1f} % unambiguous)")
        count = sum(len(targets) for _, targets in xbd_scenes)
        start = time.perf_counter()
        for frame, targets in xbd_scenes:
            refer_scene_objects(targets, frame)
        seconds = 1000 * (time.perf_counter() - start) / count
        print(f"  --context scene, real xBD tiles: {seconds:.3f} s")
        for n in (int(size) for size in args.scene_sizes.split(",") if size):
            seconds, share = _timed_scene(*_scene(n))
            print(f"  --context scene, random scene of {n} objects: {seconds:.3f} s"
                  f" ({100 * share:.1f} % unambiguous)")

        if not args.no_rewrite:
            print("\n3. with the tiny rewrite model")
            _rewrite_bench(xbd_chips, Path(tmp), args.batch_size)


def _rewrite_bench(chips: list[tuple[Frame, list[Target]]], tmp: Path, batch: int) -> None:
    """Seconds per 1,000 objects for the rewrite stage, the first author's way and today's.

    Both rewrite the same expressions, `batch` chips per round as ``refer --batch-size`` does.
    Before: the round's prompts in model calls of 8 (the vision batch size), 48 new tokens each.
    After: `geovlm.refer.rewriting.rewrite_expressions`: calls of 64 prompts sorted by length, each
    allowed about twice its longest rule text. The random model never ends its turn, so both
    run to their token limits; a real model stops at its end-of-turn token in both.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from geovlm.backends.hf import HFBackend
    from geovlm.refer.rewriting import rewrite_expressions, rewrite_prompt
    from geovlm.refer.text import keeps_facts
    from tests.tiny_models import build_gemma_text

    backend = HFBackend.load(str(build_gemma_text(tmp / "gemma")), quantize="none",
                             device="cpu", batch_size=8)
    rounds = []
    for start in range(0, len(chips), batch):
        phrases = [r.phrase for frame, targets in chips[start : start + batch]
                   for r in refer_chip(targets, frame)]
        rounds.append((phrases, [render(p, Language.EN) for p in phrases]))
    count = sum(len(texts) for _, texts in rounds)
    print(f"  {count} objects of {len(chips)} chips, {batch} chips a round,"
          f" torch threads {torch.get_num_threads()}")

    start = time.perf_counter()
    kept = 0
    for phrases, texts in rounds:
        answers = backend.generate(None, [rewrite_prompt(t, Language.EN) for t in texts], 48)
        kept += sum(keeps_facts(a, p, Language.EN) for a, p in zip(answers, phrases, strict=True))
    before = 1000 * (time.perf_counter() - start) / count
    print(f"  before (calls of 8, 48 tokens): {before:.1f} s per 1,000 objects,"
          f" {kept}/{count} rewrites kept")

    backend.batch_size = 64
    start = time.perf_counter()
    kept = 0
    for phrases, texts in rounds:
        rewrites = rewrite_expressions(backend, texts, phrases, Language.EN, batch_size=64)
        kept += sum(r is not None for r in rewrites)
    after = 1000 * (time.perf_counter() - start) / count
    print(f"  after (calls of 64 by length, budgeted tokens): {after:.1f} s per 1,000 objects,"
          f" {kept}/{count} rewrites kept; {before / after:.1f}x faster")


if __name__ == "__main__":
    main()
