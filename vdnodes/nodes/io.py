"""Input/output nodes: text, images and files in, images and text out.

Saved PNGs carry the graph that made them (``vdnodes.graph`` text chunk) and a
run manifest, so ``vdnodes run picture.png`` runs it again.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from vdnodes.core.errors import NodeInputError
from vdnodes.core.provenance import file_digest, record_inputs, resolve_user_path
from vdnodes.core.node import In, Out, Param, node

MAX_PREFIX = 200  # characters; the name, its counter and its temp-file decoration stay under 255 bytes
PREFIX_DOC = (f"File name prefix: files are named PREFIX_00001.png and so on (at most {MAX_PREFIX} characters; "
              "characters other than letters, digits, '_', '.' and '-' become '_').")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def _file_fingerprint(params: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """Content hash of the file a loader reads, so editing the file re-runs the node."""
    from vdnodes.core.limits import file_kind_problem, max_input_bytes

    path = Path(resolve_user_path(params["path"], env["base_dir"], env.get("located")))
    why = file_kind_problem(path, "image file", max_bytes=max_input_bytes())
    if why:  # never read a FIFO, a device or a huge file; the node itself reports why
        return f"unreadable:{path}:{why}"
    try:
        return file_digest(path)
    except OSError as e:
        return f"unreadable:{path}:{type(e).__name__}"


def _image_preflight(params: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """The image file is a regular file within the limits that Pillow recognises (header only)."""
    from vdnodes.core.errors import UserInputError

    if not params["path"]:
        return "no image file given (set the 'path' param)"
    path = Path(resolve_user_path(params["path"], env["base_dir"], env.get("located")))
    try:
        with open_image(path):
            pass
    except UserInputError as e:
        return str(e)
    return None


def open_image(path: Path):
    """Pillow's lazy image of ``path`` after the file-kind, size and pixel-count checks.

    Nothing is decoded yet; raises ``UserInputError`` (exit 2) for every reason the
    file cannot be used, each naming the file and, for a limit, how to raise it.
    """
    from PIL import Image, PngImagePlugin, UnidentifiedImageError

    from vdnodes.core.errors import UserInputError
    from vdnodes.core.limits import check_input_file, pixels_problem
    from vdnodes.core.pngmeta import MAX_TEXT_BYTES

    check_input_file(path, "image file")
    # A PNG saved by vdnodes may carry a large graph: read back every text chunk vdnodes writes.
    PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, MAX_TEXT_BYTES)
    PngImagePlugin.MAX_TEXT_MEMORY = max(PngImagePlugin.MAX_TEXT_MEMORY, 2 * MAX_TEXT_BYTES)
    pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # ours decides, from the header
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise UserInputError(f"{path} is not an image file Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt header
        raise UserInputError(f"cannot read image {path}: {e}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    why = pixels_problem(path, *im.size)
    if why:
        im.close()
        raise UserInputError(why)
    return im


def image_pixels(im, size: int = 0):
    """An RGB float32 array [H, W, 3] in [0, 1] from any Pillow mode, resized to ``size`` if set.

    8-bit modes go through Pillow's own conversion. 16- and 32-bit integer images are
    scaled by their bit depth (a 16-bit PNG by 65535, not clipped at 255), and float images
    by their real range: as they are within [0, 1], else min..max.
    """
    import numpy as np
    from PIL import Image

    if not (im.mode.startswith("I;16") or im.mode in ("I", "F")):
        rgb = im.convert("RGB")
        if size:
            rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(rgb, dtype=np.float32) / 255.0
    data = np.asarray(im, dtype=np.float64)
    if im.mode == "F":
        finite = data[np.isfinite(data)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if lo < 0.0 or hi > 1.0:
            data = (data - lo) / (hi - lo) if hi > lo else np.zeros_like(data)
    else:
        bits = 16 if im.mode.startswith("I;16") or float(data.max(initial=0)) <= 65535 else 32
        data = data / float(2**bits - 1)
    gray = np.nan_to_num(np.clip(data, 0.0, 1.0)).astype(np.float32)
    if size:
        gray = np.asarray(Image.fromarray(gray, mode="F").resize((size, size), Image.Resampling.BICUBIC))
        gray = np.clip(gray, 0.0, 1.0).astype(np.float32)
    return np.repeat(gray[:, :, None], 3, axis=2)


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
      params={"path": Param("Path", "", doc="Image file to read.", widget="file", input_file=True),
              "size": Param("Int", 0, min=0, max=4096,
                            doc="Resize to size x size pixels (0 keeps the original size).")},
      outputs={"image": Out("Image")})
def load_image(ctx, path: str, size: int):
    import torch
    from PIL import ImageOps

    from vdnodes.core.errors import UserInputError

    if not path:
        raise NodeInputError("no image file given", socket="path", hint="set the 'path' param")
    file = Path(ctx.resolve_path(path))
    try:
        with open_image(file) as im:
            array = image_pixels(ImageOps.exif_transpose(im), size)  # [H, W, 3]
    except UserInputError as e:
        raise NodeInputError(str(e), socket="path") from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data
        raise NodeInputError(f"cannot read image {file}: {e}", socket="path") from None
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()  # [1, 3, H, W]


def _names(out_dir: Path, prefix: str, suffix: str) -> Iterator[Path]:
    """``prefix_00001.suffix``, ``prefix_00002.suffix``... from after the highest one in ``out_dir``."""
    pattern = re.compile(re.escape(prefix) + r"_(\d{5,})" + re.escape(suffix) + "$")
    taken = [int(m[1]) for p in out_dir.glob(f"{prefix}_*{suffix}") if (m := pattern.match(p.name))]
    return (out_dir / f"{prefix}_{i:05d}{suffix}" for i in itertools.count(max(taken, default=0) + 1))


def _write_output(out_dir: Path, prefix: str, suffix: str, data: bytes) -> str:
    """Write a new output file under a name no other file (or concurrent run) holds."""
    from vdnodes.core.fileio import write_new_file

    return str(write_new_file(_names(out_dir, prefix, suffix), data))


def _output_dir(ctx) -> Path:
    from vdnodes.core.fileio import remove_stale_temps

    out_dir = Path(ctx.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)  # left by a writer that was killed mid-save
    return out_dir


def _clean_prefix(prefix: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", prefix).strip("._")


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot start output file names, or None (checked when the graph is validated).

    Characters other than letters, digits, ``_``, ``.`` and ``-`` become ``_``, so only
    the length and a prefix with nothing usable are refused.
    """
    if not _clean_prefix(prefix):
        return "the file name prefix has no letter or digit; give one such as 'image'"
    if len(prefix) > MAX_PREFIX:
        return f"the file name prefix is {len(prefix)} characters long; at most {MAX_PREFIX} fit in a file name"
    return None


def _safe_prefix(prefix: str) -> str:
    why = prefix_problem(prefix)
    if why:
        raise NodeInputError(why, socket="prefix")
    return _clean_prefix(prefix)


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
        "seed": getattr(ctx, "run_seed", None),
        "inputs": record_inputs(ctx.graph, getattr(ctx, "registry", None), ctx.base_dir),
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
      params={"prefix": Param("String", "vdnodes", doc=PREFIX_DOC, check=prefix_problem),
              "embed_graph": Param("Bool", True, doc="Store the graph and manifest in the PNG.")},
      outputs={"paths": Out("List[Path]", "The files written.")})
def save_image(ctx, image, prefix: str, embed_graph: bool) -> list[str]:
    import io

    import numpy as np
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from vdnodes.core.graph import dump_graph
    from vdnodes.core.pngmeta import GRAPH_KEY, MANIFEST_KEY, MAX_TEXT_BYTES

    out_dir, name = _output_dir(ctx), _safe_prefix(prefix)
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to("cpu").numpy().astype(np.uint8)
    info = None
    if embed_graph:
        graph_text = dump_graph(ctx.graph.original or ctx.graph)  # bypassed nodes included
        if len(graph_text.encode("utf-8")) > MAX_TEXT_BYTES:  # vdnodes could not read it back
            ctx.warn(f"the graph is over {MAX_TEXT_BYTES // 1024**2} MiB of JSON; saved without it")
        else:
            info = PngInfo()
            info.add_itxt(GRAPH_KEY, graph_text, zip=True)
            info.add_itxt(MANIFEST_KEY, json.dumps(run_manifest(ctx), sort_keys=True), zip=True)
    paths = []
    for array in pixels:
        buf = io.BytesIO()
        Image.fromarray(array.transpose(1, 2, 0)).save(buf, format="PNG", pnginfo=info)
        paths.append(_write_output(out_dir, name, ".png", buf.getvalue()))
    return paths


@node("vd.save_text", version="1.0.0", category="output", title="Save text", output_node=True,
      doc="Write a batch of strings to a UTF-8 text file (one item per line) in the output folder.",
      inputs={"text": In("Text")},
      params={"prefix": Param("String", "vdnodes", doc=PREFIX_DOC, check=prefix_problem)},
      outputs={"paths": Out("List[Path]", "The file written.")})
def save_text(ctx, text: list[str], prefix: str) -> list[str]:
    data = ("\n".join(text) + "\n").encode("utf-8", errors="replace")
    return [_write_output(_output_dir(ctx), _safe_prefix(prefix), ".txt", data)]
