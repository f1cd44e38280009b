"""Example graphs on the default model: cold CLI runs, and what the cache saves on a re-run.

1. Every graph in graphs/ as ``vdnodes run graphs/NAME.json`` in a fresh process
   (start-up, model build and all included): wall seconds of each run, ``--repeat`` rounds
   over all graphs (so a slow spell of a shared machine hits every graph alike), and the
   median per graph. Each round also times the reference ``python -c "import torch;
   from transformers import CLIPTextModel"`` (the imports every model graph pays), so a
   graph's time reads as that floor plus its own work, on whatever host ran it.
2. dual_guided.json in one process: first run, re-run after changing only the
   sampler seed (encoders served from cache), and an unchanged re-run.

    python benchmarks/graph_runs.py [--repeat 3] [--skip-cold]   # writes benchmarks/results/graph_runs.json
    python benchmarks/graph_runs.py --out benchmarks/results/graph_runs_zen3.json  # another host kind
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


REFERENCE = "import torch; from transformers import CLIPTextModel"


def cold_runs(repeat: int) -> dict[str, dict[str, object]]:
    runs: dict[str, list[float]] = {}
    for round_ in range(repeat):
        for name, seconds in {**cold_round(), "_reference_imports": reference_imports()}.items():
            runs.setdefault(name, []).append(seconds)
            print(f"cold  {name:16s} {seconds:6.2f} s  (round {round_ + 1}/{repeat})")
    return {name: {"median": round(statistics.median(times), 2), "runs": times} for name, times in runs.items()}


def cold_round() -> dict[str, float]:
    out = {}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    for path in sorted((ROOT / "graphs").glob("*.json")):
        if "sweep" in json.loads(path.read_text()):  # many runs, not one: benchmarks/sweep.py times those
            continue
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "vdnodes", "run", str(path), "--out", tmp],
                                  cwd=ROOT, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{path.name} failed:\n{proc.stderr}")
        out[path.stem] = round(seconds, 2)
    return out


def reference_imports() -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", REFERENCE], env=env, check=True, capture_output=True)
    return round(time.perf_counter() - t0, 2)


def cpu_name() -> str:
    """The CPU's name with its family and model (``vdnodes.nano.host.cpu_model``)."""
    from vdnodes.nano.host import cpu_model

    return cpu_model()


def cache_reuse() -> dict[str, object]:
    from vdnodes.core.graph import load_graph, set_param
    from vdnodes.nodes import build_registry
    from vdnodes.nodes.runtime import build_executor

    registry = build_registry()
    graph = load_graph(ROOT / "graphs" / "dual_guided.json", registry)
    with tempfile.TemporaryDirectory() as tmp:
        ex = build_executor(registry, out_dir=tmp)
        timings = {}
        for label, seed in (("first_run", None), ("seed_changed", "2"), ("unchanged", None)):
            if seed is not None:
                set_param(graph, registry, "sample.seed", seed)
            t0 = time.perf_counter()
            result = ex.run(graph)
            timings[label] = {"seconds": round(time.perf_counter() - t0, 3),
                              "executed": sorted(result.executed), "cached": sorted(result.cached)}
            print(f"dual_guided {label:13s} {timings[label]['seconds']:6.2f} s  ran {timings[label]['executed']}")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-cold", action="store_true", help="only the in-process cache comparison")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of cold runs over all graphs (default 3)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "graph_runs.json",
                        help="results file (default: benchmarks/results/graph_runs.json)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    results = {"python": platform.python_version(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
               "dual_guided_cache": cache_reuse()}
    if not args.skip_cold:
        results["cold_cli_seconds"] = cold_runs(args.repeat)
    out = args.out.resolve()
    from vdnodes.core.fileio import atomic_write_text

    atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
