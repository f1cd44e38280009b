"""Positions for nodes a graph file does not place (the example graphs carry no ``ui``).

A layered layout: each node goes one column right of its deepest source;
within a column nodes keep the order of the sources feeding them, so links
mostly run left to right without crossing. Pure functions, no Qt.
"""

from __future__ import annotations

import networkx as nx

from vdnodes.core.graph import Graph, to_digraph

COLUMN = 320  # px between column starts (node cards are 248 wide)
ROW_GAP = 40  # px between cards in a column


def layered_positions(graph: Graph, heights: dict[str, float]) -> dict[str, tuple[int, int]]:
    """Positions for every node; ``heights`` are the card heights (for stacking)."""
    dig = to_digraph(graph)
    column: dict[str, int] = {}
    for nid in nx.lexicographical_topological_sort(dig):
        preds = list(dig.predecessors(nid))
        column[nid] = 1 + max((column[p] for p in preds), default=-1)
    # Sinks with a single consumer chain stay put; sources sit just left of their first consumer.
    for nid in sorted(column, key=lambda n: -column[n]):
        succs = list(dig.successors(nid))
        if succs and not list(dig.predecessors(nid)):
            column[nid] = min(column[s] for s in succs) - 1
    order: dict[str, float] = {}
    cols: dict[int, list[str]] = {}
    for nid in nx.lexicographical_topological_sort(dig):
        cols.setdefault(column[nid], []).append(nid)
    out: dict[str, tuple[int, int]] = {}
    for c in sorted(cols):
        members = cols[c]
        # Order a column by the mean row of its sources (barycentre), ties by id.
        members.sort(key=lambda n: (_mean([order[p] for p in dig.predecessors(n) if p in order]), n))
        total = sum(heights.get(n, 120) for n in members) + ROW_GAP * (len(members) - 1)
        y = -total / 2
        for i, nid in enumerate(members):
            order[nid] = float(i)
            out[nid] = (c * COLUMN, round(y))
            y += heights.get(nid, 120) + ROW_GAP
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else -1.0


def missing_positions(graph: Graph) -> list[str]:
    return [nid for nid in graph.nodes if "pos" not in graph.ui.get(nid, {})]
