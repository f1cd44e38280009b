"""The Versatile Diffusion network: plain torch modules, loaders and samplers.

Nothing here knows about nodes, graphs or the GUI. Submodules are imported
explicitly (``from vdnodes.model import unet``); this file imports nothing.
"""
