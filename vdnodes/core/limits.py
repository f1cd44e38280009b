"""Limits on what vdnodes reads, checked before anything is decoded.

A path that names a FIFO would block a read forever, a device file would fill memory, and a
small compressed image can hold billions of pixels. Every file vdnodes reads (graphs, images,
PNG metadata, checkpoints) goes through ``check_input_file`` first, and images through
``check_pixels`` before their pixels are decoded. Both raise ``UserInputError`` (exit 2)
saying what the limit is and how to raise it. See docs/reliability.md.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vdnodes.core.errors import UserInputError

MAX_IMAGE_PIXELS_ENV = "VDNODES_MAX_IMAGE_PIXELS"
MAX_INPUT_BYTES_ENV = "VDNODES_MAX_INPUT_BYTES"
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000  # an 8,660 x 5,773 photograph; a 48-megapixel phone camera fits
DEFAULT_MAX_INPUT_BYTES = 512 * 1024**2  # images and graph files; checkpoints have no size limit


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise UserInputError(f"{name}={text!r} is not a whole number") from None
    if value <= 0:
        raise UserInputError(f"{name}={text!r} must be a positive number")
    return value


def max_image_pixels() -> int:
    """The largest image (width x height) vdnodes decodes; ``VDNODES_MAX_IMAGE_PIXELS`` overrides it."""
    return _env_int(MAX_IMAGE_PIXELS_ENV, DEFAULT_MAX_IMAGE_PIXELS)


def max_input_bytes() -> int:
    """The largest image or graph file vdnodes reads; ``VDNODES_MAX_INPUT_BYTES`` overrides it."""
    return _env_int(MAX_INPUT_BYTES_ENV, DEFAULT_MAX_INPUT_BYTES)


def file_kind_problem(path: str | os.PathLike[str], what: str, *, folder_ok: bool = False,
                      max_bytes: int | None = None) -> str | None:
    """Why ``path`` cannot be read as ``what`` (missing, not a regular file, too big), or None.

    Uses ``stat`` only: nothing is opened, so a FIFO or a device is never read from.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return f"{what} not found: {p}"
    except OSError as e:
        return f"cannot read {what} {p}: {e.strerror or e}"
    if stat.S_ISDIR(st.st_mode):
        return None if folder_ok else f"{p} is a folder, not a {what}"
    if not stat.S_ISREG(st.st_mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        return f"{p} is {kind}, not a {what}; vdnodes reads only regular files"
    if max_bytes is not None and st.st_size > max_bytes:
        return (f"{p} is {st.st_size / 1024**2:,.1f} MiB, over the {max_bytes / 1024**2:,.0f} MiB limit "
                f"for a {what}; set {MAX_INPUT_BYTES_ENV}=BYTES to raise it")
    return None


def check_input_file(path: str | os.PathLike[str], what: str, *, folder_ok: bool = False,
                     limit_size: bool = True) -> Path:
    """``path`` as a ``Path`` if it is a regular file (or folder, when allowed) within the size limit."""
    why = file_kind_problem(path, what, folder_ok=folder_ok,
                            max_bytes=max_input_bytes() if limit_size else None)
    if why:
        raise UserInputError(why)
    return Path(path)


def pixels_problem(path: str | os.PathLike[str], width: int, height: int) -> str | None:
    """Why an image of ``width`` x ``height`` is too large to decode, or None."""
    limit = max_image_pixels()
    if width * height <= limit:
        return None
    return (f"{path} is {width:,} x {height:,} pixels ({width * height / 1e6:,.1f} megapixels), over the "
            f"{limit / 1e6:,.1f}-megapixel limit; set {MAX_IMAGE_PIXELS_ENV}=PIXELS to raise it "
            "(decoding needs about 12 bytes per pixel)")
