"""Which nodes a run needs, and in what order.

Starting from the requested outputs, walk back through the graph; a node whose
needed outputs are all cached is served from the cache and its ancestors are
not needed (ComfyUI's habit). Pure functions over a networkx DiGraph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import networkx as nx


@dataclass(frozen=True)
class Plan:
    order: list[str]  # every node touched, in topological order
    run: frozenset[str]  # nodes to execute
    cached: frozenset[str]  # nodes served from the cache
    needed_outputs: Mapping[str, frozenset[str]]  # node -> output names someone needs
    consumers: Mapping[tuple[str, str], int]  # (node, output) -> planned consumer count


def ancestors_and_self(dig: nx.DiGraph, targets: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for t in targets:
        out.add(t)
        out |= nx.ancestors(dig, t)
    return out


def make_plan(
    dig: nx.DiGraph,
    targets: Mapping[str, Iterable[str]],
    is_cached: Callable[[str, str], bool],
) -> Plan:
    """Plan a run.

    ``targets`` maps node id -> output names wanted by the caller.
    ``is_cached(node, output)`` says whether that output is in the cache.
    Edges carry ``links=[(output, input), ...]`` (see ``graph.to_digraph``).
    """
    need: dict[str, set[str]] = {n: set(outs) for n, outs in targets.items()}
    required = set(targets)
    run: set[str] = set()
    cached: set[str] = set()
    consumers: dict[tuple[str, str], int] = {}
    topo = list(nx.lexicographical_topological_sort(dig))
    for n in reversed(topo):
        if n not in required:
            continue
        if need[n] and all(is_cached(n, o) for o in need[n]):
            cached.add(n)
            continue
        run.add(n)
        for src, _, data in dig.in_edges(n, data=True):
            required.add(src)
            for output, _input in data["links"]:
                need.setdefault(src, set()).add(output)
                consumers[(src, output)] = consumers.get((src, output), 0) + 1
    order = [n for n in topo if n in required]
    return Plan(order, frozenset(run), frozenset(cached),
                {n: frozenset(v) for n, v in need.items() if n in required}, consumers)
