"""The built-in nodes, one module per stage, and the registry they fill.

Node modules import only ``vdnodes.core`` at module level; torch, Pillow and
the model code are imported inside node bodies so listing and validating
graphs stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from vdnodes.core.registry import Registry

if TYPE_CHECKING:
    from vdnodes.plugins import PluginReport

# Modules whose NodeDecls make up the core node set, in palette order.
BUILTIN_MODULES = (
    "vdnodes.nodes.models", "vdnodes.nodes.io", "vdnodes.nodes.encode", "vdnodes.nodes.disentangle",
    "vdnodes.nodes.blend", "vdnodes.nodes.denoise", "vdnodes.nodes.edit", "vdnodes.nodes.decode",
    "vdnodes.nodes.image", "vdnodes.nodes.primitives",
)


def build_registry() -> Registry:
    """A registry holding every built-in node (plugins are added by the caller)."""
    registry = Registry()
    for name in BUILTIN_MODULES:
        registry.register_module(importlib.import_module(name))
    return registry


def build_registry_with_plugins(*, enabled: bool | None = None, allow: Iterable[str] | None = None
                                ) -> tuple[Registry, PluginReport]:
    """The built-in nodes plus every plugin that loads (see ``vdnodes.plugins.load_plugins``).

    ``enabled=None`` follows ``VDNODES_NO_PLUGINS``; ``allow`` names the only plugins to load.
    A plugin that fails is skipped and reported, never raised.
    """
    from vdnodes.plugins import load_plugins, safe_mode_from_env

    registry = build_registry()
    report = load_plugins(registry, allow=allow, enabled=not safe_mode_from_env() if enabled is None else enabled)
    return registry, report
