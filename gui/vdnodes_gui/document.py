"""The graph document: the canvas's single source of truth.

It holds one ``vdnodes.core.graph.Graph`` (node positions live in
``graph.ui[node_id]["pos"]``) and the run status of each node, and emits a Qt
signal for every change. Only commands (``commands.py``) call its mutators;
view items read it and listen. Run status is not saved and not undoable, but a
graph edit marks the edited node and its descendants stale here, so every view
agrees on what a re-run will recompute.

Not here: widgets, undo, the executor.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from collections.abc import Callable
from typing import Any

import networkx as nx
from PySide6.QtCore import QObject, Signal

from vdnodes.core.graph import Graph, Link, NodeSpec, dump_graph, to_digraph
from vdnodes.core.node import NodeDecl, param_link_problem
from vdnodes.core.registry import Registry
from vdnodes.core.types import SocketType, explain_mismatch

Pos = tuple[float, float]


class NodeState(str, Enum):
    """What the last run (or edit) says about a node."""

    IDLE = "idle"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CACHED = "cached"
    STALE = "stale"
    FAILED = "failed"
    CANCELLED = "cancelled"  # was to run when the run was cancelled
    SKIPPED = "skipped"  # not run in the last run (an earlier node failed, or a later result was cached)


@dataclass
class NodeStatus:
    """A node's run status; ``preview`` is a QImage (live sampler preview or first output image)."""

    state: NodeState = NodeState.IDLE
    progress: float = 0.0
    message: str = ""
    error: str = ""
    preview: Any = None
    seconds: float | None = None
    key: str | None = None  # the cache key of the result this state describes (None: no result)
    settled: tuple[NodeState, str, str] | None = None  # while STALE: (state, error, message) to restore
    text: str = ""  # a text output, shown on the card


@dataclass
class NodeRecord:
    """Everything needed to put a removed node back: spec, ui entry, graph inputs/outputs naming it."""

    node_id: str
    spec: NodeSpec
    ui: dict[str, Any] | None  # None: the node had no ui entry
    graph_inputs: dict[str, str] = field(default_factory=dict)
    graph_outputs: dict[str, str] = field(default_factory=dict)


FRAMES_KEY = "@frames"  # in ``graph.ui``; never a node id (ids start with a letter or _)
_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def sweep_text(spec: Any) -> str:
    """A sweep spec as the user types it (the graph file may hold a list of values)."""
    return ",".join(str(v) for v in spec) if isinstance(spec, list) else str(spec)


class GraphDocument(QObject):
    """A graph plus node run status, with change signals. Mutate only through commands."""

    node_added = Signal(str)
    node_removed = Signal(str)
    node_moved = Signal(str)
    param_changed = Signal(str, str)  # node id, param name
    link_changed = Signal(str, str)  # consumer node id, input name (added, replaced or removed)
    status_changed = Signal(str)
    frames_changed = Signal()
    ui_changed = Signal(str)  # node id whose layout-only ui entry (title, colour, collapsed...) changed
    reset = Signal()  # the whole graph was replaced
    sweep_changed = Signal()  # the graph's ``sweep`` block changed
    path_changed = Signal()

    def __init__(self, registry: Registry, graph: Graph | None = None, path: Path | None = None) -> None:
        super().__init__()
        self.registry = registry
        self.graph = graph if graph is not None else Graph()
        self.path = path
        self.status: dict[str, NodeStatus] = {nid: NodeStatus() for nid in self.graph.nodes}
        self._types: dict[tuple[str, str], SocketType] | None = None
        # The window sets this to the executor's ``compute_keys`` over the whole graph, so an
        # edit that returns a node to a computed state (undo, redo) shows that result again.
        self.key_fn: Callable[[Graph], dict[str, str]] | None = None

    # -- whole document --------------------------------------------------------
    def replace(self, graph: Graph, path: Path | None) -> None:
        """Swap in another graph (open / new); not undoable."""
        self.graph = graph
        self.path = path
        self.status = {nid: NodeStatus() for nid in graph.nodes}
        self._types = None
        self.reset.emit()
        self.path_changed.emit()

    def swap_graph(self, graph: Graph) -> None:
        """Replace the graph but keep the path (an undoable restore); states say what the cache holds."""
        graph.source = self.graph.source
        graph.ui = copy.deepcopy(graph.ui)
        self.graph = graph
        self.status = {nid: NodeStatus() for nid in graph.nodes}
        self._types = None
        self.reset.emit()

    def set_path(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            self.graph.source = str(path)
        self.path_changed.emit()

    def to_json(self) -> str:
        """Canonical JSON of the graph (what Save writes)."""
        return dump_graph(self.graph)

    # -- queries ---------------------------------------------------------------
    def decl(self, nid: str) -> NodeDecl:
        return self.registry.get(self.graph.nodes[nid].type)

    def pos(self, nid: str) -> Pos:
        x, y = self.graph.ui.get(nid, {}).get("pos", (0, 0))
        return float(x), float(y)

    def link(self, nid: str, name: str) -> Link | None:
        return self.graph.nodes[nid].inputs.get(name)

    def links(self) -> list[tuple[str, str, Link]]:
        """``(consumer, input, link)`` for every link."""
        return [(nid, name, link) for nid, spec in self.graph.nodes.items()
                for name, link in spec.inputs.items()]

    def output_type(self, nid: str, output: str) -> SocketType:
        """The (inferred) type of an output, e.g. ``Latent[image]`` for a denoiser making images."""
        if self._types is None:
            self._types = self._infer_types()
        return self._types.get((nid, output)) or self.decl(nid).outputs[output].socket_type

    def descendants(self, nid: str) -> set[str]:
        return nx.descendants(to_digraph(self.graph), nid)

    def ancestors(self, nid: str) -> set[str]:
        return nx.ancestors(to_digraph(self.graph), nid)

    def link_problem(self, src: str, output: str, dst: str, name: str) -> str | None:
        """Why ``src.output -> dst.name`` cannot be linked, or None when it can."""
        if src not in self.graph.nodes or dst not in self.graph.nodes:
            return "both nodes must be in the graph"
        if output not in self.decl(src).outputs:
            return f"{src} has no output {output!r}"
        want = self.decl(dst).inputs.get(name)
        param = self.decl(dst).params.get(name) if want is None else None
        if want is None and param is None:
            return f"{dst} has no input {name!r}"
        if src == dst:
            return "a node cannot feed itself"
        if src in self.descendants(dst):
            return f"that would make a cycle: {src} already depends on {dst}"
        got = self.output_type(src, output)
        why = param_link_problem(param, got.name) if param is not None else explain_mismatch(got, want.socket_type)
        return f"{src}.{output} -> {dst}.{name}: {why}" if why else None

    def input_type(self, nid: str, name: str) -> SocketType:
        """The type an input socket takes; a param shown as a socket takes its param type."""
        decl = self.decl(nid)
        if name in decl.inputs:
            return decl.inputs[name].socket_type
        return SocketType.parse(decl.params[name].type)

    def param_sockets(self, nid: str) -> list[str]:
        """Params shown as input sockets: those linked, and those the user turned into sockets."""
        decl, spec = self.decl(nid), self.graph.nodes[nid]
        asked = self.graph.ui.get(nid, {}).get("param_inputs", [])
        return [n for n in decl.params if n not in decl.inputs and (n in spec.inputs or n in asked)]

    def link_is_valid(self, dst: str, name: str) -> bool:
        """Whether an existing link still type-checks (a param change may have changed a type)."""
        link = self.link(dst, name)
        want = self.decl(dst).inputs.get(name)
        param = self.decl(dst).params.get(name)
        if link is None or (want is None and param is None) or link.node not in self.graph.nodes:
            return False
        got = self.output_type(link.node, link.output)
        if want is None:
            return param_link_problem(param, got.name) is None
        return explain_mismatch(got, want.socket_type) is None

    def new_id(self, base: str) -> str:
        """A free stable id derived from ``base`` ("denoise", "denoise_2", ...)."""
        base = _ID_CHARS.sub("_", base).strip("_-") or "node"
        if not (base[0].isalpha() or base[0] == "_"):
            base = "n_" + base
        if base not in self.graph.nodes:
            return base
        i = 2
        while f"{base}_{i}" in self.graph.nodes:
            i += 1
        return f"{base}_{i}"

    # -- mutators (commands only) -------------------------------------------------
    def insert_node(self, record: NodeRecord) -> None:
        if record.node_id in self.graph.nodes:
            raise ValueError(f"node id {record.node_id!r} is already in the graph")
        self.graph.nodes[record.node_id] = copy.deepcopy(record.spec)
        if record.ui is not None:
            self.graph.ui[record.node_id] = copy.deepcopy(record.ui)
        self.graph.inputs.update(record.graph_inputs)
        self.graph.outputs.update(record.graph_outputs)
        self.status[record.node_id] = NodeStatus()
        self._types = None
        self.node_added.emit(record.node_id)

    def take_node(self, nid: str) -> NodeRecord:
        """Remove a node without links touching it (remove those first); return what undo needs."""
        assert not self.graph.nodes[nid].inputs and not self.graph.consumers(nid), "remove links first"
        record = NodeRecord(
            nid, self.graph.nodes.pop(nid), self.graph.ui.pop(nid, None),
            {k: v for k, v in self.graph.inputs.items() if v.partition(".")[0] == nid},
            {k: v for k, v in self.graph.outputs.items() if v.partition(".")[0] == nid})
        for k in record.graph_inputs:
            del self.graph.inputs[k]
        for k in record.graph_outputs:
            del self.graph.outputs[k]
        self.status.pop(nid, None)
        self._types = None
        self.node_removed.emit(nid)
        return record

    def set_pos(self, nid: str, pos: Pos) -> None:
        self.graph.ui.setdefault(nid, {})["pos"] = [round(pos[0]), round(pos[1])]
        self.node_moved.emit(nid)

    def set_link(self, nid: str, name: str, link: Link | None) -> None:
        inputs = self.graph.nodes[nid].inputs
        if link is None:
            inputs.pop(name, None)
        else:
            inputs[name] = link
        self._types = None
        self._mark_stale(nid)
        self.link_changed.emit(nid, name)

    def set_ui(self, nid: str, key: str, value: Any) -> None:
        entry = self.graph.ui.setdefault(nid, {})
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
        self.ui_changed.emit(nid)

    def frames(self) -> list[dict[str, Any]]:
        """The frames (``ui["@frames"]``): ``{"title", "rect": [x, y, w, h], "color"}`` each."""
        return self.graph.ui.get(FRAMES_KEY, [])

    def set_frames(self, frames: list[dict[str, Any]]) -> None:
        if frames:
            self.graph.ui[FRAMES_KEY] = frames
        else:
            self.graph.ui.pop(FRAMES_KEY, None)
        self.frames_changed.emit()

    def set_bypass(self, nid: str, on: bool) -> None:
        self.graph.nodes[nid].bypass = on
        self._types = None
        self._mark_stale(nid)
        self.ui_changed.emit(nid)

    def sweep_of(self, nid: str, name: str) -> Any:
        """The sweep spec set on ``nid.name`` (CLI text or a list of values), or None."""
        for key, spec in (self.graph.sweep or {}).get("params", {}).items():
            if self.graph.inputs.get(key, key) == f"{nid}.{name}":
                return spec
        return None

    def set_sweep(self, block: dict[str, Any]) -> None:
        """Replace the graph's ``sweep`` block; the cards of the params it names (before or after) refresh."""
        named = {*(self.graph.sweep or {}).get("params", {}), *block.get("params", {})}
        self.graph.sweep = block
        for key in named:
            nid = self.graph.inputs.get(key, key).partition(".")[0]
            if nid in self.graph.nodes:
                self.ui_changed.emit(nid)
        self.sweep_changed.emit()

    def title(self, nid: str) -> str:
        """The node's title: the user's name for it, else its type's display name."""
        return self.graph.ui.get(nid, {}).get("title") or self.decl(nid).display_name

    def set_param(self, nid: str, name: str, value: Any) -> None:
        self.graph.nodes[nid].params[name] = value
        self._types = None
        self._mark_stale(nid)
        self.param_changed.emit(nid, name)

    # -- run status ---------------------------------------------------------------
    def set_status(self, nid: str, **changes: Any) -> None:
        """Update a node's run status (ignored for nodes deleted meanwhile)."""
        status = self.status.get(nid)
        if status is None:
            return
        for k, v in changes.items():
            setattr(status, k, v)
        self.status_changed.emit(nid)

    def current_keys(self) -> dict[str, str]:
        """Cache keys of every node as the graph is now ({} without a ``key_fn`` or when they fail)."""
        if self.key_fn is None or not self.graph.nodes:
            return {}
        try:
            return self.key_fn(self.graph)
        except Exception:  # an unfinished graph (missing file, unknown type): no keys to compare
            return {}

    def _mark_stale(self, nid: str) -> None:
        """An edit invalidates the node's result and everything computed from it.

        With keys, a stale node whose key is back to the one its result was computed for
        (undo, redo) shows that result again.
        """
        for n in {nid} | self.descendants(nid):
            status = self.status.get(n)
            if status is None:
                continue
            if status.state in (NodeState.DONE, NodeState.CACHED, NodeState.FAILED, NodeState.SKIPPED,
                                NodeState.CANCELLED):
                self.set_status(n, state=NodeState.STALE, settled=(status.state, status.error, status.message),
                                error="", message="", progress=0.0)
            elif status.error:  # a problem found on open; checked again at run
                self.set_status(n, error="")
        self.restore_fresh()

    def restore_fresh(self) -> None:
        """Stale nodes whose key equals their result's key are fresh again (their old state back)."""
        stale = [n for n, s in self.status.items() if s.state is NodeState.STALE and s.key and s.settled]
        keys = self.current_keys() if stale else {}
        for n in stale:
            status = self.status[n]
            if keys.get(n) == status.key:
                state, error, message = status.settled
                self.set_status(n, state=state, error=error, message=message, settled=None)

    def _infer_types(self) -> dict[tuple[str, str], SocketType]:
        """Output types in topological order; works on incomplete graphs (missing inputs)."""
        types: dict[tuple[str, str], SocketType] = {}
        for nid in nx.lexicographical_topological_sort(to_digraph(self.graph)):
            spec = self.graph.nodes[nid]
            if spec.type not in self.registry:
                continue
            decl = self.registry.get(spec.type)
            in_types = {name: types[(link.node, link.output)] for name, link in spec.inputs.items()
                        if (link.node, link.output) in types and name in decl.inputs}
            try:
                out = decl.output_types(in_types, spec.params)
            except (KeyError, ValueError):
                out = {o: decl.outputs[o].socket_type for o in decl.outputs}
            for o, t in out.items():
                types[(nid, o)] = t
        return types
