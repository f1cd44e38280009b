"""Atomic file writes: a crash never leaves half a file behind."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def new_file_mode(path: str | os.PathLike[str]) -> int:
    """The permission bits a file written at ``path`` should get.

    The mode of the file it replaces, else what ``open()`` would give (0o666 less the
    umask). ``tempfile.mkstemp`` creates files 0o600, and a rename would carry that over:
    saved graphs, images and weights would become unreadable to everyone but their owner.
    """
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path``, fsync, then rename over it (mode as ``new_file_mode``)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.chmod(tmp, new_file_mode(target))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
