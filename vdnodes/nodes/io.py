"""Input/output nodes: text, images and files in, images and text out.

Saved PNGs carry the graph that made them (``vdnodes.graph`` text chunk) and a
run manifest, so ``vdnodes run picture.png`` runs it again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vdnodes.core.errors import NodeInputError
from vdnodes.core.executor import resolve_user_path
from vdnodes.core.node import In, Out, Param, node

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def _file_fingerprint(params: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """Content hash of the file a loader reads, so editing the file re-runs the node."""
    path = Path(resolve_user_path(params["path"], env["base_dir"]))
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        return f"unreadable:{path}:{type(e).__name__}"


def _image_preflight(params: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """The image file exists and Pillow recognises it (header only; no pixels decoded)."""
    from PIL import Image, UnidentifiedImageError

    if not params["path"]:
        return "no image file given (set the 'path' param)"
    path = Path(resolve_user_path(params["path"], env["base_dir"]))
    if not path.is_file():
        return f"image file not found: {path}"
    try:
        with Image.open(path) as im:
            im.verify()
    except UnidentifiedImageError:
        return f"{path} is not an image file Pillow can read"
    except (OSError, ValueError, SyntaxError) as e:
        return f"cannot read image {path}: {e}"
    return None


@node("vd.text", version="1.0.0", category="input", title="Text",
      doc="A prompt or sentence typed in the graph. One line per batch item when 'split_lines' is on.",
      params={"text": Param("String", "", doc="The text.", widget="multiline"),
              "split_lines": Param("Bool", False, doc="Treat each non-empty line as its own item.")},
      outputs={"text": Out("Text", "A batch of strings.")})
def text_input(ctx, text: str, split_lines: bool) -> list[str]:
    if split_lines:
        items = [line.strip() for line in text.splitlines() if line.strip()]
        return items or [""]
    return [text]


@node("vd.load_image", version="1.0.0", category="input", title="Load image",
      purity="external", fingerprint=_file_fingerprint, preflight=_image_preflight,
      doc="Read an image file (PNG, JPEG, WebP...) as an RGB tensor [1,3,H,W] in [0,1]. "
          "Relative paths are resolved against the graph file's folder.",
      params={"path": Param("Path", "", doc="Image file to read.", widget="file"),
              "size": Param("Int", 0, min=0, max=4096,
                            doc="Resize to size x size pixels (0 keeps the original size).")},
      outputs={"image": Out("Image")})
def load_image(ctx, path: str, size: int):
    import numpy as np
    import torch
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path:
        raise NodeInputError("no image file given", socket="path", hint="set the 'path' param")
    file = Path(ctx.resolve_path(path))
    if not file.exists():
        raise NodeInputError(f"image file not found: {file}", socket="path")
    try:
        with Image.open(file) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            if size:
                im = im.resize((size, size), Image.Resampling.BICUBIC)
            array = np.asarray(im, dtype=np.float32) / 255.0  # [H, W, 3]
    except UnidentifiedImageError:
        raise NodeInputError(f"{file} is not an image file Pillow can read", socket="path") from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data
        raise NodeInputError(f"cannot read image {file}: {e}", socket="path") from None
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()  # [1, 3, H, W]


def _next_free(out_dir: Path, prefix: str, suffix: str, count: int) -> list[Path]:
    """``count`` new file names ``prefix_00001.suffix``...; never overwrites an existing file."""
    pattern = re.compile(re.escape(prefix) + r"_(\d{5})" + re.escape(suffix) + "$")
    taken = [int(m[1]) for p in out_dir.glob(f"{prefix}_*{suffix}") if (m := pattern.match(p.name))]
    start = max(taken, default=0) + 1
    return [out_dir / f"{prefix}_{i:05d}{suffix}" for i in range(start, start + count)]


def _safe_prefix(prefix: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", prefix).strip("._")
    if not cleaned:
        raise NodeInputError("the file name prefix is empty", socket="prefix")
    return cleaned


def run_manifest(ctx) -> dict[str, Any]:
    """What produced an output: node versions, seeds, device, dtype, library versions."""
    import platform

    import vdnodes

    manifest: dict[str, Any] = {
        "vdnodes": vdnodes.__version__,
        "python": platform.python_version(),
        "device": ctx.device,
        "dtype": ctx.dtype,
        "nodes": {nid: {"type": s.type, "version": s.version} for nid, s in ctx.graph.nodes.items()},
        "seed": ctx.services.get("run_seed"),
    }
    try:
        import torch

        manifest["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    extra = ctx.services.get("manifest")
    if callable(extra):
        manifest.update(extra())
    return manifest


@node("vd.save_image", version="1.0.0", category="output", title="Save image", output_node=True,
      doc="Write images as PNG files into the run's output folder (--out), never overwriting. "
          "Each PNG embeds the graph and a run manifest.",
      inputs={"image": In("Image")},
      params={"prefix": Param("String", "vdnodes", doc="File name prefix."),
              "embed_graph": Param("Bool", True, doc="Store the graph and manifest in the PNG.")},
      outputs={"paths": Out("List[Path]", "The files written.")})
def save_image(ctx, image, prefix: str, embed_graph: bool) -> list[str]:
    import numpy as np
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from vdnodes.core.graph import dump_graph
    from vdnodes.core.fileio import atomic_write_bytes
    from vdnodes.core.pngmeta import GRAPH_KEY, MANIFEST_KEY
    import io

    out_dir = Path(ctx.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to("cpu").numpy().astype(np.uint8)
    info = None
    if embed_graph:
        info = PngInfo()
        info.add_itxt(GRAPH_KEY, dump_graph(ctx.graph), zip=True)
        info.add_itxt(MANIFEST_KEY, json.dumps(run_manifest(ctx), sort_keys=True), zip=True)
    paths = []
    for target, array in zip(_next_free(out_dir, _safe_prefix(prefix), ".png", len(pixels)), pixels):
        buf = io.BytesIO()
        Image.fromarray(array.transpose(1, 2, 0)).save(buf, format="PNG", pnginfo=info)
        atomic_write_bytes(target, buf.getvalue())
        paths.append(str(target))
    return paths


@node("vd.save_text", version="1.0.0", category="output", title="Save text", output_node=True,
      doc="Write a batch of strings to a UTF-8 text file (one item per line) in the output folder.",
      inputs={"text": In("Text")},
      params={"prefix": Param("String", "vdnodes", doc="File name prefix.")},
      outputs={"paths": Out("List[Path]", "The file written.")})
def save_text(ctx, text: list[str], prefix: str) -> list[str]:
    from vdnodes.core.fileio import atomic_write_text

    out_dir = Path(ctx.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (target,) = _next_free(out_dir, _safe_prefix(prefix), ".txt", 1)
    atomic_write_text(target, "\n".join(text) + "\n")
    return [str(target)]
