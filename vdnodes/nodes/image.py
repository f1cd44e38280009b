"""Image utility nodes: resize and VD's colour adjustments."""

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


@node("image.match_colors", version="1.1.0", category="image", title="Match colours",
      doc="VD's colour adjustment toward a reference image (used after image variation and I2T2I "
          "editing). 'mean_std': VD v2 demo's 'Simple', each RGB channel's mean and spread matched "
          "in float. 'v1_simple' / 'v1_histogram': VD v1's inference.py on 8-bit data, the mean/std "
          "match or a per-channel histogram (pdf) transfer, blended with the raw image by 'keep'.",
      inputs={"image": In("Image"), "reference": In("Image")},
      params={"mode": Param("Enum", "mean_std", choices=("mean_std", "v1_simple", "v1_histogram"),
                            doc="Which of VD's adjustments."),
              "strength": Param("Float", 1.0, min=0.0, max=1.0,
                                doc="Mode 'mean_std': 0 keeps the image, 1 fully matches the reference."),
              "keep": Param("Float", 0.5, min=0.0, max=1.0,
                            doc="v1 modes: share of the raw image in the result (VD v1: 0.5).")},
      outputs={"image": Out("Image")})
def match_colors_node(ctx, image, reference, mode: str, strength: float, keep: float):
    from vdnodes.model.procedures import match_colors

    if mode == "mean_std":
        return match_colors(image.float(), reference.float().to(image.device), strength)
    from vdnodes.model.colour_v1 import match_colors_v1

    return match_colors_v1(image.float(), reference.float(), histogram=mode == "v1_histogram", keep=keep)


@node("image.to_mask", version="1.0.0", category="image", title="Image to mask",
      doc="One channel of an image as a mask for 'Encode image (CLIP)'. VD's blenders take the "
          "painted strokes (white = painted) and keep 1 - painted, so 'invert' is on by default.",
      inputs={"image": In("Image")},
      params={"channel": Param("Enum", "red", choices=("red", "green", "blue", "mean"),
                               doc="Which channel (VD reads the first: red)."),
              "invert": Param("Bool", True, doc="Keep = 1 - channel (painted areas are dropped), as VD.")},
      outputs={"mask": Out("Mask")})
def image_to_mask(ctx, image, channel: str, invert: bool):
    image = image.float()
    m = image.mean(dim=1, keepdim=True) if channel == "mean" else image[:, ("red", "green", "blue").index(channel)][:, None]
    return (1 - m if invert else m).clamp(0, 1)
