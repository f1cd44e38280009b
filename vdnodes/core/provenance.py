"""Input files of a run, recorded in its outputs and found again when a saved PNG is re-run.

A PNG saved by vdnodes embeds its graph, whose input paths are usually relative to the
graph file's folder. The run manifest records, for every param declared ``input_file``,
the path as written, where it resolved, and the file's SHA-256. Re-running the PNG from
anywhere looks for each file at the recorded location, then beside the original graph,
then beside the PNG, and takes the first whose digest matches; a file found nowhere, or
changed, is reported (exit 2) naming the digest it should have and the ``--set`` that
supplies another file. See docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdnodes.core.errors import Problem
from vdnodes.core.limits import file_kind_problem, max_input_bytes


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_user_path(path: str, base_dir: str, located: Mapping[str, str] | None = None) -> str:
    """A user path: absolute as is; relative to ``base_dir`` if it exists there, else to the working directory.

    ``located`` maps path values of a graph re-run from a saved PNG to the files found for
    them (``locate_inputs``); those win.
    """
    if located and path in located:
        return located[path]
    p = Path(os.path.expanduser(path))
    if p.is_absolute():
        return str(p)
    beside = Path(base_dir) / p
    return str(beside if beside.exists() or not p.exists() else p)


def record_inputs(graph: Any, registry: Any, base_dir: str) -> dict[str, Any]:
    """``{"graph_dir": ..., "files": {"node.param": {"path", "resolved", "sha256"}}}`` for a manifest.

    Covers every non-empty param declared ``input_file`` that names a readable regular file.
    """
    files: dict[str, dict[str, str]] = {}
    for nid, spec in graph.nodes.items():
        if registry is None or spec.type not in registry:
            continue
        for name, param in registry.get(spec.type).params.items():
            value = spec.params.get(name)
            if not (param.input_file and isinstance(value, str) and value):
                continue
            file = Path(resolve_user_path(value, base_dir, graph.located_inputs))
            if file_kind_problem(file, "file", max_bytes=max_input_bytes()) is None:
                files[f"{nid}.{name}"] = {"path": value, "resolved": str(file.resolve()),
                                          "sha256": file_digest(file)}
    return {"graph_dir": str(Path(base_dir).resolve()), "files": files}


@dataclass(frozen=True)
class MissingInput:
    """A recorded input file that was not found with its recorded content."""

    ref: str  # "node.param"
    path: str  # the param's value as recorded
    sha256: str
    looked_in: tuple[str, ...]

    def still_wanted(self, graph: Any, nodes: Iterable[str]) -> bool:
        """Whether one of ``nodes`` still reads this input (its param was not set to another file)."""
        nid, _, name = self.ref.partition(".")
        return nid in nodes and nid in graph.nodes and graph.nodes[nid].params.get(name) == self.path

    def problem(self) -> Problem:
        node, _, param = self.ref.partition(".")
        return Problem(node, f"input file {self.path!r} of param {param!r} was not found with the content "
                             f"this PNG was made from (sha256 {self.sha256}); looked at: "
                             f"{', '.join(self.looked_in)}",
                       f"put the file back, or supply another with --set {self.ref}=PATH")


def locate_inputs(graph: Any, manifest: Mapping[str, Any], here: str) -> list[MissingInput]:
    """Find each recorded input of ``graph`` (re-run from a PNG in folder ``here``) again.

    The first candidate whose SHA-256 matches wins: the recorded location, the path beside
    the original graph's folder, the path beside ``here``. Found files go into
    ``graph.located_inputs`` (path value -> file), which path resolution consults; the
    params keep their values, so the graph saves as it was written. Returns the inputs
    found nowhere.
    """
    record = manifest.get("inputs") if isinstance(manifest, Mapping) else None
    if not isinstance(record, Mapping) or not isinstance(record.get("files"), Mapping):
        return []
    graph_dir = str(record.get("graph_dir") or "")
    missing = []
    for ref, entry in record["files"].items():
        nid, _, name = str(ref).partition(".")
        spec = graph.nodes.get(nid)
        if spec is None or not isinstance(entry, Mapping) or spec.params.get(name) != entry.get("path"):
            continue
        value, digest = str(entry["path"]), str(entry.get("sha256", ""))
        found = _find(_candidates(value, str(entry.get("resolved", "")), graph_dir, here), digest)
        if isinstance(found, Path):
            graph.located_inputs[value] = str(found)
        else:
            missing.append(MissingInput(str(ref), value, digest, found))
    return missing


def _candidates(value: str, resolved: str, graph_dir: str, here: str) -> list[Path]:
    out: list[Path] = []
    p = Path(os.path.expanduser(value))
    for c in ([Path(resolved)] if resolved else []) + ([p] if p.is_absolute() else
                                                      [Path(d) / p for d in (graph_dir, here) if d]):
        if c not in out:
            out.append(c)
    return out


def _find(candidates: Iterable[Path], digest: str) -> Path | tuple[str, ...]:
    looked = []
    for c in candidates:
        looked.append(str(c))
        if file_kind_problem(c, "file", max_bytes=max_input_bytes()) is None:
            try:
                if file_digest(c) == digest:
                    return c.resolve()
            except OSError:
                continue
    return tuple(looked)
