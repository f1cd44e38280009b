"""A minimal vdnodes plugin: one node that inverts images. Copy this folder to start your own."""

from vdnodes.core.node import In, Out, Param, node

MANIFEST = {
    "name": "minimal",  # the entry point's name in pyproject.toml
    "version": "0.1.0",
    "requires": ">=0.1",  # the vdnodes versions it works with (a PEP 440 specifier)
    "description": "Invert images (the example plugin).",
    "adds": {"nodes": ["minimal.invert_image"]},  # everything register() adds, listed
}


@node("minimal.invert_image", version="1.0.0", category="image", title="Invert image",
      doc="Invert the colours of images: each channel value v becomes 1 - v.",
      inputs={"image": In("Image")},
      params={"amount": Param("Float", 1.0, min=0.0, max=1.0, doc="0 keeps the image, 1 fully inverts it.")},
      outputs={"image": Out("Image")})
def invert_image(ctx, image, amount: float):
    return image + amount * (1 - 2 * image)  # (1 - amount) * v + amount * (1 - v); no torch import needed


def register(api):
    api.add_nodes(__name__)  # every node declared in this module, owned by this plugin
