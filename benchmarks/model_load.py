"""vd-nano loading: in the parts each graph's nodes ask for (as shipped) vs whole at once.

For every example graph that uses a model, one run records the components its nodes request
from the model manager, in order. Then, in one process with the imports done (as in
``vdnodes run`` after its preload), each graph's loading is timed both ways, alternating:

- ``parts``: what the model manager does: one ``load_nano(components=...)`` per request
  that needs something not yet loaded, with what it lacks;
- ``whole``: one ``load_nano()`` of every component, the alternative for a model this small.

Medians over ``--repeat`` rounds after a warm-up round. Only loading is timed (building the
modules with parameters on ``meta``, renaming names, reading and placing tensors); sampling
is the same either way.

    python benchmarks/model_load.py [--repeat 9]   # writes benchmarks/results/model_load.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from graph_runs import cpu_name  # this folder is on sys.path when the script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vdnodes.core.fileio import atomic_write_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "model_load.json"


def requests_of(graph_path: Path, registry) -> list[set[str]]:
    """The component sets a graph's nodes ask the model manager for, in order."""
    from vdnodes.core.executor import Executor
    from vdnodes.core.graph import load_graph
    from vdnodes.nodes.models import ModelManager

    asked: list[set[str]] = []

    class Recording(ModelManager):
        def ensure(self, spec, components, groups=None):
            asked.append(set(components))
            return super().ensure(spec, components, groups)

    manager = Recording()
    with tempfile.TemporaryDirectory() as tmp:
        Executor(registry, out_dir=tmp, services={"models": manager, "run_seed": None,
                                                  "manifest": manager.manifest}).run(load_graph(graph_path, registry))
    from vdnodes.model.vd import COMPONENTS

    return [c & set(COMPONENTS) for c in asked if c & set(COMPONENTS)]  # plugin layers load apart


def load_whole() -> int:
    from vdnodes.nano.weights import load_nano

    load_nano()
    return 1


def load_parts(requests: list[set[str]]) -> int:
    from vdnodes.nano.weights import load_nano

    loaded: set[str] = set()
    reads = 0
    for wanted in requests:
        missing = wanted - loaded
        if missing:
            loaded |= set(load_nano(components=missing).components)
            reads += 1
    return reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="timed rounds after one warm-up (default 9)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    gc.disable()  # as vdnodes run does (preload_model_code)
    import torch  # noqa: F401

    import vdnodes.model.vd  # noqa: F401
    gc.enable()
    gc.freeze()
    from vdnodes.nodes import build_registry_with_plugins

    registry = build_registry_with_plugins()[0]
    requests = {}
    for path in sorted((ROOT / "graphs").glob("*.json")):
        asked = requests_of(path, registry)
        if asked:
            requests[path.stem] = asked
    times: dict[str, dict[str, list[float]]] = {g: {"whole": [], "parts": []} for g in requests}
    reads: dict[str, int] = {}
    for round_ in range(args.repeat + 1):
        for i, (graph, asked) in enumerate(requests.items()):
            order = ("whole", "parts") if (round_ + i) % 2 else ("parts", "whole")
            for way in order:
                t0 = time.perf_counter()
                n = load_whole() if way == "whole" else load_parts(asked)
                seconds = time.perf_counter() - t0
                if round_:
                    times[graph][way].append(seconds)
                if way == "parts":
                    reads[graph] = n
        print(f"round {round_}/{args.repeat}" + (" (warm-up)" if not round_ else ""), flush=True)

    graphs = {}
    for graph, by_way in times.items():
        whole, parts = (round(statistics.median(by_way[w]), 3) for w in ("whole", "parts"))
        graphs[graph] = {"whole_s": whole, "parts_s": parts, "parts_reads": reads[graph],
                         "saved_s": round(parts - whole, 3)}
        print(f"{graph:16s} whole {whole:.3f} s   parts {parts:.3f} s ({reads[graph]} reads)   "
              f"saved {parts - whole:+.3f} s")
    result = {"python": platform.python_version(), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
              "repeat": args.repeat, "graphs": graphs}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
