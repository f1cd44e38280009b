"""The problems list: every problem that keeps the graph from running, until it is fixed.

It lists the error of each node (a failed run, or a check at open or Run) and
the graph-wide problems of the last check, in graph order. A node's entry
goes when its error goes (an edit of the node, a run that succeeds);
clicking an entry asks the window to select and show that node.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QListWidget, QListWidgetItem

from vdnodes_gui import theme
from vdnodes_gui.document import GraphDocument

NODE_ROLE = Qt.UserRole + 1


class ProblemsList(QListWidget):
    """One line per problem; ``node_clicked(node_id)`` when a node's line is clicked."""

    node_clicked = Signal(str)
    count_changed = Signal(int)

    def __init__(self, doc: GraphDocument) -> None:
        super().__init__()
        self.doc = doc
        self.graph_problems: list[str] = []
        self.setWordWrap(True)
        self.setTextElideMode(Qt.ElideNone)
        self._pending = False
        doc.status_changed.connect(lambda _: self._schedule())
        doc.node_removed.connect(lambda _: self._schedule())
        doc.reset.connect(self._on_reset)
        self.itemClicked.connect(self._on_clicked)
        self.refresh()

    def _on_reset(self) -> None:
        self.graph_problems = []
        self.refresh()

    def set_graph_problems(self, messages: list[str]) -> None:
        self.graph_problems = list(messages)
        self.refresh()

    def _schedule(self) -> None:
        """Many status changes arrive at once (a run's end); rebuild the list once."""
        if not self._pending:
            self._pending = True
            QTimer.singleShot(0, self.refresh)

    def problems(self) -> list[tuple[str | None, str]]:
        """``(node id or None, message)`` for every problem shown."""
        out: list[tuple[str | None, str]] = [(None, m) for m in self.graph_problems]
        for nid, status in self.doc.status.items():
            out += [(nid, line) for line in status.error.splitlines() if line.strip()]
        return out

    def refresh(self) -> None:
        self._pending = False
        self.clear()
        for nid, message in self.problems():
            item = QListWidgetItem(f"{nid}: {message}" if nid else message)
            item.setData(NODE_ROLE, nid)
            item.setForeground(QBrush(QColor(theme.ERROR_TEXT)))
            item.setToolTip(f"{message}\n\nClick to select the node." if nid else message)
            self.addItem(item)
        if self.count() == 0:
            item = QListWidgetItem("No problems.")
            item.setFlags(Qt.NoItemFlags)
            item.setForeground(QBrush(QColor(theme.TEXT_DIM)))
            self.addItem(item)
        self.count_changed.emit(len(self.problems()))

    def _on_clicked(self, item: QListWidgetItem) -> None:
        nid = item.data(NODE_ROLE)
        if nid and nid in self.doc.graph.nodes:
            self.node_clicked.emit(nid)
