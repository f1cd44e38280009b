"""The Ray backend: items handed out one at a time to warm workers across a Ray cluster.

Each worker is a Ray actor holding one ``Executor`` and its loaded model (one actor per GPU
where the cluster has GPUs and the run is on CUDA, else ``workers`` CPU actors). The driver
keeps one item in flight per worker and gives the next item to whichever finishes first
(``ray.wait``), so a slow item never idles the others. A worker returns its files as bytes;
the driver writes them and the manifest (no shared file system). A worker that dies mid-item
has its item given to another worker (a new one is started in its place); an item is
recorded once, when the driver has written it. A worker that cannot build its executor or
load the model stops the run with the worker's error. ``ray`` is imported only here, lazily.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdnodes.batch import events as bev
from vdnodes.batch.local import ItemResult, SweepSink, run_item
from vdnodes.batch.spec import Item, Sweep
from vdnodes.core.errors import UserInputError, VDNodesError
from vdnodes.core.executor import CancelToken

MAX_ATTEMPTS = 3  # an item whose worker died this many times is recorded as failed
READY_TIMEOUT_S = 600.0  # a worker must build its executor and load the model within this


class WorkerError(VDNodesError):
    """A Ray worker could not start (no model, no GPU, an import error): the run stops."""


@dataclass(frozen=True)
class WorkerConfig:
    """What each worker needs to build the executor the CLI would build."""

    device: str = "cpu"
    dtype: str = "float32"
    seed: int | None = None
    targets: tuple[str, ...] | None = None
    plugins_enabled: bool | None = None  # as ``build_registry_with_plugins(enabled=, allow=)``
    plugins_allow: tuple[str, ...] | None = None
    env: dict[str, str] = field(default_factory=dict)  # set in the worker before anything loads
    # The driver's OMP_NUM_THREADS (None: unset). Torch's CPU results depend on its thread
    # count, and Ray sets OMP_NUM_THREADS=1 in its workers; workers take the driver's setting
    # instead, so an item gives the same bits with --ray as without.
    omp_threads: str | None = field(default_factory=lambda: os.environ.get("OMP_NUM_THREADS"))


class SweepWorker:
    """The actor body (wrapped by ``ray.remote`` at run time): one warm executor."""

    def __init__(self, config: WorkerConfig, name: str) -> None:
        if config.omp_threads:
            os.environ["OMP_NUM_THREADS"] = config.omp_threads
        else:
            os.environ.pop("OMP_NUM_THREADS", None)
        os.environ.update(config.env)
        self.config = config
        self.name = name
        self.executor: Any = None
        self.sweep: Sweep | None = None
        self.stage = Path(tempfile.mkdtemp(prefix="vdnodes-ray-"))

    def ready(self, sweep: Sweep) -> tuple[int, str | None]:
        """Build the executor and run the graph's model-loading nodes: (process id, why it failed or None)."""
        from vdnodes.nodes import build_registry_with_plugins
        from vdnodes.nodes.runtime import build_executor

        c = self.config
        registry, _ = build_registry_with_plugins(enabled=c.plugins_enabled, allow=c.plugins_allow)
        self.executor = build_executor(registry, device=c.device, dtype=c.dtype, out_dir=str(self.stage))
        self.sweep = sweep
        loaders = [nid for nid, s in sweep.graph.nodes.items()
                   if any(o.socket_type.name == "VDModel" for o in registry.get(s.type).outputs.values())]
        if loaders and sweep.items:
            graph = sweep.item_graph(sweep.items[0])
            try:
                error = self.executor.run(graph, targets=loaders, seed=c.seed, raise_errors=False).error
            except Exception as e:  # noqa: BLE001 - e.g. the weights file's fingerprint cannot be read
                error = e
            if error is not None:
                return os.getpid(), " ".join(str(error).split())
        return os.getpid(), None

    def run(self, item: Item) -> ItemResult:
        assert self.sweep is not None
        c = self.config
        return run_item(self.executor, self.sweep, item, self.stage / "item", seed=c.seed, targets=c.targets,
                        worker=f"{self.name} pid {os.getpid()}")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserInputError("--ray needs Ray, which is not installed; install it with: "
                             "pip install 'vdnodes[ray]'") from None
    return ray


class RayBackend:
    """Run items on Ray actors. ``address``: None or "local" starts a local Ray (unless one is
    already initialised in this process), else joins that cluster ("auto", "HOST:PORT", "ray://...")."""

    def __init__(self, config: WorkerConfig, *, address: str | None = None, workers: int | None = None,
                 init_kwargs: dict[str, Any] | None = None) -> None:
        self.config = config
        self.address = address
        self.workers = workers
        self.init_kwargs = dict(init_kwargs or {})
        self.started_ray = False

    def _connect(self, ray: Any) -> None:
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False, **self.init_kwargs}
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        if address in (None, "local"):
            os.environ.pop("RAY_ADDRESS", None)
            ray.init(**kwargs)
        else:
            ray.init(address=address, **kwargs)
        self.started_ray = True

    def _plan(self, ray: Any) -> tuple[int, dict[str, Any]]:
        """How many actors, with what resources: one per GPU on CUDA, else ``workers`` CPU actors."""
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if self.config.device.startswith("cuda") and gpus:
            return (self.workers or gpus), {"num_gpus": 1, "num_cpus": 1}
        cpus = int(ray.cluster_resources().get("CPU", 1))
        return (self.workers or max(1, min(cpus, 2))), {"num_cpus": 1}

    def run_items(self, sweep: Sweep, items: Sequence[Item], emit: SweepSink,
                  cancel: CancelToken) -> Iterator[ItemResult]:
        ray = import_ray()
        self._connect(ray)
        try:
            yield from self._run(ray, sweep, items, emit, cancel)
        finally:
            if self.started_ray:
                ray.shutdown()

    def _run(self, ray: Any, sweep: Sweep, items: Sequence[Item], emit: SweepSink,
             cancel: CancelToken) -> Iterator[ItemResult]:
        if not items:
            return
        n, resources = self._plan(ray)
        n = min(n, len(items))
        actor_cls = ray.remote(max_restarts=0, max_task_retries=0, **resources)(SweepWorker)
        sweep_ref = ray.put(sweep)
        starting: dict[Any, tuple[Any, str]] = {}  # ready() ref -> (actor, name)
        idle: list[tuple[Any, str, int]] = []  # (actor, name, pid)
        serial = 0

        since: dict[Any, float] = {}

        def start() -> None:
            nonlocal serial
            serial += 1
            name = f"ray-{serial}"
            actor = actor_cls.remote(self.config, name)
            ref = actor.ready.remote(sweep_ref)
            starting[ref] = (actor, name)
            since[ref] = time.monotonic()

        for _ in range(n):
            start()
        queue = deque((it, 1) for it in items)
        running: dict[Any, tuple[Any, str, int, Item, int]] = {}  # run() ref -> (actor, name, pid, item, attempt)
        replacements = 0
        try:
            while queue or running:
                if cancel.cancelled:
                    for ref in running:
                        ray.cancel(ref, force=True)
                    yield from (ItemResult(r[3], "cancelled", 0.0) for r in running.values())
                    return
                while idle and queue:
                    actor, name, pid = idle.pop(0)
                    item, attempt = queue.popleft()
                    emit(bev.ItemStarted(item.index, item.id, f"{name} pid {pid}", pid))
                    running[actor.run.remote(item)] = (actor, name, pid, item, attempt)
                waiting = list(running) + list(starting)
                if not waiting:
                    raise WorkerError("no Ray worker is left to run the remaining items")
                done, _ = ray.wait(waiting, num_returns=1, timeout=0.5)
                for ref, (actor, name) in starting.items():
                    if ref not in done and time.monotonic() - since[ref] > READY_TIMEOUT_S:
                        raise WorkerError(f"Ray worker {name} did not start within {READY_TIMEOUT_S:.0f} s "
                                          f"(resources asked: {resources}; 'ray status' shows what the cluster has)")
                for ref in done:
                    if ref in starting:
                        actor, name = starting.pop(ref)
                        try:
                            pid, why = ray.get(ref, timeout=READY_TIMEOUT_S)
                        except Exception as e:  # noqa: BLE001 - whatever stopped the worker, said once
                            raise WorkerError(f"Ray worker {name} could not start: {_cause(e)}") from None
                        if why:
                            raise WorkerError(f"Ray worker {name} could not start: it could not load the model: {why}")
                        idle.append((actor, name, pid))
                        continue
                    actor, name, pid, item, attempt = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayActorError as e:  # the worker died mid-item
                        if attempt >= MAX_ATTEMPTS:
                            yield ItemResult(item, "failed", 0.0, error=f"its Ray worker died {attempt} times: "
                                             f"{_cause(e)}", worker=name)
                        else:
                            queue.appendleft((item, attempt + 1))
                        if replacements < 2 * n + len(items):
                            replacements += 1
                            start()
                        continue
                    idle.append((actor, name, pid))
                    yield result
        finally:
            for actor, *_ in [*running.values(), *idle, *starting.values()]:
                try:
                    ray.kill(actor)
                except Exception:  # noqa: BLE001 - already gone
                    pass


def _cause(error: BaseException) -> str:
    """The worker's own message out of Ray's wrapping (which repeats a traceback)."""
    cause = getattr(error, "cause", None)
    if cause is not None and not isinstance(cause, BaseException):
        cause = None
    text = str(cause if cause is not None else error).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(error).__name__
    return " ".join(lines) if cause is not None else lines[-1]
