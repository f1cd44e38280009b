"""Executor overhead per node on a 1,000-node graph of trivial nodes, cold and fully cached.

Two shapes: a chain (each node adds 1 to the previous) and a wide graph (1,000
independent constants summed pairwise in a tree). Times cover the whole
``Executor.run`` (keys, plan, cache, events) minus nothing; the node bodies are
integer additions, so what is measured is the engine. Target: < 0.2 ms/node cached.

    python benchmarks/executor.py            # writes benchmarks/results/executor.json
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vdnodes.core.executor import Executor  # noqa: E402
from vdnodes.core.graph import load_graph  # noqa: E402
from vdnodes.core.node import In, Out, Param, node  # noqa: E402
from vdnodes.core.registry import Registry  # noqa: E402

N = 1000


@node("bench.const", version="1.0.0", category="bench", params={"value": Param("Int", 0)},
      outputs={"value": Out("Int")})
def const(ctx, value):
    return value


@node("bench.inc", version="1.0.0", category="bench", inputs={"x": In("Int")}, outputs={"y": Out("Int")})
def inc(ctx, x):
    return x + 1


@node("bench.add", version="1.0.0", category="bench", inputs={"a": In("Int"), "b": In("Int")},
      outputs={"y": Out("Int")})
def add(ctx, a, b):
    return a + b


def chain_graph(n: int) -> dict:
    nodes = {"n0": {"type": "bench.const", "params": {"value": 0}}}
    for i in range(1, n):
        nodes[f"n{i}"] = {"type": "bench.inc", "inputs": {"x": [f"n{i - 1}", "y" if i > 1 else "value"]}}
    return {"format": "vdnodes.graph", "version": 1, "nodes": nodes, "outputs": {"out": f"n{n - 1}.y"}}


def tree_graph(n: int) -> dict:
    leaves = n // 2
    nodes = {f"c{i}": {"type": "bench.const", "params": {"value": i}} for i in range(leaves)}
    level = [(f"c{i}", "value") for i in range(leaves)]
    k = 0
    while len(level) > 1:
        nxt = []
        for j in range(0, len(level) - 1, 2):
            nodes[f"a{k}"] = {"type": "bench.add", "inputs": {"a": list(level[j]), "b": list(level[j + 1])}}
            nxt.append((f"a{k}", "y"))
            k += 1
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return {"format": "vdnodes.graph", "version": 1, "nodes": nodes,
            "outputs": {"out": f"{level[0][0]}.{level[0][1]}"}}


def measure(registry: Registry, data: dict, repeats: int = 5) -> dict:
    graph = load_graph(data, registry)
    n = len(graph.nodes)
    cold, warm = [], []
    for _ in range(repeats):
        ex = Executor(registry)
        t0 = time.perf_counter()
        r = ex.run(graph)
        cold.append(time.perf_counter() - t0)
        assert len(r.executed) == n
        t0 = time.perf_counter()
        r = ex.run(graph)
        warm.append(time.perf_counter() - t0)
        assert r.executed == []
    return {"nodes": n,
            "cold_ms_per_node": 1000 * statistics.median(cold) / n,
            "cached_ms_per_node": 1000 * statistics.median(warm) / n}


def main() -> None:
    registry = Registry()
    registry.register_module(sys.modules[__name__])
    results = {
        "python": platform.python_version(), "machine": platform.machine(),
        "chain": measure(registry, chain_graph(N)), "tree": measure(registry, tree_graph(N)),
        "target_cached_ms_per_node": 0.2,
    }
    out = ROOT / "benchmarks" / "results" / "executor.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for shape in ("chain", "tree"):
        r = results[shape]
        print(f"{shape:5s} {r['nodes']} nodes: cold {r['cold_ms_per_node']:.3f} ms/node, "
              f"cached {r['cached_ms_per_node']:.3f} ms/node")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
