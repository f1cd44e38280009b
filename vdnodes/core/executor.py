"""The one executor, shared by ``vdnodes run`` and the canvas.

``Executor.run`` validates nothing itself (``graph.load_graph`` did), computes
content-addressed keys for the nodes the targets need, plans (skipping what is
cached), then runs a short loop: for each planned node, hit the cache or call
the node, check its outputs against their declared types, store them, and emit
a typed event. Values a run still needs are held by the run itself, so cache
eviction never loses them; they are released after their last consumer.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from vdnodes.core import events as ev
from vdnodes.core.bypass import resolve_bypass
from vdnodes.core.cache import TensorCache
from vdnodes.core.errors import (
    GraphError, NodeError, NodeInputError, Problem, RunCancelled, UserInputError, VDNodesError,
)
from vdnodes.core.graph import Graph, to_digraph
from vdnodes.core.keys import derive_seed, node_key, output_key
from vdnodes.core.node import NodeDecl, Purity
from vdnodes.core.plan import Plan, ancestors_and_self, make_plan
from vdnodes.core.provenance import resolve_user_path
from vdnodes.core.registry import Registry

EventSink = Callable[[ev.Event], None]


class CancelToken:
    """Set from any thread; checked between nodes and by long nodes through their context."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self, node_id: str = "") -> None:
        if self._event.is_set():
            raise RunCancelled(node_id)


@dataclass
class NodeContext:
    """What a node body receives as ``ctx`` (implements ``node.RunContext``)."""

    node_id: str
    node_type: str
    device: str
    dtype: str
    seed: int | None
    out_dir: str
    base_dir: str
    graph: Graph
    services: Mapping[str, Any]
    _emit: EventSink
    _cancel: CancelToken
    _run_id: str
    warnings: list[str] = field(default_factory=list)
    registry: Registry | None = None  # what the run was built from (nodes, types, model groups)
    run_seed: int | None = None  # the run's base seed (``--seed``), recorded in saved outputs

    def resolve_path(self, path: str) -> str:
        """A user path: absolute as is; relative to the graph's folder if it exists there,
        else relative to the working directory."""
        return resolve_user_path(path, self.base_dir, self.graph.located_inputs)

    def progress(self, fraction: float, message: str = "", preview: Any = None) -> None:
        """Report progress in [0, 1], optionally with a preview value (e.g. an image tensor)."""
        self._emit(ev.NodeProgress(self._run_id, self.node_id, max(0.0, min(1.0, float(fraction))),
                                   message, preview))

    def check_cancel(self) -> None:
        """Raise ``RunCancelled`` if the run was cancelled; call it inside long loops."""
        self._cancel.check(self.node_id)

    def is_cancelled(self) -> bool:
        return self._cancel.cancelled

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self._emit(ev.NodeWarning(self._run_id, self.node_id, message))

    @property
    def models(self) -> Any:
        """The model manager, when the caller provided one (``services["models"]``)."""
        return self.services.get("models")


@dataclass
class RunResult:
    run_id: str
    status: str  # "ok" | "failed" | "cancelled"
    outputs: dict[str, Any]  # graph-level output name (or "node.output") -> value
    executed: list[str]
    cached: list[str]
    seconds: float
    keys: dict[str, str]  # node id -> cache key, for every node considered
    error: VDNodesError | None = None
    warnings: dict[str, list[str]] = field(default_factory=dict)


class Executor:
    """Runs graphs against one registry and one cache. One run at a time."""

    def __init__(
        self,
        registry: Registry,
        *,
        cache: TensorCache | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        out_dir: str = "out",
        services: Mapping[str, Any] | None = None,
    ) -> None:
        self.registry = registry
        self.cache = cache if cache is not None else TensorCache()
        self.device = device
        self.dtype = dtype
        self.out_dir = out_dir
        self.services = dict(services or {})
        self._lock = threading.Lock()

    def effective_graph(self, graph: Graph) -> Graph:
        """The graph as it runs: bypassed nodes left out, their consumers fed what passes through."""
        return resolve_bypass(graph, self.registry)

    # -- keys -----------------------------------------------------------------
    def compute_keys(self, graph: Graph, nodes: Iterable[str], seed: int | None = None) -> dict[str, str]:
        """Cache keys of ``nodes`` (and their ancestors), id- and layout-independent."""
        dig = to_digraph(graph)
        wanted = ancestors_and_self(dig, nodes)
        keys: dict[str, str] = {}
        for nid in nx.lexicographical_topological_sort(dig.subgraph(wanted)):
            spec = graph.nodes[nid]
            decl = self.registry.get(spec.type)
            input_keys = {name: output_key(keys[link.node], link.output)
                          for name, link in spec.inputs.items()}
            # A linked param's value comes from its link: its own value does not count.
            params = {k: v for k, v in spec.params.items() if k not in spec.inputs}
            node_seed = self._node_seed(decl, spec.params, seed)
            if node_seed is not None and any(decl.params[n].type == "Seed" for n in spec.inputs
                                             if n in decl.params):
                node_seed = seed  # a linked seed: its value is in the input key; the run seed is not
            keys[nid] = node_key(spec.type, decl.version, params, input_keys, seed=node_seed,
                                 fingerprint=self._fingerprint(decl, spec.params, graph))
        return keys

    @staticmethod
    def _node_seed(decl: NodeDecl, params: Mapping[str, Any], base: int | None) -> int | None:
        if decl.purity is not Purity.SEEDED:
            return None
        name = next(n for n, p in decl.params.items() if p.type == "Seed")
        return derive_seed(base, params[name])

    def _env(self, graph: Graph) -> dict[str, Any]:
        """What fingerprint and preflight functions get: where paths resolve, where outputs go."""
        return {"base_dir": graph_dir(graph), "out_dir": self.out_dir, "located": graph.located_inputs}

    def _fingerprint(self, decl: NodeDecl, params: Mapping[str, Any], graph: Graph) -> str | None:
        if decl.purity is not Purity.EXTERNAL or decl.fingerprint is None:
            return None
        return decl.fingerprint(params, self._env(graph))

    # -- targets ----------------------------------------------------------------
    def resolve_targets(self, graph: Graph, targets: Iterable[str] | None) -> dict[str, set[str]]:
        """Targets as node -> outputs. Accepts graph output names, "node.output" or node ids.

        Default: the graph's declared outputs, plus every node nobody consumes.
        """
        out: dict[str, set[str]] = {}

        def add_node(nid: str) -> None:
            decl = self.registry.get(graph.nodes[nid].type)
            out.setdefault(nid, set()).update(decl.outputs)

        if targets is None:
            for ref in graph.outputs.values():
                nid, _, o = ref.partition(".")
                out.setdefault(nid, set()).add(o)
            consumed = {link.node for s in graph.nodes.values() for link in s.inputs.values()}
            for nid in graph.nodes:
                if nid not in consumed:
                    add_node(nid)
            return out
        for t in targets:
            ref = graph.outputs.get(t, t)
            nid, _, o = ref.partition(".")
            if nid not in graph.nodes:
                raise UserInputError(f"unknown output or node {t!r}")
            if o:
                out.setdefault(nid, set()).add(o)
            else:
                add_node(nid)
        return out

    # -- checks -----------------------------------------------------------------
    def preflight(self, graph: Graph, nodes: Iterable[str] | None = None) -> list[Problem]:
        """Cheap input checks of ``nodes`` (default: all) that need no weights: files exist..."""
        env = self._env(graph)
        wanted = list(graph.nodes if nodes is None else nodes)
        problems = [m.problem() for m in graph.missing_inputs if m.still_wanted(graph, wanted)]
        missing = {p.where for p in problems}  # a re-run PNG's input not found again: nothing more to say
        for nid in wanted:
            decl = self.registry.get(graph.nodes[nid].type)
            if decl.preflight is not None and nid not in missing:
                why = decl.preflight(graph.nodes[nid].params, env)
                if why:
                    problems.append(Problem(nid, why))
        return problems

    # -- running ----------------------------------------------------------------
    def run(
        self,
        graph: Graph,
        *,
        targets: Iterable[str] | None = None,
        seed: int | None = None,
        on_event: EventSink | None = None,
        cancel: CancelToken | None = None,
        raise_errors: bool = True,
    ) -> RunResult:
        """Run what ``targets`` need. Raises the node's error unless ``raise_errors=False``.

        ``seed`` is the base seed mixed into every seeded node; a graph read from a saved PNG
        runs, when none is given, with the one it was made with (so it re-renders the PNG).
        """
        if seed is None and isinstance(graph.manifest.get("seed"), int):
            seed = graph.manifest["seed"]
        graph = self.effective_graph(graph)
        with self._lock:
            return self._run(graph, targets, seed, on_event or (lambda e: None),
                             cancel or CancelToken(), raise_errors)

    def _run(self, graph: Graph, targets: Iterable[str] | None, seed: int | None,
             emit: EventSink, cancel: CancelToken, raise_errors: bool) -> RunResult:
        run_id = uuid.uuid4().hex[:12]
        t_start = time.perf_counter()
        wanted = self.resolve_targets(graph, targets)
        keys = self.compute_keys(graph, wanted, seed)
        dig = to_digraph(graph)
        output_nodes = {n for n in keys if self.registry.get(graph.nodes[n].type).output_node}
        plan = make_plan(dig.subgraph(keys), wanted,
                         lambda n, o: n not in output_nodes and output_key(keys[n], o) in self.cache)
        problems = self.preflight(graph, [n for n in plan.order if n in plan.run])
        if problems:
            error = GraphError(problems, graph.source)
            emit(ev.RunFinished(run_id, "failed", time.perf_counter() - t_start, [], []))
            if raise_errors:
                raise error
            return RunResult(run_id, "failed", {}, [], [], time.perf_counter() - t_start, keys, error)
        # Hold cached values now: later stores may evict them before they are consumed.
        live: dict[tuple[str, str], Any] = {}
        cached_ids = [n for n in plan.order if n in plan.cached]
        for n in cached_ids:
            for o in plan.needed_outputs.get(n, ()):
                live[(n, o)] = self.cache.get(output_key(keys[n], o))
        emit(ev.RunStarted(run_id, plan.order, sorted(wanted)))
        for n in plan.order:
            emit(ev.NodeQueued(run_id, n, graph.nodes[n].type))
        executed: list[str] = []
        warnings: dict[str, list[str]] = {}
        remaining = dict(plan.consumers)
        error: VDNodesError | None = None
        status = "ok"
        try:
            for nid in plan.order:
                spec = graph.nodes[nid]
                if nid in plan.cached:
                    emit(ev.NodeCached(run_id, nid, spec.type))
                    continue
                cancel.check()
                outputs, ctx = self._run_node(graph, nid, keys, live, seed, emit, cancel, run_id)
                if ctx.warnings:
                    warnings[nid] = ctx.warnings
                executed.append(nid)
                for o, value in outputs.items():
                    live[(nid, o)] = value
                self._release_inputs(graph, nid, plan, remaining, wanted, live)
        except RunCancelled as e:
            status, error = "cancelled", e
        except NodeError as e:
            status, error = "failed", e
        seconds = time.perf_counter() - t_start
        emit(ev.RunFinished(run_id, status, seconds, executed, cached_ids))
        result_outputs: dict[str, Any] = {}
        if status == "ok":
            for nid, outs in wanted.items():
                for o in outs:
                    result_outputs[f"{nid}.{o}"] = live.get((nid, o))
            for name, ref in graph.outputs.items():
                nid, _, o = ref.partition(".")
                if (nid, o) in live:
                    result_outputs[name] = live[(nid, o)]
        result = RunResult(run_id, status, result_outputs, executed, cached_ids, seconds, keys,
                           error, warnings)
        if error is not None and raise_errors:
            raise error
        return result

    def _run_node(self, graph: Graph, nid: str, keys: Mapping[str, str],
                  live: Mapping[tuple[str, str], Any], seed: int | None, emit: EventSink,
                  cancel: CancelToken, run_id: str) -> tuple[dict[str, Any], NodeContext]:
        spec = graph.nodes[nid]
        decl = self.registry.get(spec.type)
        kwargs: dict[str, Any] = {}
        for name, inp in decl.inputs.items():
            link = spec.inputs.get(name)
            value = None if link is None else live[(link.node, link.output)]
            if value is not None:
                why = self.registry.types.check_value(inp.socket_type, value)
                if why:
                    raise NodeError(nid, f"input value does not fit: {why}", node_type=spec.type,
                                    socket=name, expected=str(inp.socket_type), got=_describe(value),
                                    hint=f"check what {link} produces")
            kwargs[name] = value
        params = dict(spec.params)
        for name, link in spec.inputs.items():  # params linked like inputs take their link's value
            if name in decl.params and name not in decl.inputs:
                p = decl.params[name]
                value = p.coerce(live[(link.node, link.output)])
                why = p.problem(value)
                if why:
                    raise NodeError(nid, f"param {name!r} from {link}: {why}", node_type=spec.type,
                                    hint=f"check what {link} produces", user_fault=True)
                params[name] = value
        kwargs.update(params)
        ctx = NodeContext(nid, spec.type, self.device, self.dtype,
                          self._node_seed(decl, params, seed), self.out_dir, graph_dir(graph),
                          graph, self.services, emit, cancel, run_id, registry=self.registry, run_seed=seed)
        emit(ev.NodeStarted(run_id, nid, spec.type))
        t0 = time.perf_counter()
        try:
            raw = decl.fn(ctx, **kwargs)
        except RunCancelled:
            raise
        except NodeInputError as e:
            emit(ev.NodeFailed(run_id, nid, spec.type, str(e)))
            raise NodeError(nid, str(e), node_type=spec.type, socket=e.socket, hint=e.hint,
                            user_fault=True) from e
        except NodeError as e:
            emit(ev.NodeFailed(run_id, nid, spec.type, str(e)))
            raise
        except UserInputError as e:
            emit(ev.NodeFailed(run_id, nid, spec.type, str(e)))
            raise NodeError(nid, str(e), node_type=spec.type, user_fault=True) from e
        except Exception as e:  # a bug or a resource problem inside the node
            emit(ev.NodeFailed(run_id, nid, spec.type, f"{type(e).__name__}: {e}"))
            raise NodeError(nid, f"{type(e).__name__}: {e}", node_type=spec.type,
                            hint="run with --debug to see the traceback") from e
        seconds = time.perf_counter() - t0
        outputs = self._normalise_outputs(decl, nid, raw)
        for o, value in outputs.items():
            self.cache.put(output_key(keys[nid], o), value, cost=seconds)
        emit(ev.NodeFinished(run_id, nid, spec.type, seconds))
        return outputs, ctx

    def _normalise_outputs(self, decl: NodeDecl, nid: str, raw: Any) -> dict[str, Any]:
        names = list(decl.outputs)
        if isinstance(raw, Mapping) and set(raw) == set(names):
            outputs = dict(raw)
        elif len(names) == 1:
            outputs = {names[0]: raw}
        else:
            got = sorted(raw) if isinstance(raw, Mapping) else type(raw).__name__
            raise NodeError(nid, "the node returned the wrong outputs", node_type=decl.id,
                            expected=f"a dict with keys {names}", got=str(got),
                            hint="this is a bug in the node")
        for o, value in outputs.items():
            t = decl.outputs[o].socket_type
            why = self.registry.types.check_value(t, value)
            if why:
                raise NodeError(nid, f"output does not fit its declared type: {why}",
                                node_type=decl.id, socket=o, expected=str(t), got=_describe(value),
                                hint="this is a bug in the node")
        return outputs

    @staticmethod
    def _release_inputs(graph: Graph, nid: str, plan: Plan, remaining: dict[tuple[str, str], int],
                        wanted: Mapping[str, set[str]], live: dict[tuple[str, str], Any]) -> None:
        for link in graph.nodes[nid].inputs.values():
            k = (link.node, link.output)
            if k in remaining:
                remaining[k] -= 1
                if remaining[k] <= 0 and link.output not in wanted.get(link.node, ()):
                    live.pop(k, None)


def graph_dir(graph: Graph) -> str:
    """The folder relative paths in a graph are resolved against (its file's folder)."""
    src = Path(graph.source)
    return str(src.parent if src.suffix.lower() in (".json", ".png") else Path.cwd())


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {list(shape)}"
    return type(value).__name__
