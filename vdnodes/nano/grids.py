"""Sample grids of vd-nano's flows (PNG), for docs/nano.md and the README.

Each grid is one flow: a column per case, rows for the input (image or words) and the
output, pixels scaled up 4x without smoothing so the 32 px scenes stay readable.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from vdnodes.core.fileio import atomic_write_bytes

SCALE = 4
CELL = 32 * SCALE  # px
LABEL = 44  # px of text under a row
COLUMNS = 8
BACKGROUND = (250, 250, 250)
INK = (20, 20, 20)


def _tile(image: torch.Tensor) -> Image.Image:
    array = (image.detach().float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
    return Image.fromarray(array).resize((CELL, CELL), Image.Resampling.NEAREST)


def _words(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, width_chars: int = 21) -> None:
    lines = textwrap.wrap(text, width_chars)[:3] or [""]
    draw.multiline_text(xy, "\n".join(lines), fill=INK, spacing=1)


def grid(rows: Sequence[tuple[str, Sequence[torch.Tensor | None], Sequence[str]]]) -> Image.Image:
    """One image from rows of (title, images or None per column, labels per column)."""
    columns = max(max(len(imgs), len(labels)) for _, imgs, labels in rows)
    title_w = 92
    heights = [(CELL if any(i is not None for i in imgs) else 0) + (LABEL if any(labels) else 0)
               for _, imgs, labels in rows]
    canvas = Image.new("RGB", (title_w + columns * (CELL + 4), sum(heights) + 6 * len(rows)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = 0
    for (title, imgs, labels), h in zip(rows, heights):
        draw.multiline_text((4, y + 4), "\n".join(textwrap.wrap(title, 14)), fill=INK)
        for c in range(columns):
            x = title_w + c * (CELL + 4)
            top = y
            if c < len(imgs) and imgs[c] is not None:
                canvas.paste(_tile(imgs[c]), (x, top))
            if any(i is not None for i in imgs):
                top += CELL
            if c < len(labels) and labels[c]:
                _words(draw, (x + 1, top + 2), labels[c])
        y += h + 6
    return canvas


def _save(image: Image.Image, path: Path) -> Path:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return atomic_write_bytes(path, buf.getvalue())


def flow_grids(keep: dict[str, Any], n: int = COLUMNS) -> dict[str, Image.Image]:
    """Grid images for the flows present in ``keep`` (``quality.measure(..., keep=...)``)."""
    out: dict[str, Image.Image] = {}
    none = [None] * n
    if "t2i" in keep:
        c = keep["t2i"]
        out["t2i"] = grid([("prompt", none, c.extra["prompts"][:n]), ("text -> image", list(c.images[:n]), [])])
    if "i2i" in keep:
        c = keep["i2i"]
        out["i2i"] = grid([("input", list(c.extra["sources"][:n]), []), ("variation", list(c.images[:n]), [])])
    if "i2t" in keep:
        c = keep["i2t"]
        out["i2t"] = grid([("input", list(c.extra["sources"][:n]), []), ("image -> text", none, c.texts[:n])])
    if "t2t" in keep:
        c = keep["t2t"]
        out["t2t"] = grid([("prompt", none, c.extra["prompts"][:n]), ("text variation", none, c.texts[:n])])
    if "dual" in keep:
        c = keep["dual"]
        out["dual"] = grid([("image", list(c.extra["sources"][:n]), []), ("+ text", none, c.extra["colors"][:n]),
                            ("dual-guided", list(c.images[:n]), [])])
    if "disentangle" in keep:
        semantic, style = keep["disentangle"]
        out["disentangle"] = grid([("input", list(semantic.extra["sources"][:n]), []),
                                   (f"semantic focus {semantic.extra['focus']}", list(semantic.images[:n]), []),
                                   (f"style focus {style.extra['focus']}", list(style.images[:n]), [])])
    if "i2t2i" in keep:
        c = keep["i2t2i"]
        edits = [f"-{s.color} +{col}" for s, col in zip(c.scenes[:n], c.extra["colors"][:n])]
        out["i2t2i"] = grid([("input", list(c.extra["sources"][:n]), c.extra["captions"][:n]),
                             ("edit", none, edits), ("edited sentence", none, c.texts[:n]),
                             ("I2T2I", list(c.images[:n]), [])])
    if "vae" in keep:
        c = keep["vae"]
        out["vae"] = grid([("input", list(c.extra["sources"][:n]), []), ("VAE encode -> decode", list(c.images[:n]), [])])
    return out


def write_grids(keep: dict[str, Any], folder: Path, prefix: str = "nano_") -> list[Path]:
    """Write one ``<prefix><flow>.png`` per flow into ``folder``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    return [_save(image, folder / f"{prefix}{flow}.png") for flow, image in flow_grids(keep).items()]
