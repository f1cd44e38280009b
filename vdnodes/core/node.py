"""Node declarations: one decorator holds a node's whole schema.

A node is a plain function plus a declaration (chaiNNer's habit, ComfyUI V3's
single schema)::

    @node("vd.encode_text", version="1.0.0", category="encode", purity="pure",
          doc="Prompts -> CLIP text tokens.",
          inputs={"model": In("VDModel"), "text": In("Text")},
          params={"normalize": Param("Bool", True, doc="VD's token normalisation.")},
          outputs={"context": Out("Context[text]")})
    def encode_text(ctx, model, text, normalize):
        return clip.encode(...)

The decorator returns a ``NodeDecl`` that is still callable like the function,
so nodes stay testable as ordinary Python. Registration (``registry.py``)
checks that every declared input and param is a parameter of the function.
The body returns a dict of outputs, or a bare value when there is one output.
"""

from __future__ import annotations

import enum
import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from vdnodes.core.types import SocketType

_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


class Purity(str, enum.Enum):
    """How a node's outputs may be cached.

    PURE: a function of inputs and params. SEEDED: also of a derived seed.
    EXTERNAL: reads the world; the node's ``fingerprint`` (e.g. a file hash)
    joins the cache key.
    """

    PURE = "pure"
    SEEDED = "seeded"
    EXTERNAL = "external"


def parse_version(text: str) -> tuple[int, int, int]:
    m = _SEMVER.match(text or "")
    if not m:
        raise ValueError(f"not a semver version (MAJOR.MINOR.PATCH): {text!r}")
    return int(m[1]), int(m[2]), int(m[3])


@dataclass(frozen=True)
class In:
    """A linked input socket. ``optional`` inputs may stay unconnected (value None)."""

    type: str | SocketType
    doc: str = ""
    optional: bool = False

    @property
    def socket_type(self) -> SocketType:
        return SocketType.parse(self.type)


@dataclass(frozen=True)
class Out:
    """An output socket."""

    type: str | SocketType
    doc: str = ""

    @property
    def socket_type(self) -> SocketType:
        return SocketType.parse(self.type)


PARAM_TYPES = ("Int", "Float", "Bool", "String", "Path", "Seed", "Enum")
# Socket types that may feed a param linked like an input (an Enum param cannot be linked:
# choices can change output types, which are checked before anything runs).
PARAM_SOURCES = {"Int": ("Int",), "Float": ("Float", "Int"), "Bool": ("Bool",), "String": ("String",),
                 "Path": ("String", "Path"), "Seed": ("Int", "Seed")}


def param_link_problem(param: "Param", source: str) -> str | None:
    """Why an output of type ``source`` cannot drive ``param``, or None when it can."""
    accepted = PARAM_SOURCES.get(param.type)
    if accepted is None:
        return f"a {param.type} param cannot be linked; set it on the node"
    if source not in accepted and source != "Any":
        return f"{source} does not fit a {param.type} param (it takes {' or '.join(accepted)})"
    return None


def unicode_problem(text: str) -> str | None:
    """Why ``text`` is not a sequence of Unicode scalar values (a lone surrogate), or None.

    JSON escapes such as ``"\\ud800"`` and some terminals produce them; no tokenizer, file
    system or PNG chunk can take them.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return (f"the text holds {text[e.start]!r} at character {e.start}, half of a UTF-16 surrogate "
                "pair, which is not a valid Unicode character; remove it or retype the text")
    return None


@dataclass(frozen=True)
class Param:
    """A value set in the graph (a widget in the canvas), stored by name.

    ``widget`` is a hint for editors: "multiline" text, "file" / "save_file"
    pickers. ``min``/``max`` bound numbers; ``choices`` closes an Enum; ``check``
    is one more rule (value -> why it is refused, or None), run at validation.
    ``input_file`` marks a Path param naming a file the run reads as data (an
    image): saved outputs record its location and digest (``core.provenance``).
    """

    type: str
    default: Any
    doc: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    widget: str = ""
    step: float | None = None
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)
    input_file: bool = False  # a Path whose file the run reads: saved outputs record its SHA-256

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"param type must be one of {PARAM_TYPES}, got {self.type!r}")
        if self.type == "Enum" and not self.choices:
            raise ValueError("an Enum param needs choices")
        problem = self.problem(self.default)
        if problem:
            raise ValueError(f"default {self.default!r} is invalid: {problem}")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable for this param, or None."""
        t = self.type
        if t in ("Int", "Seed"):
            if isinstance(value, bool) or not isinstance(value, int):
                return f"expected an integer, got {value!r}"
        elif t == "Float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"expected a number, got {value!r}"
            if not math.isfinite(value):
                return f"expected a finite number, got {value!r}"
        elif t == "Bool":
            if not isinstance(value, bool):
                return f"expected true or false, got {value!r}"
        elif t in ("String", "Path", "Enum"):
            if not isinstance(value, str):
                return f"expected a string, got {value!r}"
            why = unicode_problem(value)
            if why:
                return why
        if t == "Enum" and value not in self.choices:
            return f"{value!r} is not one of {list(self.choices)}"
        if t == "Seed" and not 0 <= value < 2**63:
            return f"seed must be in [0, 2^63), got {value}"
        if self.min is not None and value < self.min:
            return f"{value} is below the minimum {self.min:g}"
        if self.max is not None and value > self.max:
            return f"{value} is above the maximum {self.max:g}"
        return self.check(value) if self.check is not None else None

    def coerce(self, value: Any) -> Any:
        """Convert a lossless variant (e.g. 3 for a Float param) to the declared type."""
        if self.type == "Float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    def parse_text(self, text: str) -> Any:
        """A value from command-line text (``--set node.param=VALUE``)."""
        t = self.type
        try:
            if t in ("Int", "Seed"):
                return int(text)
            if t == "Float":
                return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a {'number' if t == 'Float' else 'whole number'}") from None
        if t == "Bool":
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{text!r} is not true/false")
        return text


@dataclass(frozen=True)
class Migration:
    """Upgrades one node's saved dict (``params``, ``inputs``) from one version to the next."""

    from_version: str
    to_version: str
    upgrade: Callable[[dict[str, Any]], dict[str, Any]]


class RunContext(Protocol):
    """What a node body may use; handed in by the executor (see ``executor.NodeContext``)."""

    node_id: str
    device: str
    dtype: str
    seed: int | None
    out_dir: str
    base_dir: str

    def resolve_path(self, path: str) -> str: ...
    def progress(self, fraction: float, message: str = "", preview: Any = None) -> None: ...
    def check_cancel(self) -> None: ...
    def is_cancelled(self) -> bool: ...
    def warn(self, message: str) -> None: ...
    @property
    def models(self) -> Any: ...


# fingerprint(params, env) -> str; env holds "base_dir" (the graph's folder) and "out_dir".
Fingerprint = Callable[[Mapping[str, Any], Mapping[str, str]], str]
# preflight(params, env) -> a problem message or None; cheap checks (files exist, are images)
# run by `validate` and before a run starts, so bad input fails before any weights load.
Preflight = Callable[[Mapping[str, Any], Mapping[str, str]], "str | None"]
TypeInference = Callable[[Mapping[str, SocketType], Mapping[str, Any]], Mapping[str, SocketType]]


@dataclass(frozen=True)
class NodeDecl:
    """A node's full declaration plus its body. Call it like the function."""

    id: str
    version: str
    category: str
    fn: Callable[..., Any]
    doc: str = ""
    title: str = ""
    purity: Purity = Purity.PURE
    inputs: Mapping[str, In] = field(default_factory=dict)
    params: Mapping[str, Param] = field(default_factory=dict)
    outputs: Mapping[str, Out] = field(default_factory=dict)
    migrations: Sequence[Migration] = ()
    fingerprint: Fingerprint | None = None
    preflight: Preflight | None = None
    infer_types: TypeInference | None = None
    tags: tuple[str, ...] = ()
    output_node: bool = False  # writes files: always runs when targeted, never served from cache
    plugin: str = ""  # set by the registry for nodes a plugin added

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    @property
    def display_name(self) -> str:
        return self.title or self.id.split(".")[-1].replace("_", " ").capitalize()

    def default_params(self) -> dict[str, Any]:
        return {name: p.default for name, p in self.params.items()}

    def output_types(
        self, input_types: Mapping[str, SocketType], params: Mapping[str, Any]
    ) -> dict[str, SocketType]:
        """Declared output types, refined by ``infer_types`` when the node has one."""
        types = {name: o.socket_type for name, o in self.outputs.items()}
        if self.infer_types is not None:
            types.update(self.infer_types(input_types, params))
        return types

    def problems(self) -> list[str]:
        """Inconsistencies between the declaration and the function."""
        out: list[str] = []
        if not _ID.match(self.id):
            out.append(f"id {self.id!r} must be namespaced snake_case like 'vd.encode_text'")
        try:
            parse_version(self.version)
        except ValueError as e:
            out.append(str(e))
        if not self.outputs:
            out.append("a node needs at least one output")
        clash = set(self.inputs) & set(self.params)
        if clash:
            out.append(f"names used for both inputs and params: {sorted(clash)}")
        sig = inspect.signature(self.fn)
        names = [n for n in sig.parameters if n != "ctx"]
        if "ctx" not in sig.parameters:
            out.append("the function's first parameter must be 'ctx'")
        declared = set(self.inputs) | set(self.params)
        missing = sorted(declared - set(names))
        extra = sorted(set(names) - declared)
        if missing:
            out.append(f"declared but not function parameters: {missing}")
        if extra:
            out.append(f"function parameters that are not declared: {extra}")
        if self.purity is Purity.EXTERNAL and self.fingerprint is None:
            out.append("an external node needs a fingerprint function")
        if self.purity is Purity.SEEDED and not any(p.type == "Seed" for p in self.params.values()):
            out.append("a seeded node needs a Seed param")
        for m in self.migrations:
            try:
                parse_version(m.from_version), parse_version(m.to_version)
            except ValueError as e:
                out.append(f"migration: {e}")
        return out


def node(
    id: str,
    *,
    version: str,
    category: str,
    doc: str = "",
    title: str = "",
    purity: Purity | str = Purity.PURE,
    inputs: Mapping[str, In] | None = None,
    params: Mapping[str, Param] | None = None,
    outputs: Mapping[str, Out | str] | None = None,
    migrations: Sequence[Migration] = (),
    fingerprint: Fingerprint | None = None,
    preflight: Preflight | None = None,
    infer_types: TypeInference | None = None,
    tags: Sequence[str] = (),
    output_node: bool = False,
) -> Callable[[Callable[..., Any]], NodeDecl]:
    """Declare a node; see the module docstring for an example."""

    def wrap(fn: Callable[..., Any]) -> NodeDecl:
        outs = {k: (v if isinstance(v, Out) else Out(v)) for k, v in (outputs or {}).items()}
        return NodeDecl(
            id=id, version=version, category=category, fn=fn,
            doc=doc or inspect.getdoc(fn) or "", title=title, purity=Purity(purity),
            inputs=dict(inputs or {}), params=dict(params or {}), outputs=outs,
            migrations=tuple(migrations), fingerprint=fingerprint, preflight=preflight,
            infer_types=infer_types, tags=tuple(tags), output_node=output_node,
        )

    return wrap
