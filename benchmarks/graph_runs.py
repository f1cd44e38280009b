"""Example graphs on the default model: cold CLI runs, and what the cache saves on a re-run.

1. Every graph in graphs/ as ``vdnodes run graphs/NAME.json`` in a fresh process
   (start-up, model build and all included): wall seconds each.
2. dual_guided.json in one process: first run, re-run after changing only the
   sampler seed (encoders served from cache), and an unchanged re-run.

    python benchmarks/graph_runs.py [--skip-cold]   # writes benchmarks/results/graph_runs.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cold_runs() -> dict[str, float]:
    out = {}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    for path in sorted((ROOT / "graphs").glob("*.json")):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "vdnodes", "run", str(path), "--out", tmp],
                                  cwd=ROOT, env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{path.name} failed:\n{proc.stderr}")
        out[path.stem] = round(seconds, 2)
        print(f"cold  {path.stem:16s} {seconds:6.2f} s")
    return out


def cache_reuse() -> dict[str, object]:
    from vdnodes.cli import run_services
    from vdnodes.core.executor import Executor
    from vdnodes.core.graph import load_graph, set_param
    from vdnodes.nodes import build_registry

    registry = build_registry()
    graph = load_graph(ROOT / "graphs" / "dual_guided.json", registry)
    with tempfile.TemporaryDirectory() as tmp:
        ex = Executor(registry, out_dir=tmp, services=run_services(None))
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
    args = parser.parse_args()
    results = {"python": platform.python_version(), "cpu_count": os.cpu_count(),
               "dual_guided_cache": cache_reuse()}
    if not args.skip_cold:
        results["cold_cli_seconds"] = cold_runs()
    out = ROOT / "benchmarks" / "results" / "graph_runs.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
