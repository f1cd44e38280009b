"""Opening graphs for editing, where an unfinished graph is normal.

``vdnodes.core.graph.load_graph`` refuses any graph that cannot run, which is
right for ``vdnodes run`` but not for a canvas: a graph saved half-built
(an input not linked yet, a link whose type changed, a value out of range)
must open again so it can be finished. ``open_graph`` runs the same steps and
only refuses what the canvas cannot show: unreadable files, schema errors,
unknown node types, params, inputs or outputs, dangling links and cycles.
"""

from __future__ import annotations

import os

import networkx as nx

from vdnodes.core.errors import GraphError, Problem
from vdnodes.core.graph import (
    FORMAT, Graph, attach_png_origin, from_dict, load_graph, migrate_file, migrate_nodes, read_graph_data,
    schema_problems, to_digraph, validate,
)
from vdnodes.core.registry import Registry


def structural_problems(graph: Graph, registry: Registry) -> list[Problem]:
    """Problems that leave nothing sensible to draw or edit."""
    out = []
    for nid, spec in graph.nodes.items():
        if spec.type not in registry:
            out.append(Problem(nid, f"unknown node type {spec.type!r}{registry.suggestion(spec.type)}"))
            continue
        decl = registry.get(spec.type)
        out += [Problem(nid, f"unknown param {p!r} for {decl.id}") for p in spec.params if p not in decl.params]
        for name, link in spec.inputs.items():
            if name not in decl.inputs:
                out.append(Problem(nid, f"unknown input {name!r} for {decl.id}"))
            elif link.node not in graph.nodes:
                out.append(Problem(nid, f"input {name!r} links to missing node {link.node!r}"))
            elif graph.nodes[link.node].type in registry and \
                    link.output not in registry.get(graph.nodes[link.node].type).outputs:
                out.append(Problem(nid, f"input {name!r} links to {link}, which is not an output"))
    if not out and not nx.is_directed_acyclic_graph(to_digraph(graph)):
        out.append(Problem("graph", "the graph has a cycle"))
    return out


def open_graph(path: str | os.PathLike[str], registry: Registry) -> tuple[Graph, list[Problem]]:
    """A graph to edit and the problems that keep it from running (empty for a runnable graph).

    Raises ``GraphError`` / ``UserInputError`` for files the canvas cannot show.
    """
    try:
        return load_graph(path, registry), []
    except GraphError:
        pass
    name = str(path)
    data = read_graph_data(path)
    if data.get("format") != FORMAT:
        raise GraphError([Problem("graph", f"'format' must be {FORMAT!r}, got {data.get('format')!r}")], name)
    data = migrate_file(data, registry, name)
    problems = schema_problems(data)
    if problems:
        raise GraphError(problems, name)
    graph = from_dict(data, name)
    problems = migrate_nodes(graph, registry) or structural_problems(graph, registry)
    if problems:
        raise GraphError(problems, name)
    return attach_png_origin(graph, path), validate(graph, registry)
