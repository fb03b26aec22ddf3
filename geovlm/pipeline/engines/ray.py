"""``--engine ray``: the task's model on the actors of a Ray cluster; the driver alone writes.

The driver cuts each scene's chip ids into work rows of at most ``batch_size`` ids (the scene's
path and the ids, never pixels) and hands them to a Ray Data pool of actors. Each actor runs the
task's setup once (its own model load, on its own GPU), opens a row's scene with the run's opener
(a chip grid or building crops, kept open for the scene's next rows), reads just the row's items
on the scene's reader threads and runs
the task's steps on them. Each actor takes two rows at once (Ray Data's threaded calls): one is
read and prepared while the model runs the other, which holds the actor's model lock, as the
local engine's threads overlap them. One `ProcessedBatch` per row streams back to the driver,
pickled, in the order the actors finish. Ray Data restarts an actor that dies (a killed
process, a lost node) and gives its rows to the pool again (its actor defaults:
``max_restarts=-1``, ``max_task_retries=-1``), so a run survives lost workers and no chip
comes back twice. Scene paths must be readable by every worker (a shared file system or URLs).
Ray's progress bars and logs are kept quiet, so the CLI's own progress stays readable; a
worker's logs stay in the cluster's session folder.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import socket
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from geovlm.errors import DependencyError, EndpointError, GeovlmError, InputError, ParameterError
from geovlm.pipeline.work_items import (
    ChipRecords,
    ChipSteps,
    ItemOpener,
    ItemSource,
    ProcessedBatch,
    SceneWork,
)
from geovlm.scenes.entry import SceneEntry

__all__ = ["RayEngine"]

logger = logging.getLogger(__name__)

#: Seconds to wait for a cluster's address to accept a connection; Ray's own connection
#: attempts would retry for minutes on a mistyped address.
_CONNECT_TIMEOUT_S = 5.0
#: Rows an actor works on at once: one on the model, one read and prepared meanwhile.
_ROWS_PER_ACTOR = 2
#: Scenes an actor keeps open (when none of its rows reads them), for rows of a scene that
#: arrive between rows of another.
_OPEN_SCENES = 2
#: Most Ray Data blocks of work rows. A row per block streams each batch back as soon as it is
#: done and spreads rows best over the actors, but each block costs the driver about 1.3 ms to
#: make (26 s for 20,000 on a 2-core machine): beyond this, blocks hold several rows.
_MAX_BLOCKS = 4096


class RayEngine:
    """Runs a task's steps on a pool of Ray actors, each holding its own model.

    Parameters
    ----------
    address
        The cluster to join (``ray start --head`` prints it; ``auto`` finds one on this machine),
        or None: the ``RAY_ADDRESS`` environment variable's, else a new local cluster sized to
        this machine. A Ray already connected in this process (e.g. a notebook's) is used as is.
    actors
        Actors in the pool, each loading the model once; None: one per GPU of the cluster
        (``gpus_per_actor`` each), or one per node on a cluster without GPUs.
    gpus_per_actor
        GPUs each actor reserves (fractions share a GPU); None: 1 on a cluster with GPUs, else 0.
    num_cpus
        CPUs of a local cluster started here (None: all of this machine's).

    Raises
    ------
    ParameterError
        `actors` is below 1 or `gpus_per_actor` negative.
    DependencyError
        Ray is not installed.
    EndpointError
        Nothing listens at `address` (checked here, so before any model loads).
    """

    def __init__(
        self,
        address: str | None = None,
        actors: int | None = None,
        gpus_per_actor: float | None = None,
        *,
        num_cpus: int | None = None,
    ) -> None:
        if actors is not None and actors < 1:
            raise ParameterError(f"--ray-actors {actors} must be at least 1.")
        if gpus_per_actor is not None and gpus_per_actor < 0:
            raise ParameterError(f"--ray-gpus {gpus_per_actor} cannot be negative.")
        _import_ray()
        _check_reachable(address)
        self.address = address
        self.actors = actors
        self.gpus_per_actor = gpus_per_actor
        self.num_cpus = num_cpus
        self._setup: Callable[[], ChipSteps] | None = None
        self._connected_here = False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, setup: Callable[[], ChipSteps]) -> None:
        """Join (or start) the cluster and keep `setup` for the actors; no model loads here.

        Parameters
        ----------
        setup
            The task's setup; each actor calls it once. It travels to the actors pickled, so
            it must not hold open files, clients or models.

        Returns
        -------
        None
            The driver gets no steps: tasks that need them there are refused with Ray.

        Raises
        ------
        EndpointError
            No Ray cluster answers at `address`.
        """
        ray = _import_ray()
        if not ray.is_initialized():
            try:
                ray.init(
                    address=self.address,
                    **({"num_cpus": self.num_cpus} if self.num_cpus is not None else {}),
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                )
            except ConnectionError as exc:
                raise EndpointError(
                    f"no Ray cluster answers at {self.address}; start one with `ray start"
                    " --head` there or fix --ray-address."
                ) from exc
            self._connected_here = True
        _quiet_ray_data(ray)
        self._setup = setup

    def processed(
        self, work: Iterable[SceneWork], opener: ItemOpener, batch_size: int
    ) -> Generator[ProcessedBatch, None, None]:
        """Process every item of `work` on the actors, yielding batches as they finish.

        Parameters
        ----------
        work
            The scenes and the ids of their items to do.
        opener
            Opens a scene's items on a worker (pickled to the actors with the task's setup).
        batch_size
            Items per work row, so per call of the task's steps.

        Yields
        ------
        ProcessedBatch
            Each work row's records, or its chips under ``--min-valid`` counted; every chip id
            comes back exactly once, in no set order.

        Raises
        ------
        GeovlmError
            The one a worker raised (e.g. `InputError` for a corrupt block of a scene).
        """
        if self._setup is None:
            raise RuntimeError("RayEngine.start must be called before RayEngine.processed")
        ray = _import_ray()
        rows = list(_work_rows(work, batch_size))
        if not rows:
            return
        actors, gpus = self._pool_size(ray)
        logger.info("%d work rows on %d Ray actors with %g GPU each", len(rows), actors, gpus)
        blocks = min(len(rows), _MAX_BLOCKS)
        results = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            _ChipWorker,
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(
                size=actors, max_concurrent_calls_per_actor=_ROWS_PER_ACTOR,
                enable_true_multi_threading=True,
            ),
            fn_constructor_kwargs={"setup": self._setup, "opener": opener},
            num_cpus=1,
            num_gpus=gpus,
        )
        # Closing this generator closes Ray Data's iterator at once, which stops the pool.
        with contextlib.closing(iter(results.iter_rows())) as rows:
            for row in rows:
                outcome = pickle.loads(row["batch"])
                if isinstance(outcome, GeovlmError):
                    raise outcome
                yield outcome

    def close(self) -> None:
        """Disconnect if `start` connected: a cluster it started stops, a joined one runs on.

        A Ray that was connected before `start` (e.g. a notebook's) is left connected.
        """
        if self._connected_here:
            _import_ray().shutdown()
            self._connected_here = False

    def _pool_size(self, ray: ModuleType) -> tuple[int, float]:
        """The actors and the GPUs of each, checked against what the cluster has now."""
        resources = ray.cluster_resources()
        cluster_gpus = resources.get("GPU", 0.0)
        gpus = self.gpus_per_actor
        if gpus is None:
            gpus = 1.0 if cluster_gpus >= 1 else 0.0
        actors = self.actors
        if actors is None:
            nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
            actors = max(1, int(cluster_gpus // gpus)) if gpus > 0 else max(1, nodes)
        if actors * gpus > cluster_gpus:
            raise ParameterError(
                f"{actors} Ray actors with {gpus:g} GPU each need {actors * gpus:g} GPUs but the"
                f" cluster has {cluster_gpus:g}; lower --ray-actors or add GPU workers."
            )
        if actors > resources.get("CPU", 0.0):
            raise ParameterError(
                f"{actors} Ray actors need a CPU each but the cluster has"
                f" {resources.get('CPU', 0.0):g}; lower --ray-actors or add workers."
            )
        return actors, gpus


class _ChipWorker:
    """An actor of the pool: the task's steps (its model) and the scenes it has open.

    Called from `_ROWS_PER_ACTOR` threads at once: reading and preparing run in parallel,
    the model one row at a time.
    """

    def __init__(self, setup: Callable[[], ChipSteps], opener: ItemOpener) -> None:
        self._steps: ChipSteps | None = None
        #: The setup's refusal (e.g. no GPU on this worker), told to the driver by each call.
        self._refusal: GeovlmError | None = None
        try:
            self._steps = setup()
        except GeovlmError as exc:
            self._refusal = exc
        self._opener = opener
        self._model = threading.Lock()
        self._scenes = threading.Lock()
        self._sources: OrderedDict[str, tuple[ItemSource, frozenset[str]]] = OrderedDict()
        #: Rows reading each open scene now: a scene in use is never closed.
        self._readers: Counter[str] = Counter()

    def __call__(self, rows: Any) -> Any:
        import pyarrow as pa

        try:
            if self._refusal is not None:
                raise self._refusal
            outcomes: list[ProcessedBatch | GeovlmError] = [
                self._process(pickle.loads(scene), path, item_ids)
                for scene, path, item_ids in zip(
                    rows["scene"].to_pylist(), rows["path"].to_pylist(),
                    rows["item_ids"].to_pylist(), strict=True,
                )
            ]
        except GeovlmError as exc:
            # Sent back as data: Ray's wrapping of a raised exception loses its class, and a
            # refused setup would have Ray start the actor again and again.
            outcomes = [exc]
        return pa.table({"batch": pa.array([pickle.dumps(o) for o in outcomes], pa.binary())})

    def _process(self, scene: SceneEntry, path: str, item_ids: list[str]) -> ProcessedBatch:
        assert self._steps is not None  # else __call__ raised the refusal
        with self._reading(path) as (source, known):
            unknown = set(item_ids) - known
            if unknown:
                raise InputError(
                    f"{path} has no item {min(unknown)} on this Ray worker; every worker must"
                    " read the same files as the driver (a shared file system or URLs)."
                )
            items = list(source.items(skip=known.difference(item_ids)))
            crs = source.info.crs
        prepared = self._steps.prepare(items) if items else None
        with self._model:
            records = self._steps.process(items, prepared) if items else ChipRecords([])
        return ProcessedBatch(
            scene=scene,
            crs=crs,
            footprints=[item.footprint for item in items],
            records=records,
            # The row's items the source left out: under --min-valid.
            skipped_invalid=len(set(item_ids)) - len(items),
        )

    @contextlib.contextmanager
    def _reading(self, path: str) -> Iterator[tuple[ItemSource, frozenset[str]]]:
        """The scene's open items and their ids, opened if new, kept open while in use."""
        with self._scenes:
            if path in self._sources:
                self._sources.move_to_end(path)
            else:
                source = self._opener(path)
                self._sources[path] = (source, frozenset(source.item_ids()))
            self._readers[path] += 1
            opened = self._sources[path]
        try:
            yield opened
        finally:
            with self._scenes:
                self._readers[path] -= 1
                idle = [p for p in self._sources if not self._readers[p]]
                for oldest in idle[: max(0, len(self._sources) - _OPEN_SCENES)]:
                    self._sources.pop(oldest)[0].close()


def _work_rows(work: Iterable[SceneWork], batch_size: int) -> Iterator[dict[str, Any]]:
    """Rows of at most `batch_size` item ids of one scene, with the path the workers open.

    A local path is made absolute here: a worker does not share the driver's working folder.
    """
    for item in work:
        local = Path(item.scene.path)
        path = str(local.resolve()) if local.exists() else item.scene.path
        scene = pickle.dumps(item.scene)
        for start in range(0, len(item.item_ids), batch_size):
            item_ids = list(item.item_ids[start:start + batch_size])
            yield {"scene": scene, "path": path, "item_ids": item_ids}


def _check_reachable(address: str | None) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) address nothing listens on, at once."""
    if address is None or ":" not in address:
        return  # None, "auto" and "local" are Ray's to resolve
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as exc:
        raise EndpointError(
            f"no Ray cluster answers at {address} ({exc}); start one with `ray start --head`"
            " there or fix --ray-address."
        ) from exc


def _import_ray() -> ModuleType:
    """Ray with Ray Data, or a sentence on how to install it."""
    try:
        import ray
        import ray.data  # the attribute `ray.data` exists once imported
    except ImportError as exc:
        raise DependencyError(
            f"--engine ray needs Ray Data ({exc.name} is missing); install it with"
            " pip install 'geovlm[ray]'."
        ) from exc
    return ray


def _quiet_ray_data(ray: ModuleType) -> None:
    """No progress bars or execution plans from Ray Data: the run reports its own progress.

    A failure comes back to the driver as an exception, so Ray Data's own error logs are
    silenced too.
    """
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
