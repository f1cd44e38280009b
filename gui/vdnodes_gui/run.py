"""Runs the shared executor in a worker thread and turns its events into Qt signals.

One ``Runner`` per window owns one ``Executor`` (so its cache survives between
runs: a re-run after an edit recomputes only the stale nodes). Each run gets a
copy of the graph and a fresh ``CancelToken``. Event previews (latent tensors)
are converted to ``QImage`` in the worker; after the run the worker also
collects what the viewers show (image and text outputs) from the cache. A sweep
(``start_sweep``) runs its items on the same executor through ``vdnodes.batch``.
Not here: widgets, node state bookkeeping (the window does that).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtGui import QImage

from vdnodes.core import events as ev
from vdnodes.core.executor import CancelToken, Executor, RunResult
from vdnodes.core.graph import Graph
from vdnodes.core.keys import output_key
from vdnodes.nodes.models import preload_model_code

from vdnodes_gui.images import image_tensor_to_qimages, is_image_batch, is_latent_batch, latent_preview


@dataclass(frozen=True)
class ImageOutput:
    node_id: str
    caption: str
    image: QImage
    grid: dict[str, Any] | None = None  # a sweep's contact sheet: where its cells are (``batch.grid``)


@dataclass(frozen=True)
class TextOutput:
    node_id: str
    caption: str
    text: str


@dataclass
class RunOutputs:
    """What the viewers show after a run, and the thumbnail each node card gets."""

    images: list[ImageOutput] = field(default_factory=list)
    texts: list[TextOutput] = field(default_factory=list)
    previews: dict[str, QImage] = field(default_factory=dict)
    prepare_seconds: float = 0.0  # importing the model code before the executor started


def to_preview(value: Any) -> QImage | None:
    """A progress preview: an image batch as is, a latent by its first three channels."""
    try:
        if is_image_batch(value):
            return image_tensor_to_qimages(value[:1])[0]
        if is_latent_batch(value):
            return latent_preview(value)
    except (TypeError, ValueError, AttributeError):
        return None
    return None


def collect_outputs(executor: Executor, graph: Graph, result: RunResult) -> RunOutputs:
    """Image and text outputs of every node the run touched, read back from the cache.

    An image that only feeds ``vd.save_image`` is shown as the saved file instead (with its name).
    """
    out = RunOutputs()
    touched = [n for n in result.keys if n in set(result.executed) | set(result.cached)]
    for nid in touched:
        spec = graph.nodes[nid]
        decl = executor.registry.get(spec.type)
        for name, sock in decl.outputs.items():
            value = executor.cache.get(output_key(result.keys[nid], name))
            if value is None:
                continue
            if decl.id == "vd.save_image":
                for path in value:
                    image = QImage(str(path))
                    if not image.isNull():
                        out.images.append(ImageOutput(nid, Path(path).name, image))
                continue
            kind = sock.socket_type.name
            if kind == "Image" and decl.category != "input" and is_image_batch(value):
                images = image_tensor_to_qimages(value)
                if images:
                    out.previews[nid] = images[0]
                consumers = {graph.nodes[c].type for c, _, link in graph.consumers(nid) if link.output == name}
                if consumers != {"vd.save_image"}:
                    for i, image in enumerate(images):
                        out.images.append(ImageOutput(nid, f"{nid}.{name}[{i}]", image))
            elif kind == "Text" and decl.category != "input":
                out.texts.append(TextOutput(nid, f"{nid}.{name}", "\n".join(value)))
    return out


class _RunThread(QThread):
    """One run: ``run`` executes the graph in this thread, then the thread ends (no event loop)."""

    event = Signal(object)
    phase = Signal(str)  # what the worker does before the executor reports (loading model code)
    done = Signal(object, object)  # RunResult or None, RunOutputs or the internal error

    def __init__(self, executor: Executor, graph: Graph, cancel: CancelToken, targets: list[str] | None) -> None:
        super().__init__()
        self.executor, self.graph, self.cancel, self.targets = executor, graph, cancel, targets

    def run(self) -> None:
        try:
            # The first run of a model graph imports torch and transformers here, with the
            # collector paused (about 1 s of a 6-7 s import on 2 cores); later runs skip it.
            t0 = time.perf_counter()
            if "vdnodes.model.vd" not in sys.modules:
                self.phase.emit("loading model code...")
            preload_model_code(self.graph, self.executor.registry)
            prepare = time.perf_counter() - t0
            self.phase.emit("")
            result = self.executor.run(self.graph, targets=self.targets, on_event=self._on_event,
                                       cancel=self.cancel, raise_errors=False)
            outputs = collect_outputs(self.executor, self.graph, result)
            outputs.prepare_seconds = prepare
            self.done.emit(result, outputs)
        except Exception as e:  # a bug outside any node; nodes' own errors come back in the result
            self.done.emit(None, e)

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.NodeProgress) and event.preview is not None:
            event = dataclasses.replace(event, preview=to_preview(event.preview))
        self.event.emit(event)


class _SweepThread(QThread):
    """One sweep: its items through ``vdnodes.batch`` (the CLI's engine) on the window's executor
    (one shared cache), then its contact sheet when it is a one- or two-param grid."""

    event = Signal(object)  # vdnodes.batch.events.SweepEvent (previews as QImage)
    phase = Signal(str)
    done = Signal(object, object)  # SweepSummary or None, the sheet's path (or None) or the internal error

    def __init__(self, executor: Executor, sweep: Any, cancel: CancelToken, out_dir: str) -> None:
        super().__init__()
        self.executor, self.sweep, self.cancel, self.out_dir = executor, sweep, cancel, out_dir

    def run(self) -> None:
        from vdnodes.batch.grid import write_grid
        from vdnodes.batch.local import LocalBackend, run_sweep
        from vdnodes.batch.manifest import Manifest

        try:
            if "vdnodes.model.vd" not in sys.modules:
                self.phase.emit("loading model code...")
            preload_model_code(self.sweep.graph, self.executor.registry)
            self.phase.emit("")
            summary = run_sweep(self.sweep, LocalBackend(self.executor), self.out_dir, on_event=self._on_event,
                                cancel=self.cancel)
            grid = None
            if summary.status != "cancelled" and self.sweep.grid_shape() is not None:
                grid = write_grid(self.sweep, Manifest(self.out_dir).latest(), self.out_dir, self.executor.registry)
            self.done.emit(summary, grid)
        except Exception as e:  # a bug outside any item; items' own errors come back in the summary
            self.done.emit(None, e)

    def _on_event(self, event: Any) -> None:
        from vdnodes.batch.events import ItemEvent

        inner = getattr(event, "event", None)
        if isinstance(event, ItemEvent) and isinstance(inner, ev.NodeProgress) and inner.preview is not None:
            event = dataclasses.replace(event, event=dataclasses.replace(inner, preview=to_preview(inner.preview)))
        self.event.emit(event)


class Runner(QObject):
    """Starts and cancels runs of one executor; one run at a time."""

    started = Signal()
    phase = Signal(str)
    event = Signal(object)  # vdnodes.core.events.Event (previews as QImage)
    finished = Signal(object, object)  # RunResult | None, RunOutputs | Exception
    sweep_event = Signal(object)  # vdnodes.batch.events.SweepEvent
    sweep_finished = Signal(object, object)  # SweepSummary | None, sheet Path | None | Exception

    def __init__(self, executor: Executor) -> None:
        super().__init__()
        self.executor = executor
        self.cancel_token: CancelToken | None = None
        self.last_graph = Graph()  # a copy of the graph the last run started with
        self._thread: _RunThread | _SweepThread | None = None
        self._finished: Any = self.finished  # the signal the current thread's end is reported on

    def is_running(self) -> bool:
        return self._thread is not None

    def start(self, graph: Graph, targets: list[str] | None = None) -> bool:
        """Run a copy of ``graph``; False when a run is already going."""
        if self.is_running():
            return False
        self.cancel_token = CancelToken()
        self.last_graph = graph.copy()
        self._launch(_RunThread(self.executor, graph.copy(), self.cancel_token, targets), self.event, self.finished)
        return True

    def start_sweep(self, sweep: Any) -> bool:
        """Run every item of ``sweep`` (a ``vdnodes.batch.spec.Sweep``) into the output folder; False when busy."""
        if self.is_running():
            return False
        self.cancel_token = CancelToken()
        self.last_graph = sweep.graph.copy()
        thread = _SweepThread(self.executor, sweep, self.cancel_token, self.executor.out_dir)
        self._launch(thread, self.sweep_event, self.sweep_finished)
        return True

    def _launch(self, thread: QThread, event: Any, finished: Any) -> None:
        # The thread object lives in the GUI thread, so its signals reach us queued.
        self._thread = thread
        thread.event.connect(event)
        thread.phase.connect(self.phase)
        self._finished = finished
        thread.done.connect(self._on_done)
        thread.start()
        self.started.emit()

    def cancel(self) -> None:
        if self.cancel_token is not None:
            self.cancel_token.cancel()

    def wait(self, ms: int = 30000) -> bool:
        """Block until the current run's thread ends (used when closing)."""
        return self._thread.wait(ms) if self._thread is not None else True

    @Slot(object, object)
    def _on_done(self, result: Any, outputs: Any) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.wait()  # run() is returning; join it before the next run may start
        self._finished.emit(result, outputs)
