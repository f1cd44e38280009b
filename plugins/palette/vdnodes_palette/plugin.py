"""The plugin entry point: manifest and ``register(api)`` (imports no torch: listing stays fast)."""

from __future__ import annotations

MANIFEST = {
    "name": "palette",
    "version": "0.1.0",
    "requires": ">=0.1",
    "description": "A colour palette as a new conditioning modality for vd-nano.",
    "adds": {"types": ["Palette"], "modalities": ["palette"], "model_groups": ["unet.context.palette"],
             "nodes": ["palette.colors", "palette.from_image", "palette.encode"]},
}


def _build_layers(config):
    from vdnodes_palette.model import build_context_layers

    return build_context_layers(config)


def register(api) -> None:
    from vdnodes.core.types import TypeDef

    from vdnodes_palette import nodes

    api.add_type(TypeDef("Palette", "A colour palette: object and background colours.", "#f48fb1"))
    api.add_context_layers("palette", _build_layers, presets=("nano",),
                           doc="Palette context tokens [B,2,64]: object colour, background colour.")
    api.add_nodes(nodes)
