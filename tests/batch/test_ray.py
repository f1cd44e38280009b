"""The Ray backend on a real local Ray cluster: same bits as the local runner, a killed worker's
item retried on another with nothing written twice, a worker without a model fails the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from vdnodes.batch import events as bev  # noqa: E402
from vdnodes.batch.local import run_sweep  # noqa: E402
from vdnodes.batch.manifest import Manifest  # noqa: E402
from vdnodes.batch.ray_backend import RayBackend, WorkerConfig, WorkerError  # noqa: E402
from vdnodes.batch.spec import build_sweep  # noqa: E402
from vdnodes.core.graph import load_graph  # noqa: E402
from vdnodes.nodes import build_registry  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DUAL = ROOT / "graphs" / "dual_guided.json"
# One torch thread per process: workers and the local run compute with the same thread count
# (the driver's OMP_NUM_THREADS goes to the workers), and 2 workers fit 2 cores.
ENV = {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def registry():
    return build_registry()


def vdnodes(*args: str, **env: str) -> subprocess.CompletedProcess:
    # os.environ as it is now: ray.init set RAY_AUTH_MODE=token (Ray's token auth, on by default)
    return subprocess.run([sys.executable, "-m", "vdnodes", *args], cwd=ROOT, env={**os.environ, **ENV, **env},
                          capture_output=True, text=True, timeout=300)


def test_ray_outputs_are_bit_identical_to_local(cluster, tmp_path):
    args = ["run", str(DUAL), "--sweep", "seed=1:3", "--sweep", "mix=0,1", "--set", "sample.steps=3"]
    local = vdnodes(*args, "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    # The CLI joins the running cluster (RAY_ADDRESS), as it would a cluster started with 'ray start --head'.
    address = ray.get_runtime_context().gcs_address
    on_ray = vdnodes(*args, "--out", str(tmp_path / "ray"), "--ray", "--workers", "2", RAY_ADDRESS=address)
    assert on_ray.returncode == 0, on_ray.stderr
    a, b = Manifest(tmp_path / "local").latest(), Manifest(tmp_path / "ray").latest()
    assert a.keys() == b.keys() and len(a) == 6
    workers = {r["worker"].split(" pid")[0] for r in b.values()}
    assert workers == {"ray-1", "ray-2"}  # both workers took items
    for item_id, rec in a.items():
        (name,) = rec["files"]
        assert b[item_id]["files"] == [name]
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name


def test_a_killed_worker_has_its_item_retried_on_another(cluster, registry, tmp_path):
    graph = load_graph(DUAL, registry)
    graph.nodes["sample"].params["steps"] = 25
    sweep = build_sweep(graph, registry, sweeps=["seed=1:4"])
    killed: list[int] = []

    def on_event(e):
        if isinstance(e, bev.ItemStarted) and e.index == 2 and not killed:
            killed.append(e.worker_pid)
            threading.Timer(0.3, os.kill, (e.worker_pid, signal.SIGKILL)).start()

    backend = RayBackend(WorkerConfig(omp_threads="1"), workers=2)
    summary = run_sweep(sweep, backend, str(tmp_path), on_event=on_event)
    assert summary.status == "ok" and sorted(summary.done) == [0, 1, 2, 3]
    records = Manifest(tmp_path).records()
    assert sorted(r["index"] for r in records) == [0, 1, 2, 3]  # each item recorded once
    item2 = next(r for r in records if r["index"] == 2)
    assert f"pid {killed[0]}" not in item2["worker"]
    files = sorted(p.name for p in tmp_path.glob("*.png"))
    assert files == [f"dual_guided_item{i:04d}_00001.png" for i in range(4)]  # nothing written twice


def test_a_worker_that_cannot_load_the_model_fails_the_run_clearly(cluster, registry, tmp_path):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint at all" * 10)
    graph = load_graph(DUAL, registry)
    graph.nodes["model"].params["source"] = str(broken)
    sweep = build_sweep(graph, registry, sweeps=["seed=1:3"])
    with pytest.raises(WorkerError) as e:
        run_sweep(sweep, RayBackend(WorkerConfig(omp_threads="1"), workers=2), str(tmp_path / "out"))
    msg = str(e.value)
    assert "could not start" in msg and "could not load the model" in msg and "broken.safetensors" in msg
    assert not Manifest(tmp_path / "out").records()
