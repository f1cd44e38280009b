"""The palette nodes: make a palette, read one from an image, encode it as a VD context."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from vdnodes.core.errors import NodeInputError
from vdnodes.core.node import In, Out, Param, node

# vd-nano's colour names (vdnodes.nano.scenes.COLORS) are accepted besides #rrggbb.
NAMED = {
    "red": (220, 40, 40), "orange": (245, 140, 20), "yellow": (240, 220, 40), "green": (40, 170, 60),
    "blue": (40, 80, 220), "purple": (150, 50, 190), "white": (240, 240, 240), "black": (25, 25, 25),
}
COLOR_DOC = "a colour name (" + ", ".join(NAMED) + ") or #rrggbb; empty leaves it to the model"


@dataclass(frozen=True)
class Palette:
    """What a ``Palette`` socket carries: RGB in [0, 1] per role (object, background), or None."""

    object: tuple[float, float, float] | None
    background: tuple[float, float, float] | None

    def describe(self) -> str:
        def hexed(c):
            return "-" if c is None else "#" + "".join(f"{round(v * 255):02x}" for v in c)

        return f"object {hexed(self.object)}, background {hexed(self.background)}"


def parse_color(text: str, socket: str) -> tuple[float, float, float] | None:
    """A colour name or ``#rrggbb`` -> RGB in [0, 1]; empty -> None."""
    value = text.strip().lower()
    if not value:
        return None
    if value in NAMED:
        return tuple(v / 255 for v in NAMED[value])  # type: ignore[return-value]
    if re.fullmatch(r"#?[0-9a-f]{6}", value):
        h = value.lstrip("#")
        return tuple(int(h[i:i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]
    raise NodeInputError(f"{text!r} is not a colour", socket=socket, hint=f"use {COLOR_DOC}")


@node("palette.colors", version="1.0.0", category="palette", title="Palette",
      doc="A colour palette: the object's colour and the background's. Encode it with 'Encode "
          "palette' and use it like any context (alone, or mixed with text or an image context).",
      params={"object": Param("String", "red", doc="Object colour: " + COLOR_DOC + "."),
              "background": Param("String", "blue", doc="Background colour: " + COLOR_DOC + ".")},
      outputs={"palette": Out("Palette")})
def palette_colors(ctx, object: str, background: str):
    palette = Palette(parse_color(object, "object"), parse_color(background, "background"))
    if palette.object is None and palette.background is None:
        raise NodeInputError("the palette is empty", socket="object", hint="set at least one colour")
    return palette


@node("palette.from_image", version="1.0.0", category="palette", title="Palette from image",
      doc="Read a palette from an image: the background is the median colour of the border, the "
          "object the median of the pixels that differ most from it.",
      inputs={"image": In("Image")}, outputs={"palette": Out("Palette")})
def palette_from_image(ctx, image):
    import torch

    x = image[0].float().permute(1, 2, 0).reshape(-1, 3) if image.ndim == 4 else None  # [H*W, 3]
    if x is None:
        raise NodeInputError(f"expected an image [B,3,H,W], got {list(image.shape)}", socket="image")
    h, w = image.shape[-2:]
    grid = image[0].float().permute(1, 2, 0)  # [H, W, 3]
    border = torch.cat([grid[0], grid[-1], grid[:, 0], grid[:, -1]])  # [2H + 2W, 3]
    background = border.median(dim=0).values
    distance = (x - background).norm(dim=-1)  # [H*W]
    far = distance > max(0.15, float(distance.quantile(0.9)) * 0.5)
    obj = x[far].median(dim=0).values if far.any() else None
    return Palette(None if obj is None else tuple(obj.tolist()), tuple(background.tolist()))


def base_mismatch(model: Any) -> str | None:
    """Why the palette layers may not fit ``model`` (a ``VDHandle``), or None when they do.

    The layers were trained against one vd-nano file (its sha256 is stored with them); on any
    other weights they run, but steer colours only as well as that UNet happens to agree.
    """
    from vdnodes_palette.model import record

    base = record().get("base_sha256")
    if not base:
        return None
    digests = model.manager.weight_digests(model.spec).values()
    if f"sha256:{base}" in digests:
        return None
    return (f"the palette layers were trained on another vd-nano (sha256 {base[:12]}...) than this model's "
            "weights, so the palette may not steer colours; retrain them for this model with "
            "`python -m vdnodes_palette.train --install`")


@node("palette.encode", version="1.0.0", category="palette", title="Encode palette",
      doc="A palette -> context tokens [B,2,D] for the UNet's palette layers (unet.context.palette, "
          "trained for vd-nano with every other layer frozen).",
      inputs={"model": In("VDModel"), "palette": In("Palette")},
      params={"batch": Param("Int", 1, min=1, max=64, doc="Copies of the palette (batch size).")},
      outputs={"context": Out("Context[palette]")})
def palette_encode(ctx, model, palette: Palette, batch: int):
    import torch

    from vdnodes.nodes.values import Conditioning
    from vdnodes_palette.model import load_encoder

    config = model.config()
    if config.unet.context_dim != 64:
        raise NodeInputError(f"the palette layers were trained for vd-nano (context width 64); this model's "
                             f"context width is {config.unet.context_dim}", socket="model",
                             hint="use the default model (source 'nano')")
    stale = base_mismatch(model)
    if stale:
        ctx.warn(stale)
    encoder = load_encoder().to(device=model.device, dtype=model.dtype)
    rgb = torch.tensor([[c or (0.0, 0.0, 0.0) for c in (palette.object, palette.background)]])  # [1, 2, 3]
    present = torch.tensor([[palette.object is not None, palette.background is not None]])
    with torch.inference_mode():
        tokens = encoder(rgb.to(model.device), present.to(model.device)).expand(batch, -1, -1)
    return Conditioning.single(tokens, torch.zeros_like(tokens), "palette")
