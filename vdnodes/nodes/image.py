"""Image utility nodes: resize and VD's "simple" colour adjustment."""

from __future__ import annotations

from vdnodes.core.node import In, Out, Param, node


@node("image.resize", version="1.0.0", category="image", title="Resize image",
      doc="Resize images to width x height pixels.",
      inputs={"image": In("Image")},
      params={"width": Param("Int", 512, min=8, max=4096, doc="Target width in pixels."),
              "height": Param("Int", 512, min=8, max=4096, doc="Target height in pixels."),
              "mode": Param("Enum", "bicubic", choices=("bicubic", "bilinear", "nearest"),
                            doc="Interpolation.")},
      outputs={"image": Out("Image")})
def resize_image(ctx, image, width: int, height: int, mode: str):
    import torch.nn.functional as F

    extra = {"antialias": True} if mode != "nearest" else {}
    out = F.interpolate(image.float(), size=(height, width), mode=mode, **extra)
    return out.clamp(0, 1)


@node("image.match_colors", version="1.0.0", category="image", title="Match colours",
      doc="VD's 'simple' colour adjustment: shift each RGB channel's mean and spread to match a "
          "reference image (used after image variation and I2T2I editing).",
      inputs={"image": In("Image"), "reference": In("Image")},
      params={"strength": Param("Float", 1.0, min=0.0, max=1.0,
                                doc="0 keeps the image, 1 fully matches the reference.")},
      outputs={"image": Out("Image")})
def match_colors_node(ctx, image, reference, strength: float):
    from vdnodes.model.procedures import match_colors

    return match_colors(image.float(), reference.float().to(image.device), strength)
