"""Run history: the last runs with their time, status, outputs and the graph as it was.

Each finished run adds a ``RunRecord`` (newest first, at most ``LIMIT``). Clicking
an entry asks the window to restore that graph (an undoable edit) and show the
run's outputs again. Kept in memory for the window's life, not saved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QListWidget, QListWidgetItem

from vdnodes.core.graph import Graph

from vdnodes_gui import theme
from vdnodes_gui.run import ImageOutput, TextOutput

LIMIT = 20


@dataclass
class RunRecord:
    started: float  # time.time() when Run was pressed
    status: str  # "ok" | "failed" | "cancelled" | "crashed"
    seconds: float  # the whole time, from Run to the last output
    summary: str
    graph: Graph  # a copy, as it was run
    images: list[ImageOutput] = field(default_factory=list)
    texts: list[TextOutput] = field(default_factory=list)

    def label(self) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(self.started))
        outs = []
        if self.images:
            outs.append(f"{len(self.images)} image{'s' if len(self.images) != 1 else ''}")
        if self.texts:
            outs.append(f"{len(self.texts)} text{'s' if len(self.texts) != 1 else ''}")
        secs = f"{self.seconds:.2f}" if self.seconds < 10 else f"{self.seconds:.1f}"
        return f"{clock}  {self.status}  {secs} s" + (f"  \u00b7 {', '.join(outs)}" if outs else "")


class HistoryList(QListWidget):
    """Newest run first; ``restore_requested(record)`` on click."""

    restore_requested = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.records: list[RunRecord] = []
        self.itemClicked.connect(lambda item: self.restore_requested.emit(self.records[self.row(item)]))

    def add(self, record: RunRecord) -> None:
        self.records.insert(0, record)
        del self.records[LIMIT:]
        self.clear()
        for rec in self.records:
            item = QListWidgetItem(rec.label())
            color = theme.STATE_COLORS["done" if rec.status == "ok" else
                                       "failed" if rec.status in ("failed", "crashed") else "cancelled"]
            item.setForeground(QBrush(QColor(color)))
            item.setToolTip(f"{rec.summary}\n{len(rec.graph.nodes)} nodes\n\nClick to restore this graph "
                            "and show its outputs.")
            item.setData(Qt.UserRole, rec.started)
            self.addItem(item)
