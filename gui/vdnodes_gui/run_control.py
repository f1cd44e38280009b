"""Run and Cancel as the window offers them: checks, node states, timing, outputs, history.

``RunControl`` validates the graph, starts the worker (``run.Runner``), shows
from the first moment what is going on (nodes waiting, "loading model
code...", a running clock), and when the run ends reports the whole time
(start-up included), puts problems on their nodes and in the problems list,
outputs in the viewer and on the cards, a record in the run history, and
steps seeds set to change after each run. Node states are ``RunStates``'.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer

from vdnodes.core import events as ev
from vdnodes.core.errors import GraphError, NodeError, VDNodesError
from vdnodes.core.executor import RunResult
from vdnodes.core.graph import validate

from vdnodes_gui.document import NodeState
from vdnodes_gui.history import RunRecord
from vdnodes_gui.run import RunOutputs
from vdnodes_gui.run_states import RunStates

if TYPE_CHECKING:
    from vdnodes_gui.main_window import MainWindow

SEED_MODES = ("fixed", "increment", "randomise")
SEED_LIMIT = 2**32


class RunControl(QObject):
    """Owns the run lifecycle of one window."""

    def __init__(self, win: "MainWindow") -> None:
        super().__init__(win)
        self.win = win
        self.doc = win.doc
        self.runner = win.runner
        self.states = RunStates(self.doc, lambda key: key in self.runner.executor.cache)
        self.doc.key_fn = self._keys
        self.started_at = 0.0
        self.phase = ""
        self.last_result: RunResult | None = None
        self._targets: list[str] | None = None
        self._clock = QTimer(self)
        self._clock.setInterval(200)
        self._clock.timeout.connect(self._tick)
        self.runner.event.connect(self._on_event)
        self.runner.phase.connect(self._on_phase)
        self.runner.finished.connect(self._on_finished)

    def _keys(self, graph) -> dict[str, str]:
        """Cache keys of the graph as it would run (bypassed nodes have none)."""
        effective = self.runner.executor.effective_graph(graph)
        return self.runner.executor.compute_keys(effective, effective.nodes)

    # -- starting --------------------------------------------------------------------------
    def run(self, targets: list[str] | None = None) -> bool:
        """Validate, then run (``targets``: only what those nodes need); False when it cannot run."""
        win, doc = self.win, self.doc
        if self.runner.is_running():
            return False
        for nid, status in doc.status.items():
            if status.state is NodeState.FAILED or status.error:
                doc.set_status(nid, state=NodeState.IDLE if status.state is NodeState.FAILED
                               else status.state, error="")
        win.problems.set_graph_problems([])
        if not doc.graph.nodes:
            win.show_message("Nothing to run: add nodes first (double-click the canvas, or press Tab)")
            return False
        problems = validate(doc.graph, doc.registry)
        if problems:
            self.mark_problems(problems)
            n = len(problems)
            win.show_message(f"Cannot run: {n} problem{'s' if n != 1 else ''}, listed under Problems "
                             "and on the nodes", 0)
            win.show_problems()
            return False
        if targets and any(doc.graph.nodes[t].bypass for t in targets if t in doc.graph.nodes):
            win.show_message("Cannot run up to a bypassed node: it does not run")
            return False
        sweep = win.sweeps.build() if doc.graph.sweep and targets is None else None
        if doc.graph.sweep and targets is None and sweep is None:
            return False
        self._targets = targets
        needed = list(doc.graph.nodes) if targets is None else \
            [n for n in doc.graph.nodes if n in set(targets) | _ancestors(doc, targets)]
        self.states.begin(needed)
        self.started_at = time.perf_counter()
        self._wall_start = time.time()
        self.phase = "starting..."
        if sweep is not None:
            win.sweeps.start(sweep)
        else:
            win.sweeps.progress.hide()
            self.runner.start(doc.graph, targets)
        self._clock.start()
        self._tick()
        win.update_run_actions()
        if sweep is None:
            what = f"up to {', '.join(targets)}" if targets else f"{len(doc.graph.nodes)} nodes"
            win.viewer.log(f"run started ({what})")
        return True

    def cancel(self) -> None:
        if self.runner.is_running():
            self.runner.cancel()
            self.phase = "cancelling..."
            self._tick()

    def mark_problems(self, problems: list, state: NodeState = NodeState.FAILED) -> None:
        """Show graph problems on their nodes, in the problems list and in the log."""
        graph_wide = []
        for p in problems:
            self.win.viewer.log(str(p))
            if p.where in self.doc.graph.nodes:
                old = self.doc.status[p.where].error
                self.doc.set_status(p.where, state=state, error=f"{old}\n{p.message}" if old else p.message)
            else:
                graph_wide.append(str(p))
        self.win.problems.set_graph_problems(graph_wide)

    # -- while running -----------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.started_at

    def _tick(self) -> None:
        phase = f" \u00b7 {self.phase}" if self.phase else ""
        self.win.run_label.setText(f"running {self.elapsed():.1f} s{phase}")

    def _on_phase(self, text: str) -> None:
        self.phase = text
        model_nodes = [n for n, s in self.doc.graph.nodes.items() if s.type == "vd.load_model"]
        for nid in model_nodes:
            if self.doc.status[nid].state is NodeState.QUEUED:
                self.doc.set_status(nid, message=text)
        self._tick()

    def _on_event(self, e: ev.Event) -> None:
        if isinstance(e, ev.RunStarted):
            self.phase = ""
        elif isinstance(e, ev.NodeStarted):
            self.phase = e.node_id
        elif isinstance(e, ev.NodeProgress) and e.preview is not None:
            self.win.viewer.show_preview(e.node_id, e.preview, e.message)
        elif isinstance(e, ev.NodeFailed):
            self.win.viewer.log(f"{e.node_id} failed: {e.message}")
        elif isinstance(e, ev.NodeWarning):
            self.win.viewer.log(f"{e.node_id}: warning: {e.message}")
        self.states.on_event(e)

    # -- the end -------------------------------------------------------------------------------
    def stop_clock(self) -> float:
        """The run ended: stop the running clock; the whole time taken, start-up included."""
        self._clock.stop()
        self.phase = ""
        return self.elapsed()

    def _on_finished(self, result: RunResult | None, outputs: Any) -> None:
        win = self.win
        seconds = self.stop_clock()
        self.last_result = result
        win.last_result = result
        self.states.finish(result)
        win.update_run_actions()
        if result is None:
            win.run_label.setText(f"run crashed after {seconds:.1f} s")
            win.show_message(f"internal error: {type(outputs).__name__}: {outputs}", 0)
            win.viewer.log(f"internal error: {outputs!r}")
            self.record("crashed", seconds, "internal error", None)
            return
        prepare = outputs.prepare_seconds if isinstance(outputs, RunOutputs) else 0.0
        extra = f" ({prepare:.1f} s loading model code)" if prepare >= 0.05 else ""
        summary = f"{result.status} in {_secs(seconds)} s{extra} \u00b7 {len(result.executed)} ran, " \
                  f"{len(result.cached)} cached"
        win.run_label.setText(summary)
        win.viewer.log(f"run {summary}")
        if isinstance(result.error, GraphError):
            self.mark_problems(result.error.problems)
        if isinstance(result.error, (NodeError, GraphError, VDNodesError)) and result.status != "cancelled":
            win.show_message(f"Run failed: {str(result.error).splitlines()[0]}", 0)
            win.show_problems()
        elif result.status == "cancelled":
            win.show_message("Run cancelled")
        else:
            win.show_message("")
        if isinstance(outputs, RunOutputs):
            for nid, image in outputs.previews.items():
                self.doc.set_status(nid, preview=image)
            for text in outputs.texts:
                self.doc.set_status(text.node_id, text=text.text)
            if outputs.images:
                win.viewer.set_images(outputs.images)
            if outputs.texts:
                win.viewer.set_texts(outputs.texts)
        self.record(result.status, seconds, summary, outputs if isinstance(outputs, RunOutputs) else None)
        if result.status == "ok":
            self.step_seeds()

    def record(self, status: str, seconds: float, summary: str, outputs: RunOutputs | None) -> None:
        self.win.history.add(RunRecord(self._wall_start, status, seconds, summary, self.runner.last_graph,
                                       list(outputs.images) if outputs else [],
                                       list(outputs.texts) if outputs else []))

    def step_seeds(self) -> None:
        """Seeds whose node says "increment" or "randomise" after a run change now (one undo step each)."""
        for nid, spec in list(self.doc.graph.nodes.items()):
            modes = self.doc.graph.ui.get(nid, {}).get("seed_mode", {})
            for name, mode in modes.items():
                value = spec.params.get(name)
                if not isinstance(value, int) or mode == "fixed":
                    continue
                new = (value + 1) % SEED_LIMIT if mode == "increment" else secrets.randbelow(SEED_LIMIT)
                self.win.editor.set_param(nid, name, new)


def _secs(seconds: float) -> str:
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


def _ancestors(doc, targets: list[str]) -> set[str]:
    out: set[str] = set()
    for t in targets:
        out |= doc.ancestors(t)
    return out
