"""The results manifest ``sweep.jsonl``: one JSON line per finished item, appended, never rewritten.

Each line is written with one ``write`` on a file opened for appending and flushed to disk
before the next item starts, so a crash leaves at most a torn last line, which readers skip
(and the next append starts on a fresh line). The last line of an id wins. Resume skips the
ids whose latest line is ``ok`` and whose files are all still present.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vdnodes.core.fileio import atomic_write_text

MANIFEST_NAME = "sweep.jsonl"
TABLE_NAME = "sweep.csv"


class Manifest:
    """``out_dir/sweep.jsonl``; paths inside are relative to ``out_dir``."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / MANIFEST_NAME

    def records(self) -> list[dict[str, Any]]:
        """Every complete line, in file order (torn or foreign lines are skipped)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                out.append(rec)
        return out

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last record of each item id."""
        return {rec["id"]: rec for rec in self.records()}

    def done_ids(self) -> set[str]:
        """Ids recorded ``ok`` whose output files all exist."""
        return {i for i, rec in self.latest().items()
                if rec.get("status") == "ok" and all((self.out_dir / f).is_file() for f in rec.get("files", []))}

    def append(self, record: Mapping[str, Any]) -> None:
        """Add one line: a single write, then fsync."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps({**record, "time": round(time.time(), 3)}, sort_keys=True, default=str) + "\n"
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            if _ends_torn(fd):
                line = "\n" + line
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_table(self, order: Iterable[str] | None = None) -> Path:
        """``sweep.csv``: one row per item (latest record): index, id, status, overrides, texts, files."""
        latest = self.latest()
        recs = sorted(latest.values(), key=lambda r: (r.get("index", 0), r["id"]))
        if order is not None:
            wanted = set(order)
            recs = [r for r in recs if r["id"] in wanted]
        over = list(dict.fromkeys(k for r in recs for k in r.get("overrides", {})))
        texts = list(dict.fromkeys(k for r in recs for k in r.get("texts", {})))
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["index", "id", "status", *over, *texts, "files", "seconds", "error"])
        for r in recs:
            w.writerow([r.get("index"), r["id"], r.get("status"),
                        *(_cell(r.get("overrides", {}).get(k, "")) for k in over),
                        *(" | ".join(r.get("texts", {}).get(k, [])) for k in texts),
                        " ".join(r.get("files", [])), r.get("seconds", ""), r.get("error") or ""])
        return atomic_write_text(self.out_dir / TABLE_NAME, buf.getvalue())


def _cell(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _ends_torn(fd: int) -> bool:
    """Whether the file is non-empty and does not end with a newline (a crash mid-append)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return False
    return os.pread(fd, 1, size - 1) != b"\n"
