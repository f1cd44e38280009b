"""Atomic file writes: a crash never leaves half a file, and a new output never replaces another.

Every write goes to a temp file beside its target, named ``.NAME.PID.RANDOM.tmp``, is flushed
to disk, then renamed over the target (``atomic_write_bytes``) or linked to a name nobody
holds (``write_new_file``: ``os.link`` fails if the name exists, so two processes can never
claim one name). A process killed mid-write leaves its temp behind; ``remove_stale_temps``
deletes those of dead processes the next time something is written into the folder.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import time
from collections.abc import Iterable
from pathlib import Path

TEMP_SUFFIX = ".tmp"
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")
STALE_AFTER_S = 60.0  # a temp younger than this is left alone even if its writer looks gone


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


def temp_path(target: Path) -> Path:
    """A fresh temp name beside ``target`` that says which process writes it."""
    return target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a vdnodes temp file (never an output)."""
    return _TEMP.match(name) is not None


def _write_temp(target: Path, data: bytes) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.chmod(tmp, new_file_mode(target))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path``, fsync, then rename over it (mode as ``new_file_mode``)."""
    target = Path(path)
    tmp = _write_temp(target, data)
    try:
        os.replace(tmp, target)
    except BaseException:
        _unlink(tmp)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_new_file(candidates: Iterable[str | os.PathLike[str]], data: bytes) -> Path:
    """Write ``data`` under the first candidate name that no file holds, and return it.

    The complete file appears under its name in one step (a hard link from the temp file),
    and the link fails if the name exists, so concurrent writers, in this process or others,
    each get a name of their own and no file is ever overwritten. Where the file system has
    no hard links, an ``O_EXCL`` claim of the name followed by a rename does the same.
    """
    tmp: Path | None = None
    try:
        for candidate in candidates:
            target = Path(candidate)
            if tmp is None:
                tmp = _write_temp(target, data)
            if _claim(tmp, target):
                return target
        raise FileExistsError("every candidate name is taken")
    finally:
        if tmp is not None:
            _unlink(tmp)


def _claim(tmp: Path, target: Path) -> bool:
    try:
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
    try:  # no hard links here: hold the name with an empty file, then move the data onto it
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    os.replace(tmp, target)
    return True


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike[str], *, older_than: float = STALE_AFTER_S) -> list[Path]:
    """Delete vdnodes temp files in ``folder`` whose writer process is gone; return them.

    Only names of this module's pattern are touched, only when the process named in them no
    longer runs, and only when older than ``older_than`` seconds (so a writer on another
    machine sharing the folder, whose pid means nothing here, gets a grace period).
    """
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or _alive(int(m["pid"])):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < older_than or not entry.is_file(follow_symlinks=False):
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed
