"""vdnodes-palette: a colour palette as a new VD conditioning modality for vd-nano.

A palette (an object colour and a background colour) is encoded into two context tokens by a
small ``PaletteEncoder``; the UNet reads them through its own context layer group
``unet.context.palette`` (one cross-attention transformer per context slot, as VD's image and
text groups). Everything else of vd-nano stays frozen: the palette mixes with text or image
contexts in every slot exactly like VD's dual guidance.

Modules: ``model`` (encoder, layer group, weights file), ``nodes`` (the graph nodes),
``plugin`` (manifest + ``register``), ``train`` (``python -m vdnodes_palette.train``),
``evaluate`` (``python -m vdnodes_palette.evaluate``).
"""

__version__ = "0.1.0"
