"""`RayEngine` on a real local Ray cluster: the records of a local run, despite a killed worker.

One cluster (two CPUs) serves the whole module; actors load the tiny Qwen3-VL themselves. The
engine's run is shared by the tests that check it, since each pool of actors imports torch anew.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rasterio.crs import CRS

from geovlm.errors import DependencyError, DeviceError, EndpointError, InputError, ParameterError
from geovlm.pipeline.engines.local import batched
from geovlm.pipeline.engines.ray import RayEngine
from geovlm.pipeline.run_scenes import grid_opener
from geovlm.pipeline.work_items import ChipRecords, ChipSteps, ProcessedBatch, SceneWork
from geovlm.scenes.entry import SceneEntry
from geovlm.scenes.tiling import Chip, SceneTiler, TilingOptions
from tests.test_event_scenes import _warped

#: Two CRSs; the UTM warp of the Web Mercator COG has empty corners, left out by --min-valid.
TILING = TilingOptions(256, min_valid=0.5, nodata=0)
OPENER = grid_opener(TILING)
BATCH = 4


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A local two-CPU Ray cluster for the module, shut down at its end."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def scenes(geotiff_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[SceneWork]:
    """NAIP (UTM 14N) and the COG warped to UTM 31N, every chip of each to do."""
    warped = _warped(geotiff_dir / "rasterio" / "cogeo.tif",
                     tmp_path_factory.mktemp("ray") / "cogeo_utm31.tif", CRS.from_epsg(32631))
    work = []
    for key, path in (("naip", geotiff_dir / "opengeos" / "m_4709963_se_14_1_20200831.tif"),
                      ("warped", warped)):
        with SceneTiler(path, TILING) as tiler:
            ids = tuple(cell.chip_id for cell in tiler.cells)
        work.append(SceneWork(SceneEntry(str(path), key, {"source": key}), ids))
    return work


@pytest.fixture(scope="module")
def classify_setup(qwen3_vl_dir: Path) -> Callable[[], ChipSteps]:
    """Classify's setup of the tiny Qwen3-VL on the CPU (the model loads where it is called)."""
    from geovlm.backends.choice import ModelChoice
    from geovlm.tasks.classify import ClassifySettings, classify_task

    choice = ModelChoice.resolve(str(qwen3_vl_dir), quantize="none", device="cpu")
    return classify_task(choice.local_run(), ClassifySettings()).setup


def _dying_once(setup: Callable[[], ChipSteps], marker: Path) -> ChipSteps:
    """`setup`'s steps, whose first batch in the whole cluster kills its worker process."""
    steps = setup()

    def process(chips: list[Chip], prepared: Any) -> ChipRecords:
        try:
            with marker.open("x") as file:
                file.write(str(os.getpid()))
        except FileExistsError:
            return steps.process(chips, prepared)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable: the worker is dead")

    return dataclasses.replace(steps, process=process)


@pytest.fixture(scope="module")
def ray_run(
    ray_cluster: Any, scenes: list[SceneWork], classify_setup: Callable[[], ChipSteps],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[ProcessedBatch], Path]:
    """The engine's batches over both scenes with two actors, one of them killed once."""
    marker = tmp_path_factory.mktemp("ray-kill") / "killed.pid"
    with RayEngine(actors=2) as engine:
        engine.start(functools.partial(_dying_once, classify_setup, marker))
        batches = list(engine.processed(scenes, OPENER, BATCH))
    assert ray_cluster.is_initialized()  # the engine leaves a cluster it did not start
    return batches, marker


@pytest.fixture(scope="module")
def local_run(
    scenes: list[SceneWork], classify_setup: Callable[[], ChipSteps]
) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, Any], int]:
    """The same steps in this process over `SceneTiler.chips`: records, footprints, skips."""
    steps = classify_setup()
    records, footprints, skipped = {}, {}, 0
    for item in scenes:
        with SceneTiler(item.scene.path, TILING) as tiler:
            for batch in batched(tiler.chips(), BATCH):
                for chip, record in zip(batch, steps.process(batch, steps.prepare(batch)).chips,
                                        strict=True):
                    records[item.scene.key, chip.chip_id] = record
                    footprints[item.scene.key, chip.chip_id] = chip.footprint
            skipped += tiler.skipped_invalid
    return records, footprints, skipped


def test_ray_gives_the_records_of_a_local_run_despite_a_killed_worker(
    ray_run: tuple[list[ProcessedBatch], Path], local_run: Any, scenes: list[SceneWork]
) -> None:
    batches, _ = ray_run
    local_records, local_footprints, local_skipped = local_run
    got = {}
    for batch in batches:
        assert batch.scene in [item.scene for item in scenes]
        assert len(batch.footprints) == len(batch.records.chips) <= BATCH
        for footprint, record in zip(batch.footprints, batch.records.chips, strict=True):
            key = (batch.scene.key, record["chip_id"])
            assert key not in got, f"{key} came back twice"
            got[key] = record
            assert footprint.equals_exact(local_footprints[key], 1e-9)
    assert got.keys() == local_records.keys()
    assert sum(batch.skipped_invalid for batch in batches) == local_skipped > 0
    assert len(got) + local_skipped == sum(len(item.item_ids) for item in scenes)
    for key, record in got.items():
        local = local_records[key]
        assert record["label"] == local["label"]
        assert record["runner_up"] == local["runner_up"]
        assert record["confidence"] == pytest.approx(local["confidence"], abs=1e-5)
        probs, local_probs = json.loads(record["probs"]), json.loads(local["probs"])
        assert probs.keys() == local_probs.keys()
        assert all(probs[label] == pytest.approx(p, abs=1e-5) for label, p in local_probs.items())
    crs = {batch.scene.key: batch.crs for batch in batches}
    assert crs == {"naip": CRS.from_epsg(26914), "warped": CRS.from_epsg(32631)}


def test_the_killed_worker_was_one_of_the_pool(ray_run: tuple[list[ProcessedBatch], Path]) -> None:
    _, marker = ray_run
    pid = int(marker.read_text())
    assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _plain_steps() -> ChipSteps:
    """Steps without a model: one record per chip."""
    return ChipSteps(prepare=len, process=lambda chips, _: ChipRecords(
        [{"chip_id": chip.chip_id} for chip in chips]))


def test_a_worker_error_comes_back_as_the_users_error(
    ray_cluster: Any, scenes: list[SceneWork]
) -> None:
    wrong = SceneWork(scenes[0].scene, ("r0000_c0000", "r9999_c9999"))
    with RayEngine(actors=1) as engine:
        engine.start(_plain_steps)
        with pytest.raises(InputError, match="r9999_c9999 on this Ray worker"):
            list(engine.processed([wrong], OPENER, BATCH))


def _refusing_setup() -> ChipSteps:
    raise DeviceError("--device cuda asks for a GPU but this machine has none; pick --device cpu.")


def test_a_setup_refused_on_the_workers_comes_back_as_the_users_error(
    ray_cluster: Any, scenes: list[SceneWork]
) -> None:
    with RayEngine(actors=1) as engine:
        engine.start(_refusing_setup)
        with pytest.raises(DeviceError, match="this machine has none"):
            list(engine.processed(scenes, OPENER, BATCH))


def test_a_pool_larger_than_the_cluster_is_refused(
    ray_cluster: Any, scenes: list[SceneWork]
) -> None:
    for engine, words in ((RayEngine(actors=3), "need a CPU each"),
                          (RayEngine(gpus_per_actor=1), "GPUs but the cluster has 0")):
        engine.start(_plain_steps)
        with pytest.raises(ParameterError, match=words):
            next(engine.processed(scenes, OPENER, BATCH))
    with pytest.raises(ParameterError, match="at least 1"):
        RayEngine(actors=0)


def test_an_address_nothing_listens_on_is_refused_at_once() -> None:
    start = time.perf_counter()
    with pytest.raises(EndpointError, match=r"no Ray cluster answers at 127\.0\.0\.1:1"):
        RayEngine("127.0.0.1:1")
    assert time.perf_counter() - start < 10


def test_without_ray_installed_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(DependencyError, match=r"pip install 'geovlm\[ray\]'"):
        RayEngine()


def _classify_cli(model: Path, out: Path, *scenes: object, extra: tuple[str, ...] = ()) -> Any:
    from click.testing import CliRunner

    from geovlm.cli import cli

    args = ["classify", *map(str, scenes), "-o", str(out), "--model", str(model), "--size",
            "256", "--native-gsd", "--nodata", "0", "--batch-size", str(BATCH), "--quantize",
            "none", "--device", "cpu", "--progress", "json", *extra]
    return CliRunner().invoke(cli, args)


def test_classify_with_engine_ray_writes_the_records_of_engine_local(
    ray_cluster: Any, qwen3_vl_dir: Path, scenes: list[SceneWork], tmp_path: Path
) -> None:
    import pyogrio

    paths = [item.scene.path for item in scenes]
    layers, done = {}, {}
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.gpkg"
        result = _classify_cli(qwen3_vl_dir, out, *paths, extra=("--engine", engine))
        assert result.exit_code == 0, result.output
        done[engine] = json.loads(result.output.splitlines()[-1])
        layers[engine] = (pyogrio.read_dataframe(out, layer="chips")
                          .sort_values("scene_chip_id").reset_index(drop=True))
    local, ray = layers["local"], layers["ray"]
    assert done["ray"]["written"] == done["local"]["written"] == len(local) > 0
    assert done["ray"]["skipped_invalid"] == done["local"]["skipped_invalid"] > 0
    assert list(ray["scene_chip_id"]) == list(local["scene_chip_id"])
    assert set(ray["scene"]) == {str(Path(path).resolve()) for path in paths}
    for column in ("chip_id", "row", "col", "label", "runner_up", "answer", "language"):
        assert list(ray[column]) == list(local[column]), column
    assert ray["confidence"].to_numpy() == pytest.approx(local["confidence"].to_numpy(),
                                                          abs=1e-5)
    assert ray.geometry.geom_equals_exact(local.geometry, 1e-9).all()


def test_damage_with_engine_ray_writes_the_rows_of_engine_local(
    ray_cluster: Any, qwen3_vl_dir: Path, geotiff_dir: Path, tmp_path: Path
) -> None:
    """Buildings as work items: one actor crops (pre and post) and grades them as here."""
    import pyogrio
    from click.testing import CliRunner

    from geovlm.cli import cli
    from tests.damage_fixtures import POST, footprint_grid, warp_scene

    post = geotiff_dir / POST
    pre = warp_scene(post, tmp_path / "pre.tif")
    vector = footprint_grid(post, tmp_path / "fp.gpkg", 3)
    layers, done = {}, {}
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.gpkg"
        result = CliRunner().invoke(cli, [
            "damage", str(post), "-o", str(out), "--footprints", str(vector), "--pre", str(pre),
            "--model", str(qwen3_vl_dir), "--quantize", "none", "--device", "cpu",
            "--batch-size", "4", "--progress", "json", "--engine", engine,
            *(("--ray-actors", "1") if engine == "ray" else ())])
        assert result.exit_code == 0, result.output
        done[engine] = json.loads(result.output.splitlines()[-1])
        layers[engine] = (pyogrio.read_dataframe(out, layer="buildings")
                          .sort_values("object_id").reset_index(drop=True))
    local, ray = layers["local"], layers["ray"]
    assert done["ray"]["written"] == done["local"]["written"] == len(local) > 0
    assert done["ray"]["footprints"] == done["local"]["footprints"]
    assert done["ray"]["post_only"] == done["local"]["post_only"]
    for column in ("object_id", "damage", "runner_up", "answer", "images", "scene"):
        assert list(ray[column]) == list(local[column]), column
    for column in ("confidence", "runner_up_confidence", "valid_fraction",
                   "pre_valid_fraction"):
        assert ray[column].to_numpy() == pytest.approx(local[column].to_numpy(), abs=1e-5)
    assert ray.geometry.geom_equals_exact(local.geometry, 1e-9).all()


def test_engine_options_are_checked_before_anything_loads(
    qwen3_vl_dir: Path, scenes: list[SceneWork], tmp_path: Path
) -> None:
    out = tmp_path / "refused.gpkg"
    scene = scenes[0].scene.path
    result = _classify_cli(qwen3_vl_dir, out, scene, extra=("--ray-actors", "2"))
    assert result.exit_code == 2 and "need --engine ray" in result.output
    result = _classify_cli(qwen3_vl_dir, out, scene,
                           extra=("--engine", "ray", "--ray-address", "127.0.0.1:1"))
    assert result.exit_code == 2 and "no Ray cluster answers at 127.0.0.1:1" in result.output
    assert not out.exists()


def test_a_task_that_needs_its_steps_here_is_refused_with_ray(
    ray_cluster: Any, scenes: list[SceneWork], tmp_path: Path
) -> None:
    from geovlm.output.fields import FieldType, LayerSpec
    from geovlm.pipeline.driver import run_over_chips
    from geovlm.pipeline.plan import ChipTask, RunOptions
    from geovlm.pipeline.run_scenes import one_scene
    from geovlm.tasks.tile import CHIP_FIELDS

    with pytest.raises(ParameterError, match="refer needs its steps in this process"):
        run_over_chips(
            one_scene(scenes[0].scene.path, TILING),
            ChipTask(command="refer", parameters={}, layer="objects",
                     fields={"object_id": FieldType.STRING}, style_qml="", setup=_plain_steps,
                     id_field="object_id", chip_layer=LayerSpec("chips", CHIP_FIELDS, "")),
            RunOptions(tmp_path / "objects.gpkg", engine=RayEngine()),
        )
    assert not (tmp_path / "objects.gpkg").exists()  # refused before the output is made


def test_ray_actors_feed_a_model_server_with_backend_openai(
    ray_cluster: Any, qwen3_vl_dir: Path, scenes: list[SceneWork], live_server: Any,
    local_run: Any, tmp_path: Path,
) -> None:
    import pyogrio

    from tests.serve_fixtures import API_KEY

    out = tmp_path / "served.gpkg"
    result = _classify_cli(qwen3_vl_dir, out, *[item.scene.path for item in scenes], extra=(
        "--engine", "ray", "--backend", "openai", "--endpoint", live_server.url,
        "--api-key", API_KEY))
    assert result.exit_code == 0, result.output
    layer = pyogrio.read_dataframe(out, layer="chips")
    keys = {item.scene.key: str(Path(item.scene.path).resolve()) for item in scenes}
    expected = {f"{keys[key]}|{chip_id}" for key, chip_id in local_run[0]}
    assert set(layer["scene_chip_id"]) == expected and layer["scene_chip_id"].is_unique
    assert layer["confidence"].between(0, 1).all()


def test_blocks_of_several_rows_give_every_chip_once(
    ray_cluster: Any, scenes: list[SceneWork], monkeypatch: pytest.MonkeyPatch
) -> None:
    from geovlm.pipeline.engines import ray as ray_engine

    monkeypatch.setattr(ray_engine, "_MAX_BLOCKS", 3)  # as a huge event's rows would
    with RayEngine(actors=2) as engine:
        engine.start(_plain_steps)
        batches = list(engine.processed(scenes, OPENER, 2))
    ids = [(batch.scene.key, record["chip_id"]) for batch in batches
           for record in batch.records.chips]
    assert len(ids) == len(set(ids))
    assert len(ids) + sum(batch.skipped_invalid for batch in batches) == sum(
        len(item.item_ids) for item in scenes)


def _timed_steps(log: Path) -> ChipSteps:
    """Steps that take a while and log when each stage of each row ran (start, end)."""
    def timed(kind: str, result: Callable[[], Any]) -> Any:
        start = time.monotonic()
        time.sleep(0.15)
        with log.open("a") as file:
            file.write(f"{kind} {start} {time.monotonic()}\n")
        return result()

    plain = _plain_steps()
    return ChipSteps(prepare=lambda chips: timed("prepare", lambda: plain.prepare(chips)),
                     process=lambda chips, p: timed("process", lambda: plain.process(chips, p)))


def test_an_actor_prepares_a_row_while_its_model_runs_another(
    ray_cluster: Any, scenes: list[SceneWork], tmp_path: Path
) -> None:
    log = tmp_path / "stages.log"
    with RayEngine(actors=1) as engine:
        engine.start(functools.partial(_timed_steps, log))
        batches = list(engine.processed(scenes[:1], OPENER, 4))
    spans: dict[str, list[tuple[float, float]]] = {"prepare": [], "process": []}
    for line in log.read_text().splitlines():
        kind, start, end = line.split()
        spans[kind].append((float(start), float(end)))
    assert len(spans["process"]) == len(batches) > 2

    def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] < b[1] and b[0] < a[1]

    runs = sorted(spans["process"])
    assert not any(overlap(a, b) for a, b in itertools.pairwise(runs))  # one model call at once
    assert any(overlap(p, r) for p in spans["prepare"] for r in runs)
