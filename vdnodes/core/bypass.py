"""Bypassed nodes (``"bypass": true`` in a graph file): not run; each output passes an input through.

A bypassed node's output takes the value of its first linked input whose
declared type fits the output's declared type (ComfyUI's bypass, Blender's
mute). A node with an output that no linked input fits cannot be bypassed,
and says why. A bypassed node without outputs (a saver) simply does not run.
``resolve_bypass`` gives the graph the executor runs: bypassed nodes removed,
their consumers (and graph outputs) linked to what would have passed through.
Pure functions; no torch.
"""

from __future__ import annotations

import copy

from vdnodes.core.errors import Problem
from vdnodes.core.graph import Graph, Link
from vdnodes.core.registry import Registry
from vdnodes.core.types import explain_mismatch


def pass_through(graph: Graph, registry: Registry, nid: str) -> tuple[dict[str, str], str | None]:
    """``(output -> input it passes through, reason it cannot be bypassed or None)`` for node ``nid``."""
    spec = graph.nodes[nid]
    decl = registry.get(spec.type)
    routes: dict[str, str] = {}
    for out_name, out in decl.outputs.items():
        fits = [name for name, inp in decl.inputs.items()
                if name in spec.inputs and explain_mismatch(inp.socket_type, out.socket_type) is None]
        if not fits:
            linked = [f"{n} ({decl.inputs[n].type})" for n in decl.inputs if n in spec.inputs]
            have = f"its linked inputs are {', '.join(linked)}" if linked else "it has no linked input"
            return routes, (f"cannot bypass {nid}: output {out_name!r} ({out.type}) has no linked input of "
                            f"a fitting type to pass through; {have}")
        routes[out_name] = fits[0]
    return routes, None


def bypass_problems(graph: Graph, registry: Registry) -> list[Problem]:
    """A problem for every bypassed node that cannot pass its inputs through."""
    out = []
    for nid, spec in graph.nodes.items():
        if spec.bypass and spec.type in registry:
            why = pass_through(graph, registry, nid)[1]
            if why:
                out.append(Problem(nid, why, "link a fitting input, or turn bypass off"))
    return out


def resolve_bypass(graph: Graph, registry: Registry) -> Graph:
    """The graph without its bypassed nodes, links rerouted through them (the graph itself if none)."""
    bypassed = {nid for nid, spec in graph.nodes.items() if spec.bypass}
    if not bypassed:
        return graph
    routes = {nid: pass_through(graph, registry, nid)[0] for nid in bypassed}

    def source(link: Link) -> Link | None:
        seen = set()
        while link.node in bypassed:
            if link.node in seen:
                return None
            seen.add(link.node)
            name = routes[link.node].get(link.output)
            upstream = graph.nodes[link.node].inputs.get(name) if name else None
            if upstream is None:
                return None
            link = upstream
        return link

    out = copy.copy(graph)
    out.nodes = {}
    for nid, spec in graph.nodes.items():
        if nid in bypassed:
            continue
        new = copy.deepcopy(spec)
        new.inputs = {}
        for name, link in spec.inputs.items():
            src = source(link)
            if src is not None:
                new.inputs[name] = src
        out.nodes[nid] = new
    out.outputs = {}
    for name, ref in graph.outputs.items():
        nid, _, o = ref.partition(".")
        src = source(Link(nid, o))
        if src is not None:
            out.outputs[name] = str(src)
    out.inputs = {k: v for k, v in graph.inputs.items() if v.partition(".")[0] not in bypassed}
    out.ui = graph.ui
    out.original = graph
    return out
