"""Graph files: JSON <-> ``Graph`` <-> networkx DiGraph; validate; migrate; save.

A graph file names everything (never positions)::

    {"format": "vdnodes.graph", "version": 1,
     "nodes": {"prompt": {"type": "vd.text", "version": "1.0.0",
                          "params": {"text": "a red circle"}},
               "ctx": {"type": "vd.encode_text", "version": "1.0.0",
                       "inputs": {"text": ["prompt", "text"]}}},
     "inputs": {"prompt": "prompt.text"}, "outputs": {"context": "ctx.context"},
     "ui": {"prompt": {"pos": [40, 80]}}}

``load_graph`` reads (JSON, or a PNG that vdnodes saved), checks the schema,
migrates the file format and each node, fills default params, and validates
types, links, ranges and cycles, reporting every problem at once with its
node id. ``dump_graph`` is canonical (sorted keys, every param written), so
save -> open -> save is byte-identical. No torch here.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import networkx as nx

from vdnodes.core.errors import GraphError, Problem, UserInputError
from vdnodes.core.fileio import atomic_write_text
from vdnodes.core.jsonfile import parse_json
from vdnodes.core.limits import check_input_file
from vdnodes.core.node import NodeDecl, param_link_problem, parse_version
from vdnodes.core.pngmeta import GRAPH_KEY, MANIFEST_KEY, is_png, read_png_text
from vdnodes.core.provenance import locate_inputs
from vdnodes.core.registry import Registry
from vdnodes.core.types import SocketType, explain_mismatch, suggest

FORMAT = "vdnodes.graph"
FORMAT_VERSION = 2  # 2 added the ``sweep`` block (docs/sweeps.md), node ``bypass`` and params linked as inputs


def _from_1(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> 2: nothing to change (2 only adds the optional ``sweep`` block)."""
    return data


# The core's own format migrations; plugins add theirs through ``registry.add_file_migration``.
CORE_FILE_MIGRATIONS = {1: _from_1}


@dataclass(frozen=True)
class Link:
    """An edge source: output ``output`` of node ``node``."""

    node: str
    output: str

    def __str__(self) -> str:
        return f"{self.node}.{self.output}"


@dataclass
class NodeSpec:
    """One node of a graph as saved: type, version, params by name, links by input name."""

    type: str
    version: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Link] = field(default_factory=dict)
    bypass: bool = False  # not run; its outputs pass fitting inputs through (``vdnodes.core.bypass``)


@dataclass
class Graph:
    """A graph document. ``ui`` and ``meta`` are carried along, never interpreted here."""

    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # name -> "node.param"
    outputs: dict[str, str] = field(default_factory=dict)  # name -> "node.output"
    ui: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = "graph"  # where it came from, for messages
    sweep: dict[str, Any] = field(default_factory=dict)  # params to sweep (``vdnodes.batch.spec``)
    # Read from a PNG saved by vdnodes: its run manifest, where its recorded input files were
    # found again (path value -> file) and those that were not (``provenance.locate_inputs``).
    # Never written to a graph file.
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)
    located_inputs: dict[str, str] = field(default_factory=dict, repr=False)
    missing_inputs: list[Any] = field(default_factory=list, repr=False)
    # A graph with bypassed nodes resolved (``bypass.resolve_bypass``): the graph as written,
    # which is what a saved PNG embeds.
    original: "Graph | None" = field(default=None, repr=False, compare=False)

    def copy(self) -> "Graph":
        return copy.deepcopy(self)

    def consumers(self, node_id: str) -> list[tuple[str, str, Link]]:
        """``(consumer id, input name, link)`` for every link leaving ``node_id``."""
        return [
            (nid, name, link)
            for nid, spec in self.nodes.items()
            for name, link in spec.inputs.items()
            if link.node == node_id
        ]


# -- reading ----------------------------------------------------------------

def read_graph_data(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw JSON dict of a graph file, or of the graph embedded in a vdnodes PNG."""
    p = check_input_file(path, "graph file")
    if is_png(p):
        try:
            text = read_png_text(p).get(GRAPH_KEY)
        except ValueError as e:
            raise UserInputError(f"cannot read PNG {p}: {e}") from None
        if text is None:
            raise UserInputError(
                f"{p} is a PNG without an embedded vdnodes graph; only PNGs saved by vdnodes "
                "carry one")
        return parse_graph_text(text, f"{p} (embedded graph)")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserInputError(f"{p} is not a text file; expected a JSON graph or a vdnodes PNG") from None
    except OSError as e:
        raise UserInputError(f"cannot read graph file {p}: {e.strerror or e}") from None
    return parse_graph_text(text, str(p))


def attach_png_origin(graph: Graph, path: str | os.PathLike[str]) -> Graph:
    """For a graph read from a vdnodes PNG: keep its run manifest and find its input files again."""
    p = Path(path)
    if not is_png(p):
        return graph
    try:
        text = read_png_text(p).get(MANIFEST_KEY)
    except ValueError as e:
        raise UserInputError(f"cannot read PNG {p}: {e}") from None
    manifest = parse_json(text, f"{p} (embedded run manifest)") if text else {}
    graph.manifest = manifest if isinstance(manifest, dict) else {}
    graph.missing_inputs = locate_inputs(graph, graph.manifest, str(p.resolve().parent))
    return graph


def parse_graph_text(text: str, source: str = "graph") -> dict[str, Any]:
    data = parse_json(text, source)
    if not isinstance(data, dict):
        raise UserInputError(f"{source} must hold a JSON object, got {type(data).__name__}")
    return data


@lru_cache(maxsize=1)
def graph_schema() -> dict[str, Any]:
    """The JSON Schema of the graph file (``vdnodes/core/graph.schema.json``)."""
    text = resources.files("vdnodes.core").joinpath("graph.schema.json").read_text("utf-8")
    return json.loads(text)


def schema_problems(data: Mapping[str, Any]) -> list[Problem]:
    import jsonschema  # lazy: only needed when a file is loaded

    validator = jsonschema.Draft202012Validator(graph_schema())
    problems = []
    for err in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        path = list(err.absolute_path)
        where = "graph"
        if len(path) >= 2 and path[0] == "nodes":
            where = str(path[1])
        elif path:
            where = "graph." + ".".join(str(x) for x in path)
        detail = ".".join(str(x) for x in path[2:]) if where != "graph" and path[:1] == ["nodes"] else ""
        problems.append(Problem(where, (f"{detail}: " if detail else "") + err.message))
    return problems


def migrate_file(data: dict[str, Any], registry: Registry, source: str) -> dict[str, Any]:
    """Bring a raw graph dict up to ``FORMAT_VERSION`` through the registered file migrations."""
    version = data.get("version")
    if not isinstance(version, int):
        return data  # the schema check reports it
    if version > FORMAT_VERSION:
        raise GraphError([Problem("graph", f"file format version {version} is newer than this "
                                  f"vdnodes understands ({FORMAT_VERSION})", "upgrade vdnodes")],
                         source)
    while version < FORMAT_VERSION:
        upgrade = CORE_FILE_MIGRATIONS.get(version) or registry.file_migrations.get(version)
        if upgrade is None:
            raise GraphError([Problem("graph", f"no migration from file format version {version}")],
                             source)
        data = upgrade(copy.deepcopy(data))
        version += 1
        data["version"] = version
    return data


def from_dict(data: Mapping[str, Any], source: str = "graph") -> Graph:
    """Build a ``Graph`` from a schema-valid dict (no registry checks)."""
    nodes = {}
    for nid, raw in data.get("nodes", {}).items():
        links = {name: Link(str(v[0]), str(v[1])) for name, v in raw.get("inputs", {}).items()}
        nodes[nid] = NodeSpec(raw["type"], raw.get("version", ""), dict(raw.get("params", {})), links,
                              bool(raw.get("bypass", False)))
    return Graph(nodes, dict(data.get("inputs", {})), dict(data.get("outputs", {})),
                 copy.deepcopy(data.get("ui", {})), copy.deepcopy(data.get("meta", {})), source,
                 copy.deepcopy(data.get("sweep", {})))


def migrate_nodes(graph: Graph, registry: Registry) -> list[Problem]:
    """Upgrade each node to its registered version; fill missing params with defaults."""
    problems = []
    for nid, spec in graph.nodes.items():
        if spec.type not in registry:
            continue  # validate() reports unknown types
        decl = registry.get(spec.type)
        if not spec.version:
            spec.version = decl.version
        problem = _migrate_node(spec, decl)
        if problem:
            problems.append(Problem(nid, problem))
            continue
        for name, p in decl.params.items():
            spec.params.setdefault(name, p.default)
    return problems


def _migrate_node(spec: NodeSpec, decl: NodeDecl) -> str | None:
    try:
        have = parse_version(spec.version)
    except ValueError as e:
        return str(e)
    want = parse_version(decl.version)
    if have > want:
        return (f"saved with {decl.id} {spec.version}, newer than the installed {decl.version}; "
                "upgrade vdnodes or the plugin that provides it")
    steps = {m.from_version: m for m in decl.migrations}
    while parse_version(spec.version) < want:
        m = steps.get(spec.version)
        if m is None:
            if parse_version(spec.version)[0] == want[0]:
                spec.version = decl.version  # same major: compatible, new params get defaults
                break
            return f"no migration for {decl.id} from {spec.version} to {decl.version}"
        raw = {"params": copy.deepcopy(spec.params),
               "inputs": {k: [v.node, v.output] for k, v in spec.inputs.items()}}
        raw = m.upgrade(raw)
        spec.params = dict(raw.get("params", {}))
        spec.inputs = {k: Link(v[0], v[1]) for k, v in raw.get("inputs", {}).items()}
        spec.version = m.to_version
    return None


def load_graph(
    source: str | os.PathLike[str] | Mapping[str, Any], registry: Registry, *, label: str = ""
) -> Graph:
    """Read, check the schema, migrate and validate. Raises ``GraphError`` listing every problem."""
    if isinstance(source, Mapping):
        data, name = copy.deepcopy(dict(source)), label or "graph"
    else:
        data, name = read_graph_data(source), label or str(source)
    if data.get("format") != FORMAT:
        raise GraphError([Problem("graph", f"'format' must be {FORMAT!r}, got {data.get('format')!r}",
                                  "is this a vdnodes graph file?")], name)
    data = migrate_file(data, registry, name)
    problems = schema_problems(data)
    if problems:
        raise GraphError(problems, name)
    graph = from_dict(data, name)
    problems = migrate_nodes(graph, registry) + validate(graph, registry)
    if problems:
        raise GraphError(problems, name)
    return graph if isinstance(source, Mapping) else attach_png_origin(graph, source)


# -- validation ---------------------------------------------------------------

def to_digraph(graph: Graph) -> nx.DiGraph:
    """Nodes by id; one edge per link source->consumer carrying ``links=[(output, input)]``."""
    g = nx.DiGraph()
    g.add_nodes_from(graph.nodes)
    for nid, spec in graph.nodes.items():
        for name, link in spec.inputs.items():
            if link.node in graph.nodes:
                if g.has_edge(link.node, nid):
                    g.edges[link.node, nid]["links"].append((link.output, name))
                else:
                    g.add_edge(link.node, nid, links=[(link.output, name)])
    return g


def validate(graph: Graph, registry: Registry) -> list[Problem]:
    """Every problem of a (migrated) graph: types, params, links, cycles, graph inputs/outputs."""
    problems: list[Problem] = []
    known = {nid: registry.get(s.type) for nid, s in graph.nodes.items() if s.type in registry}
    for nid, spec in graph.nodes.items():
        decl = known.get(nid)
        if decl is None:
            problems.append(Problem(nid, f"unknown node type {spec.type!r}{registry.suggestion(spec.type)}",
                                    "run 'vdnodes nodes' to list the installed node types"))
            continue
        problems += _param_problems(nid, spec, decl)
        problems += _link_problems(nid, spec, decl, graph, known)
    problems += _graph_io_problems(graph, known)
    dig = to_digraph(graph)
    if not nx.is_directed_acyclic_graph(dig):
        cycle = nx.find_cycle(dig)
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        problems.append(Problem(cycle[0][0], f"the graph has a cycle: {path}",
                                "a node cannot depend on its own output"))
    else:
        problems += [Problem(n, m, h) for n, m, h in _type_problems(graph, registry, dig, known)[1]]
        if not problems and any(s.bypass for s in graph.nodes.values()):
            from vdnodes.core.bypass import bypass_problems, resolve_bypass  # imports this module

            problems += bypass_problems(graph, registry)
            if not problems:  # what runs: links rerouted through bypassed nodes must type-check too
                resolved = resolve_bypass(graph, registry)
                problems += [Problem(n, f"with bypassed nodes passed through: {m}", h) for n, m, h in
                             _type_problems(resolved, registry, to_digraph(resolved), known)[1]]
    return problems


def _param_problems(nid: str, spec: NodeSpec, decl: NodeDecl) -> list[Problem]:
    out = []
    for name, value in spec.params.items():
        p = decl.params.get(name)
        if p is None:
            out.append(Problem(nid, f"unknown param {name!r} for {decl.id}{suggest(name, decl.params)}",
                               f"its params are {sorted(decl.params) or 'none'}"))
            continue
        value = spec.params[name] = p.coerce(value)
        why = p.problem(value)
        if why:
            hint = ""
            if p.min is not None or p.max is not None:
                hint = f"allowed range is [{_fmt(p.min)}, {_fmt(p.max)}]"
            out.append(Problem(nid, f"param {name!r}: {why}", hint))
    return out


def _fmt(x: float | None) -> str:
    return "-inf" if x is None else f"{x:g}"


def _link_problems(nid: str, spec: NodeSpec, decl: NodeDecl, graph: Graph,
                   known: Mapping[str, NodeDecl]) -> list[Problem]:
    out = []
    for name, link in spec.inputs.items():
        if name not in decl.inputs and name not in decl.params:
            out.append(Problem(nid, f"unknown input {name!r} for {decl.id}{suggest(name, decl.inputs)}",
                               f"its inputs are {sorted(decl.inputs) or 'none'} (or a param, linked)"))
            continue
        if link.node not in graph.nodes:
            out.append(Problem(nid, f"input {name!r} links to missing node {link.node!r}"
                               f"{suggest(link.node, graph.nodes)}"))
            continue
        src = known.get(link.node)
        if src is not None and link.output not in src.outputs:
            out.append(Problem(nid, f"input {name!r} links to {link}, but {src.id} has no output "
                               f"{link.output!r}{suggest(link.output, src.outputs)}",
                               f"its outputs are {sorted(src.outputs)}"))
    for name, inp in decl.inputs.items():
        if not inp.optional and name not in spec.inputs:
            out.append(Problem(nid, f"required input {name!r} ({inp.type}) is not connected"))
    return out


def _graph_io_problems(graph: Graph, known: Mapping[str, NodeDecl]) -> list[Problem]:
    out = []
    for kind, table in (("inputs", graph.inputs), ("outputs", graph.outputs)):
        for name, ref in table.items():
            nid, _, member = ref.partition(".")
            decl = known.get(nid)
            where = f"graph.{kind}.{name}"
            if nid not in graph.nodes:
                out.append(Problem(where, f"refers to missing node {nid!r}{suggest(nid, graph.nodes)}"))
            elif decl is not None:
                members = decl.params if kind == "inputs" else decl.outputs
                if member not in members:
                    what = "param" if kind == "inputs" else "output"
                    out.append(Problem(where, f"{decl.id} has no {what} {member!r}{suggest(member, members)}"))
    return out


def _type_problems(graph: Graph, registry: Registry, dig: nx.DiGraph,
                   known: Mapping[str, NodeDecl]) -> tuple[dict[tuple[str, str], SocketType],
                                                         list[tuple[str, str, str]]]:
    """Propagate output types in topological order; collect link mismatches."""
    types: dict[tuple[str, str], SocketType] = {}
    problems = []
    for nid in nx.lexicographical_topological_sort(dig):
        decl, spec = known.get(nid), graph.nodes[nid]
        if decl is None:
            continue
        in_types: dict[str, SocketType] = {}
        for name, link in spec.inputs.items():
            got = types.get((link.node, link.output))
            if got is not None and name not in decl.inputs and name in decl.params:  # a linked param
                why = param_link_problem(decl.params[name], got.name)
                if why:
                    problems.append((nid, f"param {name!r} from {link}: {why}", "link a value node"))
                continue
            if got is None or name not in decl.inputs:
                continue
            want = decl.inputs[name].socket_type
            why = explain_mismatch(got, want)
            if why:
                problems.append((nid, f"input {name!r} from {link}: {why}",
                                 f"connect an output of type {want}"))
            in_types[name] = got
        for out, t in decl.output_types(in_types, spec.params).items():
            types[(nid, out)] = t
    return types, problems


def infer_types(graph: Graph, registry: Registry) -> dict[tuple[str, str], SocketType]:
    """Output types of every node of a valid graph (the dry run used by ``validate``)."""
    known = {nid: registry.get(s.type) for nid, s in graph.nodes.items()}
    return _type_problems(graph, registry, to_digraph(graph), known)[0]


# -- editing helpers ------------------------------------------------------------

def set_param(graph: Graph, registry: Registry, target: str, text: str) -> None:
    """Apply ``--set node.param=value`` (or a graph input name) from command-line text."""
    ref = graph.inputs.get(target, target)
    nid, _, name = ref.partition(".")
    if nid not in graph.nodes or not name:
        raise UserInputError(f"--set {target}: no node {nid!r} in the graph{suggest(nid, graph.nodes)}; "
                             "use NODE.PARAM=VALUE or a graph input name")
    decl = registry.get(graph.nodes[nid].type)
    p = decl.params.get(name)
    if p is None:
        raise UserInputError(f"--set {target}: {decl.id} has no param {name!r}{suggest(name, decl.params)}")
    try:
        value = p.parse_text(text)
    except ValueError as e:
        raise UserInputError(f"--set {target}: {e}") from None
    why = p.problem(value)
    if why:
        raise UserInputError(f"--set {target}: {why}")
    graph.nodes[nid].params[name] = value


# -- writing ------------------------------------------------------------------

def to_dict(graph: Graph) -> dict[str, Any]:
    nodes = {}
    for nid, spec in graph.nodes.items():
        raw: dict[str, Any] = {"type": spec.type, "version": spec.version, "params": dict(spec.params)}
        if spec.inputs:
            raw["inputs"] = {k: [v.node, v.output] for k, v in spec.inputs.items()}
        if spec.bypass:
            raw["bypass"] = True
        nodes[nid] = raw
    data: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, "nodes": nodes}
    for key in ("inputs", "outputs", "ui", "meta", "sweep"):
        value = getattr(graph, key)
        if value:
            data[key] = value
    return data


def dump_graph(graph: Graph) -> str:
    """Canonical JSON: sorted keys, two-space indent, trailing newline."""
    return json.dumps(to_dict(graph), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def save_graph(graph: Graph, path: str | os.PathLike[str]) -> Path:
    """Write ``dump_graph(graph)`` atomically."""
    return atomic_write_text(path, dump_graph(graph))
