"""The built-in nodes, one module per stage, and the registry they fill.

Node modules import only ``vdnodes.core`` at module level; torch, Pillow and
the model code are imported inside node bodies so listing and validating
graphs stays fast.
"""

from __future__ import annotations

import importlib

from vdnodes.core.registry import Registry

# Modules whose NodeDecls make up the core node set, in palette order.
BUILTIN_MODULES = (
    "vdnodes.nodes.models", "vdnodes.nodes.io", "vdnodes.nodes.encode", "vdnodes.nodes.disentangle",
    "vdnodes.nodes.blend", "vdnodes.nodes.denoise", "vdnodes.nodes.edit", "vdnodes.nodes.decode",
    "vdnodes.nodes.image",
)


def build_registry() -> Registry:
    """A registry holding every built-in node (plugins are added by the caller)."""
    registry = Registry()
    for name in BUILTIN_MODULES:
        registry.register_module(importlib.import_module(name))
    return registry
