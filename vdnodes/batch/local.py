"""Run a sweep: the driver loop shared by every backend, and the local backend.

The driver decides what to run (resume: skip ids done before, unless ``force``), takes each
finished item from a backend, writes its files into the output folder under names no other
file holds (``write_new_file``), then appends its manifest line: a file is written once, and
an item is recorded once, after its files. The local backend runs items in order on one
``Executor``: its content-addressed cache is shared, so what the swept params do not touch
(loading the model, encoding an image or a prompt) runs once for all items. Each item runs
into a staging folder first, so a cancelled item leaves no file in the output folder.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vdnodes.batch import events as bev
from vdnodes.batch.manifest import Manifest
from vdnodes.batch.spec import Item, Sweep
from vdnodes.core.executor import CancelToken, Executor
from vdnodes.core.fileio import write_new_file

SweepSink = Callable[[bev.SweepEvent], None]
STAGING = ".sweep-staging"


@dataclass
class ItemResult:
    """A finished item as a backend hands it to the driver: files as bytes, no paths written yet."""

    item: Item
    status: str  # "ok" | "failed" | "cancelled"
    seconds: float
    files: dict[str, bytes] = field(default_factory=dict)  # file name -> content
    outputs: dict[str, list[str]] = field(default_factory=dict)  # graph output -> file names it wrote
    texts: dict[str, list[str]] = field(default_factory=dict)  # graph output -> strings
    error: str | None = None
    worker: str = "local"


class Backend(Protocol):
    def run_items(self, sweep: Sweep, items: Sequence[Item], emit: SweepSink,
                  cancel: CancelToken) -> Iterator[ItemResult]: ...


@dataclass
class SweepSummary:
    status: str  # "ok" | "failed" | "cancelled"
    total: int
    done: list[int]
    failed: list[tuple[int, str]]  # (index, error)
    skipped: list[int]
    seconds: float
    records: dict[int, dict[str, Any]]  # index -> manifest record written in this run


def run_sweep(sweep: Sweep, backend: Backend, out_dir: str, *, force: bool = False,
              on_event: SweepSink | None = None, cancel: CancelToken | None = None) -> SweepSummary:
    """Run the items of ``sweep`` not done before with ``backend``; write files and ``sweep.jsonl``."""
    emit = on_event or (lambda e: None)
    cancel = cancel or CancelToken()
    t0 = time.perf_counter()
    manifest = Manifest(out_dir)
    done_before = set() if force else manifest.done_ids()
    todo = [it for it in sweep.items if it.id not in done_before]
    skipped = [it.index for it in sweep.items if it.id in done_before]
    emit(bev.SweepStarted(len(sweep.items), len(todo), skipped))
    done: list[int] = []
    failed: list[tuple[int, str]] = []
    records: dict[int, dict[str, Any]] = {}
    status = "ok"
    for res in backend.run_items(sweep, todo, emit, cancel):
        if res.status == "cancelled":
            status = "cancelled"
            continue
        record = _publish(res, Path(out_dir))
        manifest.append(record)
        records[res.item.index] = record
        if res.status == "ok":
            done.append(res.item.index)
        else:
            failed.append((res.item.index, res.error or "failed"))
        emit(bev.ItemFinished(res.item.index, res.item.id, res.status, res.seconds, record["files"], res.error))
    if cancel.cancelled:
        status = "cancelled"
    elif failed:
        status = "failed"
    if records:
        manifest.write_table([it.id for it in sweep.items])
    seconds = time.perf_counter() - t0
    emit(bev.SweepFinished(status, len(done), [i for i, _ in failed], len(skipped), seconds))
    return SweepSummary(status, len(sweep.items), done, failed, skipped, seconds, records)


def _publish(res: ItemResult, out_dir: Path) -> dict[str, Any]:
    """Write the item's files under free names; its manifest record, with those names."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for name, data in res.files.items():
        written[name] = write_new_file(_candidates(out_dir, name), data).name
    return {
        "id": res.item.id, "index": res.item.index, "overrides": dict(res.item.overrides),
        "status": res.status, "outputs": {k: [written.get(n, n) for n in v] for k, v in res.outputs.items()},
        "texts": res.texts, "files": sorted(written.values()), "seconds": round(res.seconds, 3),
        "error": res.error, "worker": res.worker,
    }


def _candidates(out_dir: Path, name: str) -> Iterator[Path]:
    """``name``, then the same name with its counter (``_00001``) or a new one counting up."""
    yield out_dir / name
    m = re.match(r"^(.*)_(\d{5,})(\.[^.]*)$", name)
    stem, start, suffix = (m[1], int(m[2]) + 1, m[3]) if m else (Path(name).stem, 1, Path(name).suffix)
    i = start
    while True:
        yield out_dir / f"{stem}_{i:05d}{suffix}"
        i += 1


# -- running one item (shared with the Ray workers) ------------------------------------------

def run_item(executor: Executor, sweep: Sweep, item: Item, stage: Path, *, seed: int | None,
             targets: Sequence[str] | None, on_event: Callable[[Any], None] | None = None,
             cancel: CancelToken | None = None, worker: str = "local") -> ItemResult:
    """Run one item with its outputs written into ``stage`` (emptied first); read them back."""
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    graph = sweep.item_graph(item)
    executor.out_dir = str(stage)
    t0 = time.perf_counter()
    try:
        result = executor.run(graph, targets=targets, seed=seed, on_event=on_event, cancel=cancel,
                              raise_errors=False)
    except Exception as e:  # noqa: BLE001 - a bug in one item must not end the others
        return ItemResult(item, "failed", time.perf_counter() - t0, error=f"{type(e).__name__}: {e}",
                          worker=worker)
    seconds = time.perf_counter() - t0
    try:
        if result.status != "ok":
            return ItemResult(item, result.status, seconds, error=str(result.error) if result.error else None,
                              worker=worker)
        files = {p.name: p.read_bytes() for p in sorted(stage.iterdir()) if p.is_file() and not p.name.startswith(".")}
        outputs, texts = _graph_outputs(graph, result.outputs, stage)
        return ItemResult(item, "ok", seconds, files, outputs, texts, worker=worker)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _graph_outputs(graph: Any, values: dict[str, Any], stage: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Graph outputs that are lists of strings: the files written into ``stage`` (by name), or texts."""
    names = list(graph.outputs) or [k for k in values if "." in k]
    outputs: dict[str, list[str]] = {}
    texts: dict[str, list[str]] = {}
    for name in names:
        value = values.get(name)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            continue
        paths = [Path(v) for v in value]
        if value and all(p.parent.resolve() == stage.resolve() for p in paths):
            outputs[name] = [p.name for p in paths]
        else:
            texts[name] = list(value)
    return outputs, texts


class LocalBackend:
    """Items in order on one executor in this process (one warm model, one shared cache)."""

    def __init__(self, executor: Executor, *, seed: int | None = None,
                 targets: Sequence[str] | None = None) -> None:
        self.executor = executor
        self.seed = seed
        self.targets = targets

    def run_items(self, sweep: Sweep, items: Sequence[Item], emit: SweepSink,
                  cancel: CancelToken) -> Iterator[ItemResult]:
        stage_root = Path(self.executor.out_dir) / STAGING
        remove_dead_stages(stage_root)
        stage = stage_root / str(os.getpid())
        out_dir = self.executor.out_dir
        try:
            for item in items:
                if cancel.cancelled:
                    return
                emit(bev.ItemStarted(item.index, item.id, "local", os.getpid()))
                res = run_item(self.executor, sweep, item, stage, seed=self.seed, targets=self.targets,
                               on_event=lambda e, it=item: emit(bev.ItemEvent(it.index, it.id, e)),
                               cancel=cancel)
                self.executor.out_dir = out_dir
                yield res
                if res.status == "cancelled":
                    return
        finally:
            self.executor.out_dir = out_dir
            shutil.rmtree(stage, ignore_errors=True)
            _rmdir_if_empty(stage_root)


def remove_dead_stages(root: Path) -> None:
    """Staging folders left by sweeps that were killed (named by their process id)."""
    for d in root.glob("*") if root.is_dir() else ():
        if d.name.isdigit() and not _pid_alive(int(d.name)):
            shutil.rmtree(d, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def failed_summary(summary: SweepSummary, limit: int = 10) -> Iterable[str]:
    """One line per failed item (the first ``limit``), for the terminal."""
    for index, error in summary.failed[:limit]:
        yield f"item {index}: {error}"
    if len(summary.failed) > limit:
        yield f"... and {len(summary.failed) - limit} more (see sweep.jsonl)"
