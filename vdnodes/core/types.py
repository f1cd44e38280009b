"""Socket types: parametric names, compatibility rules and runtime value checks.

A socket type is a name with optional arguments: ``Image``, ``Latent[image]``,
``Context[text]``, ``List[Image]``. Types are checked before anything runs; when
two do not fit, ``explain_mismatch`` says why in words. Values are checked
after a node runs by duck typing (no torch import here).

Rules, in order:
  1. ``Any`` accepts everything.
  2. Same name: a socket without arguments (``Latent``) accepts every
     parametrisation (``Latent[image]``, ``Latent[text]``); otherwise the
     arguments must be equal (a text latent never feeds an image socket).
  3. A few lossless coercions between primitives (Int -> Float, Seed <-> Int).
  4. Anything else is a mismatch.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ValueCheck = Callable[[Any, tuple[str, ...]], "str | None"]


@dataclass(frozen=True, order=True)
class SocketType:
    """A type name plus its arguments, e.g. ``SocketType("Latent", ("image",))``."""

    name: str
    args: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.name}[{','.join(self.args)}]" if self.args else self.name

    @classmethod
    def parse(cls, text: "str | SocketType") -> "SocketType":
        """Parse ``"Latent[image]"``; nested arguments stay strings (``List[Latent[image]]``)."""
        if isinstance(text, SocketType):
            return text
        text = text.strip()
        if "[" not in text:
            if not text.isidentifier():
                raise ValueError(f"bad socket type {text!r}")
            return cls(text)
        if not text.endswith("]"):
            raise ValueError(f"bad socket type {text!r}: missing closing ']'")
        name, inner = text[: text.index("[")], text[text.index("[") + 1 : -1]
        args, depth, start = [], 0, 0
        for i, ch in enumerate(inner):
            depth += (ch == "[") - (ch == "]")
            if ch == "," and depth == 0:
                args.append(inner[start:i].strip())
                start = i + 1
        args.append(inner[start:].strip())
        if not name.isidentifier() or not all(args) or depth != 0:
            raise ValueError(f"bad socket type {text!r}")
        return cls(name, tuple(args))


@dataclass(frozen=True)
class TypeDef:
    """What a type name means: docs, GUI colour, and an optional value check."""

    name: str
    doc: str
    color: str = "#9e9e9e"  # GUI socket colour
    takes_args: bool = False  # True for Latent/Context/List
    arg_doc: str = ""  # what the argument is, e.g. "modality"
    check: ValueCheck | None = None


# Lossless conversions between primitive types (source, target).
COERCIONS: frozenset[tuple[str, str]] = frozenset(
    {("Int", "Float"), ("Seed", "Int"), ("Int", "Seed"), ("Path", "String"), ("String", "Path")}
)


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return tuple(int(d) for d in shape) if shape is not None else None


def _tensor_rank(rank: int, what: str) -> ValueCheck:
    def check(value: Any, args: tuple[str, ...]) -> str | None:
        shape = _shape(value)
        if shape is None:
            return f"expected a tensor ({what}), got {type(value).__name__}"
        if len(shape) != rank:
            return f"expected a {rank}-d tensor ({what}), got shape {list(shape)}"
        return None

    return check


def _latent_check(value: Any, args: tuple[str, ...]) -> str | None:
    shape = _shape(value)
    if shape is None:
        return f"expected a latent tensor, got {type(value).__name__}"
    rank = {"image": 4, "text": 2}.get(args[0] if args else "", None)
    if rank is not None and len(shape) != rank:
        want = "[B,4,h,w]" if rank == 4 else "[B,D]"
        return f"expected a {args[0]} latent {want}, got shape {list(shape)}"
    return None


def _image_check(value: Any, args: tuple[str, ...]) -> str | None:
    shape = _shape(value)
    if shape is None:
        return f"expected an image tensor [B,3,H,W], got {type(value).__name__}"
    if len(shape) != 4 or shape[1] != 3:
        return f"expected an image tensor [B,3,H,W], got shape {list(shape)}"
    return None


def _text_check(value: Any, args: tuple[str, ...]) -> str | None:
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return None
    return f"expected a list of strings, got {type(value).__name__}"


def _instance_check(*kinds: type) -> ValueCheck:
    def check(value: Any, args: tuple[str, ...]) -> str | None:
        if isinstance(value, kinds) and not (bool not in kinds and isinstance(value, bool)):
            return None
        return f"expected {' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__}"

    return check


def builtin_types() -> list[TypeDef]:
    """The core socket types. VD nodes and plugins may register more."""
    return [
        TypeDef("Any", "Anything; accepts every type.", "#bdbdbd"),
        TypeDef("Image", "Images as a float tensor [B,3,H,W] in [0,1].", "#64b5f6", check=_image_check),
        TypeDef("Mask", "Masks as a float tensor [B,1,H,W] in [0,1] (1 = keep).", "#90a4ae",
                check=_tensor_rank(4, "[B,1,H,W]")),
        TypeDef("Text", "A batch of strings (a list; one prompt is a list of one).", "#ffb74d",
                check=_text_check),
        TypeDef("Latent", "A latent of a generated modality: image [B,4,h,w], text [B,768].",
                "#ba68c8", takes_args=True, arg_doc="modality", check=_latent_check),
        TypeDef("Context", "Conditioning tokens [B,T,D] read by a context layer group.",
                "#4db6ac", takes_args=True, arg_doc="modality", check=_tensor_rank(3, "[B,T,D]")),
        TypeDef("List", "A list of independent items of one type (never implicit).", "#a1887f",
                takes_args=True, arg_doc="item type",
                check=lambda v, a: None if isinstance(v, (list, tuple)) else
                f"expected a list, got {type(v).__name__}"),
        TypeDef("VDModel", "A loaded Versatile Diffusion model (all or some components).", "#e57373"),
        TypeDef("Int", "An integer.", "#81c784", check=_instance_check(int)),
        TypeDef("Float", "A real number.", "#aed581", check=_instance_check(int, float)),
        TypeDef("Bool", "True or false.", "#dce775", check=_instance_check(bool)),
        TypeDef("String", "A single string.", "#ffd54f", check=_instance_check(str)),
        TypeDef("Path", "A file system path.", "#ffe082", check=_instance_check(str)),
        TypeDef("Seed", "A random seed (integer).", "#f06292", check=_instance_check(int)),
        TypeDef("Enum", "One of a fixed set of choices.", "#7986cb", check=_instance_check(str)),
    ]


@dataclass
class TypeRegistry:
    """Known type names and modalities; plugins add to it through the registry."""

    defs: dict[str, TypeDef] = field(default_factory=dict)
    modalities: dict[str, str] = field(default_factory=dict)  # name -> doc

    @classmethod
    def with_builtins(cls) -> "TypeRegistry":
        reg = cls()
        for t in builtin_types():
            reg.add(t)
        reg.add_modality("image", "Images: VAE latents [B,4,h,w], CLIP image tokens.")
        reg.add_modality("text", "Text: Optimus latents [B,768], CLIP text tokens.")
        return reg

    def add(self, typedef: TypeDef) -> None:
        if typedef.name in self.defs:
            raise ValueError(f"socket type {typedef.name!r} is already registered")
        self.defs[typedef.name] = typedef

    def add_modality(self, name: str, doc: str) -> None:
        if name in self.modalities:
            raise ValueError(f"modality {name!r} is already registered")
        self.modalities[name] = doc

    def problem(self, t: SocketType) -> str | None:
        """Why ``t`` is not a known type, with a close-match suggestion; None if fine."""
        if t.name not in self.defs:
            return f"unknown socket type {t.name!r}{suggest(t.name, self.defs)}"
        d = self.defs[t.name]
        if t.args and not d.takes_args:
            return f"type {t.name!r} takes no arguments, got {t}"
        if d.arg_doc == "modality":
            for a in t.args:
                if a not in self.modalities:
                    return f"unknown modality {a!r} in {t}{suggest(a, self.modalities)}"
        if d.arg_doc == "item type":
            for a in t.args:
                inner = self.problem(SocketType.parse(a))
                if inner:
                    return inner
        return None

    def check_value(self, t: SocketType, value: Any) -> str | None:
        """A message when ``value`` does not fit ``t`` at run time, else None."""
        d = self.defs.get(t.name)
        return d.check(value, t.args) if d and d.check else None

    def describe(self, t: SocketType) -> str:
        d = self.defs.get(t.name)
        return f"{t} ({d.doc})" if d else str(t)


def explain_mismatch(source: SocketType, target: SocketType) -> str | None:
    """Why a ``source`` output cannot feed a ``target`` input, or None if it can."""
    if target.name == "Any" or source.name == "Any":
        return None
    if source.name == target.name:
        if not target.args or source.args == target.args:
            return None
        if not source.args:
            return (f"the input needs {target} but the output is a generic {source}; "
                    f"its {target.name.lower()} kind is not known before running")
        diffs = ", ".join(f"{s} vs {t}" for s, t in zip(source.args, target.args) if s != t)
        return f"{source} cannot feed {target}: the {target.name.lower()} kinds differ ({diffs})"
    if (source.name, target.name) in COERCIONS:
        return None
    return f"{source} cannot feed {target}: the types differ"


def suggest(name: str, known: "dict[str, Any] | list[str]") -> str:
    """`` (did you mean 'x'?)`` for a close match, else an empty string."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
