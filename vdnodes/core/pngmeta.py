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
# The largest text chunk vdnodes reads or writes (a 10,000-node graph is about 3 MiB of JSON).
MAX_TEXT_BYTES = 64 * 1024**2


def is_png(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == PNG_SIGNATURE
    except OSError:
        return False


def read_png_text(path: str | Path) -> dict[str, str]:
    """All text chunks of a PNG as ``{keyword: text}``.

    Raises ValueError naming the chunk on any damage: a truncated file, a chunk whose
    compressed text does not inflate, text that is not valid for its chunk kind.
    """
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
        if kind == b"IEND":
            break
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            try:
                key, text = _text_chunk(kind, body)
            except (zlib.error, UnicodeDecodeError, IndexError, ValueError) as e:
                raise ValueError(f"its {kind.decode()} text chunk at byte {pos - 12 - length} is "
                                 f"damaged ({type(e).__name__}: {e})") from None
            out[key] = text
    return out


def _text_chunk(kind: bytes, body: bytes) -> tuple[str, str]:
    key, _, rest = body.partition(b"\0")
    if kind == b"tEXt":
        return key.decode("latin-1"), rest.decode("latin-1")
    if kind == b"zTXt":
        return key.decode("latin-1"), _inflate(rest[1:]).decode("latin-1")
    compressed, rest = rest[0], rest[2:]
    _lang, _, rest = rest.partition(b"\0")
    _tkey, _, text = rest.partition(b"\0")
    return key.decode("latin-1"), (_inflate(text) if compressed else text).decode("utf-8")


def _inflate(data: bytes) -> bytes:
    """zlib-decompress, refusing output past ``MAX_TEXT_BYTES`` (a decompression bomb)."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_TEXT_BYTES + 1)
    if len(out) > MAX_TEXT_BYTES or inflater.unconsumed_tail:
        raise ValueError(f"it inflates past {MAX_TEXT_BYTES // 1024**2} MiB")
    if not inflater.eof:
        raise zlib.error("the compressed stream is incomplete")
    return out
