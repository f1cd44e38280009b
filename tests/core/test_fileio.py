"""Atomic writes: the new file gets the mode a plain open() would give, or the replaced file's."""

from __future__ import annotations

import os
import stat

from vdnodes.core.fileio import atomic_write_text, new_file_mode


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "graph.json", "{}")
    finally:
        os.umask(old)
    assert _mode(path) == 0o644  # not mkstemp's 0o600
    assert path.read_text() == "{}"


def test_replacing_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "shared.json"
    path.write_text("old")
    path.chmod(0o664)
    atomic_write_text(path, "new")
    assert _mode(path) == 0o664 and path.read_text() == "new"
    assert new_file_mode(path) == 0o664
