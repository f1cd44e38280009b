"""Sweep specs -> items: parse ``--sweep``/``--items``/the graph's ``sweep`` block, validate all.

A sweep is a list of **items**, each a set of param overrides on one graph. Swept params
combine as a cartesian product (first param slowest) or, with ``zip``, pair up; an items list
(``--items`` JSONL, or ``sweep.items``) multiplies with them. An item's id hashes the graph and
its overrides, so it is the same on every run and every machine (resume, no duplicates).
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdnodes.core.errors import UserInputError
from vdnodes.core.graph import Graph, to_dict
from vdnodes.core.jsonfile import parse_json
from vdnodes.core.node import Param
from vdnodes.core.registry import Registry
from vdnodes.core.types import suggest

MAX_ITEMS = 100_000
NUMERIC = ("Int", "Float", "Seed")


@dataclass(frozen=True)
class Axis:
    """One swept param: its name as written, the ``node.param`` it sets, and its values."""

    name: str
    ref: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Item:
    """One run of the graph: its position, its overrides (name as written -> value) and its id."""

    index: int
    overrides: Mapping[str, Any]
    id: str


@dataclass
class Sweep:
    """A graph and the items to run it over (``graph.sweep`` already merged with the CLI)."""

    graph: Graph
    axes: list[Axis]
    items: list[Item]
    zip: bool = False
    from_list: bool = False  # an items list (``--items``/``sweep.items``) took part
    refs: dict[str, str] = field(default_factory=dict)  # override name -> "node.param"
    savers: tuple[str, ...] = ()  # output nodes with a file name 'prefix': their names carry the item index

    def item_graph(self, item: Item) -> Graph:
        """The graph one item runs: overrides applied, outputs named by the item's index, no sweep block."""
        g = self.graph.copy()
        g.sweep = {}
        for name, value in item.overrides.items():
            nid, _, param = self.refs[name].partition(".")
            g.nodes[nid].params[param] = value
        for nid in self.savers:
            params = g.nodes[nid].params
            params["prefix"] = f"{params['prefix']}_item{item.index:04d}"
        return g

    def grid_shape(self) -> tuple[Axis, ...] | None:
        """The axes of a contact sheet (one or two), or None when the sweep is not a grid."""
        if self.from_list or not 1 <= len(self.axes) <= 2 or (self.zip and len(self.axes) > 1):
            return None
        return tuple(self.axes)


def resolve_target(graph: Graph, registry: Registry, name: str, what: str) -> tuple[str, Param]:
    """``node.param`` and its declaration for a name given as ``node.param`` or a graph input name."""
    ref = graph.inputs.get(name, name)
    nid, _, pname = ref.partition(".")
    if nid not in graph.nodes or not pname:
        raise UserInputError(f"{what} {name!r}: no node {nid!r} and no graph input of that name"
                             f"{suggest(name, [*graph.nodes, *graph.inputs])}; use NODE.PARAM or a graph input name")
    decl = registry.get(graph.nodes[nid].type)
    p = decl.params.get(pname)
    if p is None:
        raise UserInputError(f"{what} {name!r}: {decl.id} has no param {pname!r}{suggest(pname, decl.params)}")
    return ref, p


def parse_values(spec: str, p: Param, *, what: str, base_dir: str = ".") -> list[Any]:
    """Values from SPEC text: ``a,b,c`` | ``start:stop[:step]`` | ``@values.txt`` | ``@'photos/*.jpg'``."""
    spec = spec.strip()
    if spec.startswith("@"):
        return _values_from_file(spec[1:].strip().strip("'\""), p, what=what, base_dir=base_dir)
    if p.type in NUMERIC and spec.count(":") in (1, 2):
        return _range(spec, p, what)
    return [_parse_one(text, p, what) for text in spec.split(",")]


def _parse_one(text: str, p: Param, what: str) -> Any:
    try:
        return p.parse_text(text.strip())
    except ValueError as e:
        raise UserInputError(f"{what}: {e}") from None


def _range(spec: str, p: Param, what: str) -> list[Any]:
    parts = [s.strip() for s in spec.split(":")]
    if len(parts) == 2:
        parts.append("1")
    kind = float if p.type == "Float" or any("." in s or "e" in s.lower() for s in parts) else int
    try:
        start, stop, step = (kind(s) for s in parts)
    except ValueError:
        raise UserInputError(f"{what}: {spec!r} is not START:STOP:STEP with numbers") from None
    if step == 0 or (stop - start) * step < 0:
        raise UserInputError(f"{what}: the step {step} never goes from {start} to {stop}")
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count > MAX_ITEMS:
        raise UserInputError(f"{what}: {spec!r} makes {count} values; at most {MAX_ITEMS}")
    values = [start + i * step for i in range(count)]
    if kind is float:
        values = [round(v, 10) for v in values]
    return [p.coerce(v) if p.type == "Float" else v for v in values]


def _values_from_file(pattern: str, p: Param, *, what: str, base_dir: str) -> list[Any]:
    root = Path(base_dir)
    if any(c in pattern for c in "*?["):
        full = pattern if Path(pattern).is_absolute() else str(root / pattern)
        files = sorted(str(Path(f).resolve()) for f in glob.glob(full, recursive=True) if Path(f).is_file())
        if not files:
            raise UserInputError(f"{what}: no file matches {pattern!r} (looked in {root.resolve()})")
        return [_parse_one(f, p, what) for f in files]
    path = Path(pattern) if Path(pattern).is_absolute() else root / pattern
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"{what}: cannot read the values file {path}: {getattr(e, 'strerror', None) or e}") from None
    values = [_parse_one(line, p, f"{what} ({path} line {n})") for n, line in enumerate(lines, 1) if line.strip()]
    if not values:
        raise UserInputError(f"{what}: {path} holds no values")
    return values


def read_items_file(path: str) -> list[tuple[dict[str, Any], str]]:
    """``--items`` JSONL: one override object per non-empty line -> (object, where) pairs."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"--items: cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        obj = parse_json(line, where)
        if not isinstance(obj, dict):
            raise UserInputError(f"--items: {where} must be a JSON object of overrides, got {type(obj).__name__}")
        out.append((obj, where))
    if not out:
        raise UserInputError(f"--items: {path} holds no items")
    return out


def _json_value(value: Any, p: Param, what: str) -> Any:
    """A value from JSON (a list in the sweep block, an items line); strings are parsed as on the CLI."""
    if isinstance(value, str) and p.type not in ("String", "Path", "Enum"):
        return _parse_one(value, p, what)
    return p.coerce(value)


def item_id(graph: Graph, overrides: Mapping[str, Any], seed: int | None) -> str:
    """A hash of the graph (nodes, inputs, outputs; not its layout or sweep) and the item's overrides."""
    data = to_dict(graph)
    core = {k: data.get(k) for k in ("nodes", "inputs", "outputs")}
    payload = json.dumps({"graph": core, "overrides": dict(sorted(overrides.items())), "seed": seed},
                         sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_sweep(graph: Graph, registry: Registry, *, sweeps: Sequence[str] = (), zip_axes: bool | None = None,
                items_file: str | None = None, seed: int | None = None, cwd: str = ".") -> Sweep:
    """Merge the graph's ``sweep`` block with ``--sweep NAME=SPEC`` (same name overrides),
    ``--zip`` and ``--items``; validate every item; raise ``UserInputError`` naming the first bad one."""
    from vdnodes.core.executor import graph_dir

    block = graph.sweep or {}
    specs: dict[str, tuple[Any, str, str]] = {}  # name -> (spec, where, base folder)
    for name, spec in (block.get("params") or {}).items():
        specs[name] = (spec, f"sweep param {name!r} in {graph.source}", graph_dir(graph))
    for text in sweeps:
        name, eq, spec = text.partition("=")
        if not eq or not name.strip() or not spec.strip():
            raise UserInputError(f"--sweep {text!r}: expected NODE.PARAM=SPEC (SPEC: a,b,c | start:stop:step | "
                                 "@values.txt | @'photos/*.jpg')")
        specs.pop(name.strip(), None)
        specs[name.strip()] = (spec, f"--sweep {name.strip()}", cwd)
    refs: dict[str, str] = {}
    axes = []
    for name, (spec, where, base) in specs.items():
        ref, p = resolve_target(graph, registry, name, where)
        refs[name] = ref
        if isinstance(spec, list):
            values = [_json_value(v, p, f"{where}, value {i}") for i, v in enumerate(spec)]
        else:
            values = parse_values(str(spec), p, what=where, base_dir=base)
        for i, v in enumerate(values):
            why = p.problem(v)
            if why:
                raise UserInputError(f"{where}: value {i} ({v!r}): {why}")
        axes.append(Axis(name, ref, tuple(values)))
    listed: list[tuple[dict[str, Any], str]] = []
    for i, obj in enumerate(block.get("items") or []):
        listed.append((obj, f"sweep item {i} in {graph.source}"))
    if items_file:
        listed += read_items_file(items_file)
    do_zip = bool(block.get("zip", False)) if zip_axes is None else zip_axes
    if do_zip and len({len(a.values) for a in axes}) > 1:
        counts = ", ".join(f"{a.name}: {len(a.values)}" for a in axes)
        raise UserInputError(f"--zip pairs the swept params' values, so they need as many values each ({counts})")
    if do_zip:
        combos = [tuple(zip([a.name for a in axes], vals)) for vals in zip(*(a.values for a in axes))]
    else:
        combos = [tuple(zip([a.name for a in axes], vals)) for vals in itertools.product(*(a.values for a in axes))]
    lists: list[tuple[dict[str, Any], str]] = listed or [({}, "")]
    total = len(lists) * len(combos)
    if total > MAX_ITEMS:
        raise UserInputError(f"the sweep makes {total} items; at most {MAX_ITEMS}")
    items = []
    for (obj, where), combo in itertools.product(lists, combos):
        index = len(items)
        overrides: dict[str, Any] = {}
        for name, raw in obj.items():
            ref, p = _item_target(graph, registry, name, index, where)
            refs.setdefault(name, ref)
            value = _item_value(raw, p, name, index, where)
            overrides[name] = value
        overrides.update(dict(combo))
        by_ref = {refs[n]: v for n, v in overrides.items()}
        items.append(Item(index, overrides, item_id(graph, by_ref, seed)))
    savers = tuple(nid for nid, s in graph.nodes.items() if registry.get(s.type).output_node
                   and getattr(registry.get(s.type).params.get("prefix"), "type", "") == "String")
    return Sweep(graph, axes, items, do_zip, bool(listed), refs, savers)


def _item_target(graph: Graph, registry: Registry, name: str, index: int, where: str) -> tuple[str, Param]:
    try:
        return resolve_target(graph, registry, name, "override")
    except UserInputError as e:
        raise UserInputError(f"item {index} ({where}): {e}") from None


def _item_value(raw: Any, p: Param, name: str, index: int, where: str) -> Any:
    try:
        value = _json_value(raw, p, f"override {name}")
    except UserInputError as e:
        raise UserInputError(f"item {index} ({where}): {e}") from None
    why = p.problem(value)
    if why:
        raise UserInputError(f"item {index} ({where}): override {name}={json.dumps(raw)}: {why}")
    return value


def value_label(value: Any) -> str:
    """A swept value as the contact sheet shows it: numbers short, files by name."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return Path(value).name
    return str(value)


def has_sweep(graph: Graph, sweeps: Iterable[str], items_file: str | None) -> bool:
    """Whether a run is a sweep: the graph has a sweep block, or ``--sweep``/``--items`` was given."""
    return bool(graph.sweep) or bool(list(sweeps)) or bool(items_file)
