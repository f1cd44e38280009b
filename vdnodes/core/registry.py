"""The registry: known node declarations, socket types and graph migrations.

A registry is an object handed to whoever needs it (the executor, the graph
loader, the canvas); there is no module-level global. ``vdnodes.nodes``
fills one with the built-in nodes and plugins add theirs.
"""

from __future__ import annotations

import types as pytypes
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from vdnodes.core.node import NodeDecl, parse_version
from vdnodes.core.types import SocketType, TypeDef, TypeRegistry, suggest


class RegistryError(ValueError):
    """A declaration that cannot be registered (bad schema, duplicate id)."""


FileMigration = Callable[[dict[str, Any]], dict[str, Any]]


class Registry:
    """Node declarations by id, the socket types they use, and file-format migrations."""

    def __init__(self, types: TypeRegistry | None = None) -> None:
        self.types = types or TypeRegistry.with_builtins()
        self._nodes: dict[str, NodeDecl] = {}
        self._owner: dict[str, str] = {}  # node id -> "core" or plugin name
        # Graph-file format migrations: from format version N to N+1.
        self.file_migrations: dict[int, FileMigration] = {}
        # Extra UNet layer groups, by component name ("unet.context.<modality>" or
        # "unet.data.<modality>"): objects with a ``build`` method (``vdnodes.nodes.models.ModelGroup``).
        # Kept opaque here so the core never imports torch.
        self.model_groups: dict[str, Any] = {}
        self._group_owner: dict[str, str] = {}
        # Who added each type, modality and file migration: ("type", name) -> "core" or plugin name.
        self._other_owner: dict[tuple[str, str], str] = {}

    # -- registration -------------------------------------------------------
    def register(self, decl: NodeDecl, *, owner: str = "core") -> NodeDecl:
        """Add one node; raises ``RegistryError`` naming every problem."""
        problems = decl.problems()
        for where, sock in [*decl.inputs.items(), *decl.outputs.items()]:
            try:
                p = self.types.problem(SocketType.parse(sock.type))
            except ValueError as e:
                p = str(e)
            if p:
                problems.append(f"socket {where!r}: {p}")
        if decl.id in self._nodes:
            problems.append(
                f"id already registered by {self._owner[decl.id]!r}; a node cannot be replaced"
            )
        if problems:
            raise RegistryError(f"cannot register node {decl.id!r}: " + "; ".join(problems))
        if owner != "core":
            decl = replace(decl, plugin=owner)
        self._nodes[decl.id] = decl
        self._owner[decl.id] = owner
        return decl

    def register_module(self, module: pytypes.ModuleType, *, owner: str = "core") -> list[NodeDecl]:
        """Register every ``NodeDecl`` defined in ``module`` (in definition order)."""
        found = [
            v for v in vars(module).values()
            if isinstance(v, NodeDecl) and getattr(v.fn, "__module__", None) == module.__name__
        ]
        return [self.register(d, owner=owner) for d in found]

    def add_type(self, typedef: TypeDef, *, owner: str = "core") -> None:
        if typedef.name in self.types.defs:
            raise RegistryError(f"socket type {typedef.name!r} is already registered by "
                                f"{self.owner_of('type', typedef.name)!r}; it cannot be replaced")
        self.types.add(typedef)
        self._other_owner[("type", typedef.name)] = owner

    def add_modality(self, name: str, doc: str, *, owner: str = "core") -> None:
        if name in self.types.modalities:
            raise RegistryError(f"modality {name!r} is already registered by "
                                f"{self.owner_of('modality', name)!r}")
        self.types.add_modality(name, doc)
        self._other_owner[("modality", name)] = owner

    def add_model_group(self, component: str, provider: Any, *, owner: str = "core") -> None:
        """Add a UNet layer group for a new modality (``unet.context.<m>`` or ``unet.data.<m>``).

        ``provider.build(config)`` returns the group's module with its weights; the model
        manager attaches it to a loaded UNet the first time a node asks for that modality.
        """
        kind, _, modality = component.removeprefix("unet.").partition(".")
        if not component.startswith("unet.") or kind not in ("context", "data") or not modality.isidentifier():
            raise RegistryError(f"model group name must be 'unet.context.<modality>' or 'unet.data.<modality>', "
                                f"got {component!r}")
        if modality in ("image", "text"):
            raise RegistryError(f"{component!r} is a built-in VD layer group and cannot be replaced")
        if component in self.model_groups:
            raise RegistryError(f"model group {component!r} is already registered by "
                                f"{self._group_owner[component]!r}; it cannot be replaced")
        if not callable(getattr(provider, "build", None)):
            raise RegistryError(f"model group {component!r}: the provider needs a build(config) method")
        self.model_groups[component] = provider
        self._group_owner[component] = owner

    def add_file_migration(self, from_version: int, upgrade: FileMigration, *, owner: str = "core") -> None:
        if from_version in self.file_migrations:
            raise RegistryError(f"a migration from graph format version {from_version} exists "
                                f"(added by {self.owner_of('file_migration', str(from_version))!r})")
        self.file_migrations[from_version] = upgrade
        self._other_owner[("file_migration", str(from_version))] = owner

    # -- rollback (a plugin that fails half-way leaves nothing behind) ----------
    def _tables(self) -> list[dict[Any, Any]]:
        """Every table a registration writes to; a new table must be listed here."""
        return [self._nodes, self._owner, self.file_migrations, self.model_groups, self._group_owner,
                self._other_owner, self.types.defs, self.types.modalities]

    def checkpoint(self) -> list[dict[Any, Any]]:
        """A copy of the registry's state, for ``rollback``."""
        return [dict(t) for t in self._tables()]

    def rollback(self, checkpoint: list[dict[Any, Any]]) -> None:
        """Forget everything registered since ``checkpoint`` (tables are restored in place)."""
        for table, saved in zip(self._tables(), checkpoint, strict=True):
            table.clear()
            table.update(saved)

    # -- lookup -------------------------------------------------------------
    def get(self, node_type: str) -> NodeDecl:
        try:
            return self._nodes[node_type]
        except KeyError:
            raise KeyError(f"unknown node type {node_type!r}{suggest(node_type, self._nodes)}") from None

    def __contains__(self, node_type: object) -> bool:
        return node_type in self._nodes

    def __iter__(self):
        return iter(sorted(self._nodes.values(), key=lambda d: (d.category, d.id)))

    def __len__(self) -> int:
        return len(self._nodes)

    def ids(self) -> list[str]:
        return sorted(self._nodes)

    def owner(self, node_type: str) -> str:
        return self._owner[node_type]

    def owner_of(self, kind: str, key: str) -> str:
        """Who added a ``"node"``, ``"model_group"``, ``"type"``, ``"modality"`` or ``"file_migration"``."""
        if kind == "node":
            return self._owner[key]
        if kind == "model_group":
            return self._group_owner[key]
        return self._other_owner.get((kind, key), "core")  # built-in types predate the registry

    def suggestion(self, node_type: str) -> str:
        return suggest(node_type, self._nodes)

    def by_category(self) -> dict[str, list[NodeDecl]]:
        cats: dict[str, list[NodeDecl]] = {}
        for d in self:
            cats.setdefault(d.category, []).append(d)
        return cats

    def search(self, text: str) -> list[NodeDecl]:
        """Nodes whose id, title, category, tags or doc mention every word of ``text``."""
        words = text.lower().split()
        hits = []
        for d in self:
            hay = " ".join([d.id, d.display_name, d.category, d.doc, *d.tags]).lower()
            if all(w in hay for w in words):
                hits.append(d)
        return hits


def newest_first(versions: Iterable[str]) -> list[str]:
    return sorted(versions, key=parse_version, reverse=True)
