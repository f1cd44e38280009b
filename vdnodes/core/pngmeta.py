"""Read text chunks from a PNG without Pillow (stdlib only).

vdnodes embeds the graph and a run manifest in the PNGs it saves
(``tEXt``/``iTXt``/``zTXt`` chunks). Reading them back must work in ``core`` (no
Pillow, no torch) so ``vdnodes run image.png`` and ``validate`` stay light.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRAPH_KEY = "vdnodes.graph"
MANIFEST_KEY = "vdnodes.manifest"


def is_png(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == PNG_SIGNATURE
    except OSError:
        return False


def read_png_text(path: str | Path) -> dict[str, str]:
    """All text chunks of a PNG as ``{keyword: text}``. Raises ValueError on a bad file."""
    data = Path(path).read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError(f"{path} is not a PNG file")
    out: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise ValueError(f"{path} is truncated (chunk {kind!r} cut short)")
        pos += 12 + length
        if kind == b"tEXt":
            key, _, text = body.partition(b"\0")
            out[key.decode("latin-1")] = text.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            out[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _lang, _, rest = rest.partition(b"\0")
            _tkey, _, text = rest.partition(b"\0")
            text = zlib.decompress(text) if compressed else text
            out[key.decode("latin-1")] = text.decode("utf-8")
        elif kind == b"IEND":
            break
    return out
