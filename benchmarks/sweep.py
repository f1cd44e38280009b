"""Sweeps on vd-nano: separate processes against the local runner against Ray, and Ray's per-task overhead.

1. A 64-seed sweep of graphs/dual_guided.json (as shipped: 20 steps), all in one run:
   (a) 64 separate ``vdnodes run --set seed=N`` processes, (b) the local runner
   (``vdnodes run --sweep seed=0:63``: one process, one cache), (c) ``--ray --workers 2``.
   Wall seconds per item, the ratios b/a and c/b, and whether (b) and (c) wrote the same bits.
2. A 5 x 5 mix x focus grid (graphs/sweep_mix_focus.json --grid) with the local runner.
3. Ray's per-task overhead: the round trip of an actor call that returns a PNG-sized result
   (what the driver pays per item beyond the item's own work), on the same local Ray.
4. Seed batching: vd.denoise with batch=8 (one UNet call per step for 8 samples) against 8
   runs of batch=1 in one process, per image.

Every run uses OMP_NUM_THREADS=1 (2 Ray workers x 1 thread fit 2 cores; the local runner
and the workers then compute the same bits). Wall times on a shared machine vary with what
else runs on it.

    python benchmarks/sweep.py [--items 64]   # writes benchmarks/results/sweep.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["OMP_NUM_THREADS"] = "1"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
DUAL = ROOT / "graphs" / "dual_guided.json"


def vdnodes(*args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "vdnodes", "run", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"vdnodes run {' '.join(args)} failed:\n{proc.stderr}")
    return seconds


def pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("dual_guided_item*.png"))}


def seeds(n: int, tmp: Path) -> dict[str, object]:
    a = [vdnodes(str(DUAL), "--set", f"seed={i}", "--out", str(tmp / "a")) for i in range(n)]
    print(f"(a) {n} processes: {sum(a):.1f} s")
    b = vdnodes(str(DUAL), "--sweep", f"seed=0:{n - 1}", "--out", str(tmp / "b"))
    print(f"(b) local runner: {b:.1f} s")
    c = vdnodes(str(DUAL), "--sweep", f"seed=0:{n - 1}", "--out", str(tmp / "c"), "--ray", "--workers", "2")
    print(f"(c) --ray --workers 2: {c:.1f} s")
    per = {"a_processes": sum(a) / n, "b_local": b / n, "c_ray_2_workers": c / n}
    return {
        "items": n,
        "wall_seconds": {"a_processes": round(sum(a), 2), "b_local": round(b, 2), "c_ray_2_workers": round(c, 2)},
        "seconds_per_item": {k: round(v, 3) for k, v in per.items()},
        "a_process_seconds_median": round(statistics.median(a), 2),
        "b_over_a": round(b / sum(a), 4),
        "c_over_b": round(c / b, 3),
        "b_and_c_bit_identical": pngs(tmp / "b") == pngs(tmp / "c") and len(pngs(tmp / "b")) == n,
    }


def grid(tmp: Path) -> dict[str, object]:
    seconds = vdnodes(str(ROOT / "graphs" / "sweep_mix_focus.json"), "--grid", "--out", str(tmp / "grid"))
    print(f"5 x 5 grid: {seconds:.1f} s")
    return {"items": 25, "wall_seconds": round(seconds, 2), "seconds_per_item": round(seconds / 25, 3),
            "sheet": bool(list((tmp / "grid").glob("sweep_grid_*.png")))}


def ray_overhead(calls: int = 200, payload: int = 6000) -> dict[str, object]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        @ray.remote(num_cpus=1)
        class Echo:
            def item(self, item: dict) -> bytes:
                return os.urandom(payload)

        actor = Echo.remote()
        ray.get(actor.item.remote({}))  # started
        t0 = time.perf_counter()
        for i in range(calls):
            ray.get(actor.item.remote({"index": i, "overrides": {"seed": i}}))
        per_call = (time.perf_counter() - t0) / calls
        t0 = time.perf_counter()
        second = Echo.remote()
        ray.get(second.item.remote({}))
        start = time.perf_counter() - t0
    finally:
        ray.shutdown()
    print(f"Ray: {per_call * 1000:.2f} ms per task round trip, {start:.2f} s to start an actor")
    return {"task_round_trip_ms": round(per_call * 1000, 3), "payload_bytes": payload,
            "actor_start_seconds": round(start, 2)}


def seed_batching(batch: int = 8, rounds: int = 3) -> dict[str, object]:
    import torch

    from vdnodes.core.graph import load_graph
    from vdnodes.nodes import build_registry
    from vdnodes.nodes.runtime import build_executor

    torch.set_num_threads(1)
    registry = build_registry()
    with tempfile.TemporaryDirectory() as tmp:
        ex = build_executor(registry, out_dir=tmp)
        graph = load_graph(DUAL, registry)
        ex.run(graph, targets=["sample"], seed=0)  # model and encoders warm and cached
        single, batched = [], []
        for r in range(rounds):
            t0 = time.perf_counter()
            for i in range(batch):
                graph.nodes["sample"].params.update(seed=1000 * r + i, batch=1)
                ex.run(graph, targets=["sample"])
            single.append((time.perf_counter() - t0) / batch)
            graph.nodes["sample"].params.update(seed=1000 * r + 999, batch=batch)
            t0 = time.perf_counter()
            ex.run(graph, targets=["sample"])
            batched.append((time.perf_counter() - t0) / batch)
        # Does a sample keep its bits in a batch? The first of batch=2 gets the same noise as batch=1
        # (torch's CPU generator fills the batch in order); compare the two latents.
        graph.nodes["sample"].params.update(seed=7, batch=1)
        alone = ex.run(graph, targets=["sample"]).outputs["sample.latent"]
        graph.nodes["sample"].params.update(seed=7, batch=2)
        pair = ex.run(graph, targets=["sample"]).outputs["sample.latent"]
        same = bool(torch.equal(alone[0], pair[0]))
        diff = float((alone[0] - pair[0]).abs().max())
    s, b = statistics.median(single), statistics.median(batched)
    print(f"seed batching: {s * 1000:.1f} ms per image one at a time, {b * 1000:.1f} ms in a batch of {batch}")
    return {"batch": batch, "ms_per_image_single": round(s * 1000, 2), "ms_per_image_batched": round(b * 1000, 2),
            "batched_over_single": round(b / s, 3), "first_sample_bit_identical_in_batch_of_2": same,
            "first_sample_max_abs_diff": diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sweep.json"))
    ap.add_argument("--only-batching", action="store_true", help="rerun part 4 into an existing results file")
    args = ap.parse_args()
    if args.only_batching:
        result = json.loads(Path(args.out).read_text())
        result["seed_batching"] = seed_batching()
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        return
    result: dict[str, object] = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                                 "cpu_count": os.cpu_count(), "omp_num_threads": 1}
    try:
        result["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        result["seed_sweep_dual_guided"] = seeds(args.items, Path(tmp))
        result["grid_5x5_mix_focus"] = grid(Path(tmp))
    result["ray_overhead"] = ray_overhead()
    result["seed_batching"] = seed_batching()
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
