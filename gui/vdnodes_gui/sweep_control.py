"""Sweeps from the canvas: Run on a graph with a ``sweep`` block runs every item through ``vdnodes.batch``.

``SweepControl`` builds the sweep with the engine's own checks (a bad spec is a problem in the
list, nothing runs), shows an items progress bar (done / total, failures) while the worker
(``Runner.start_sweep``) runs the items, and the node states and previews of the item running.
At the end the viewer shows the contact sheet of a one- or two-param sweep (else each item's
first image); a click on a cell of the sheet puts that item's values, read from the sweep the
sheet embeds, into the graph (one undo step). Starting, the clock and the run history are ``RunControl``'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QProgressBar

from vdnodes.batch import events as bev
from vdnodes.core import events as ev
from vdnodes.core.errors import UserInputError

from vdnodes_gui.document import NodeState
from vdnodes_gui.run import ImageOutput, RunOutputs

if TYPE_CHECKING:
    from vdnodes.batch.local import SweepSummary
    from vdnodes.batch.spec import Sweep

    from vdnodes_gui.main_window import MainWindow

MAX_ITEM_IMAGES = 64  # images shown for a sweep without a contact sheet


class SweepControl(QObject):
    """The sweep side of Run for one window."""

    def __init__(self, win: "MainWindow") -> None:
        super().__init__(win)
        self.win = win
        self.doc = win.doc
        self.runner = win.runner
        self.sweep: "Sweep | None" = None  # the last sweep started
        self.total = 0
        self.finished_items = 0
        self.failed: list[int] = []
        self.progress = QProgressBar()
        self.progress.setObjectName("sweep-progress")
        self.progress.setMaximumWidth(240)
        self.progress.hide()
        win.statusBar().addPermanentWidget(self.progress)
        self.runner.sweep_event.connect(self._on_event)
        self.runner.sweep_finished.connect(self._on_finished)
        win.viewer.cell_clicked.connect(lambda grid, index: self.restore_item(index, grid.get("sheet")))

    def build(self) -> "Sweep | None":
        """The document's sweep, checked as the CLI checks it; None (with the reason shown) when refused."""
        from vdnodes.batch.spec import build_sweep

        try:
            return build_sweep(self.doc.graph, self.doc.registry)
        except UserInputError as e:
            self.win.problems.set_graph_problems([f"sweep: {e}"])
            self.win.show_message(f"Cannot run the sweep: {e}", 0)
            self.win.show_problems()
            return None

    def start(self, sweep: "Sweep") -> None:
        self.sweep, self.total, self.finished_items, self.failed = sweep, len(sweep.items), 0, []
        self.progress.setRange(0, max(1, self.total))
        self._show_progress()
        self.progress.show()
        self.runner.start_sweep(sweep)
        shape = " x ".join(str(len(a.values)) for a in sweep.axes)
        self.win.viewer.log(f"sweep started ({self.total} items: {shape} over "
                            f"{', '.join(a.name for a in sweep.axes) or 'an items list'})")

    def _show_progress(self) -> None:
        self.progress.setValue(min(self.finished_items, self.total))
        fails = f" \u00b7 {len(self.failed)} failed" if self.failed else ""
        self.progress.setFormat(f"{self.finished_items}/{self.total} items{fails}")
        self.progress.setToolTip("Sweep items finished (ok, failed or done before) of all items")

    # -- while running -----------------------------------------------------------------------
    def _on_event(self, e: bev.SweepEvent) -> None:
        rc = self.win.run_control
        if isinstance(e, bev.SweepStarted):
            self.finished_items = len(e.skipped)
            if e.skipped:
                self.win.viewer.log(f"sweep: {len(e.skipped)} items done before (in sweep.jsonl), not rerun")
        elif isinstance(e, bev.ItemStarted):
            rc.phase = f"item {e.index + 1}/{self.total}"
        elif isinstance(e, bev.ItemEvent):
            inner = e.event
            if isinstance(inner, ev.NodeStarted):
                rc.phase = f"item {e.index + 1}/{self.total} \u00b7 {inner.node_id}"
            elif isinstance(inner, ev.NodeProgress) and inner.preview is not None:
                self.win.viewer.show_preview(inner.node_id, inner.preview, f"item {e.index + 1}: {inner.message}")
            rc.states.on_event(inner)
        elif isinstance(e, bev.ItemFinished):
            self.finished_items += 1
            if e.status != "ok":
                self.failed.append(e.index)
                self.win.viewer.log(f"sweep item {e.index} failed: {e.error}")
        self._show_progress()

    # -- the end -------------------------------------------------------------------------------
    def _on_finished(self, summary: "SweepSummary | None", grid: Any) -> None:
        win, rc = self.win, self.win.run_control
        seconds = rc.stop_clock()
        self._settle_states()
        win.update_run_actions()
        if summary is None:
            win.run_label.setText(f"sweep crashed after {seconds:.1f} s")
            win.show_message(f"internal error: {type(grid).__name__}: {grid}", 0)
            win.viewer.log(f"internal error: {grid!r}")
            rc.record("crashed", seconds, "internal error", None)
            return
        text = (f"sweep {summary.status} in {seconds:.1f} s \u00b7 {len(summary.done)} ok, "
                f"{len(summary.failed)} failed, {len(summary.skipped)} done before, of {summary.total} items")
        win.run_label.setText(text)
        win.viewer.log(text)
        win.show_message(text if summary.status != "ok" else "", 0 if summary.failed else 10000)
        images = self._images(summary, grid)
        if images:
            win.viewer.set_images(images)
        rc.record(summary.status, seconds, text, RunOutputs(images=images))

    def _settle_states(self) -> None:
        """After the items: a node is cached when its result for the graph as it is now is held, else idle."""
        for nid, status in self.doc.status.items():
            if status.state is not NodeState.FAILED:
                self.doc.set_status(nid, state=NodeState.IDLE, progress=0.0, message="", key=None, settled=None)
        self.win.run_control.states.mark_cached()

    def _images(self, summary: "SweepSummary", grid: Path | None) -> list[ImageOutput]:
        from vdnodes.batch.grid import IMAGE_SUFFIXES, LAYOUT_KEY
        from vdnodes.core.pngmeta import read_png_text

        if grid is not None:
            image = QImage(str(grid))
            layout = json.loads(read_png_text(grid).get(LAYOUT_KEY, "null"))
            layout["sheet"] = str(grid)
            return [ImageOutput("sweep", f"{grid.name} (contact sheet)", image, layout)] if not image.isNull() else []
        out = []
        folder = Path(self.runner.executor.out_dir)
        for index in sorted(summary.records)[:MAX_ITEM_IMAGES]:
            for name in summary.records[index]["files"]:
                image = QImage(str(folder / name)) if name.lower().endswith(IMAGE_SUFFIXES) else QImage()
                if not image.isNull():
                    out.append(ImageOutput("sweep", f"item {index}: {name}", image))
                    break
        return out

    # -- a click on the sheet ---------------------------------------------------------------------
    def restore_item(self, index: int, sheet: str | None = None) -> bool:
        """Put item ``index``'s values into the graph (one undo step), of the sweep a contact sheet
        embeds (one from the run history too) or else of the last sweep; False when it cannot."""
        from vdnodes.batch.spec import build_sweep, value_label
        from vdnodes.core.errors import VDNodesError
        from vdnodes.core.graph import load_graph

        sweep = self.sweep
        if sheet is not None:
            try:
                sweep = build_sweep(load_graph(sheet, self.doc.registry), self.doc.registry)
            except (OSError, VDNodesError) as e:
                self.win.show_message(f"Cannot read the sweep of {Path(sheet).name}: {e}")
                return False
        if sweep is None or not 0 <= index < len(sweep.items):
            return False
        item = sweep.items[index]
        overrides = {sweep.refs[n]: v for n, v in item.overrides.items()}
        if any(ref.partition(".")[0] not in self.doc.graph.nodes for ref in overrides):
            self.win.show_message(f"Cannot restore sweep item {index}: a node it sets was deleted")
            return False
        shown = ", ".join(f"{n}={value_label(v)}" for n, v in item.overrides.items())
        self.win.editor.apply_overrides(overrides, f"Restore sweep item {index} ({shown})")
        self.win.show_message(f"Sweep item {index} put into the graph: {shown}")
        return True
