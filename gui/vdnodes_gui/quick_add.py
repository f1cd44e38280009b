"""Quick-add: a search pop-up on the canvas (double-click on empty space, or Tab).

Type to filter node types (best title match first, as in the palette), Enter
or a click adds the highlighted one where the pop-up was opened, Escape
closes it. Opened by dropping a dragged link on empty space, it lists only
node types with a socket that fits the link; the window then connects it.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QGuiApplication
from PySide6.QtWidgets import QFrame, QLabel, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from vdnodes.core.node import NodeDecl
from vdnodes.core.registry import Registry

from vdnodes_gui import theme
from vdnodes_gui.palette import TYPE_ROLE, rank_types


class QuickAdd(QFrame):
    """The pop-up; ``chosen(node_type)`` when the user picks one."""

    chosen = Signal(str)

    def __init__(self, registry: Registry, parent: QWidget) -> None:
        super().__init__(parent, Qt.Popup)
        self.registry = registry
        self.accept: Callable[[NodeDecl], bool] | None = None
        self.setObjectName("quickadd")
        self.setFrameShape(QFrame.StyledPanel)
        self.heading = QLabel("Add node")
        self.heading.setObjectName("dim")
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search nodes...")
        self.list = QListWidget()
        self.list.setMinimumHeight(260)
        box = QVBoxLayout(self)
        box.setContentsMargins(6, 6, 6, 6)
        box.setSpacing(4)
        box.addWidget(self.heading)
        box.addWidget(self.search)
        box.addWidget(self.list)
        self.resize(300, 340)
        self.search.textChanged.connect(self.refilter)
        self.search.returnPressed.connect(self.pick_current)
        self.list.itemClicked.connect(lambda item: self._pick(item.data(TYPE_ROLE)))
        self.search.installEventFilter(self)

    def open_at(self, global_pos: QPoint, accept: Callable[[NodeDecl], bool] | None = None,
                heading: str = "Add node") -> None:
        """Show the pop-up at ``global_pos``; ``accept`` limits the list (link drops)."""
        self.accept = accept
        self.heading.setText(heading)
        self.search.clear()
        self.refilter("")
        screen = QGuiApplication.screenAt(global_pos) or QGuiApplication.primaryScreen()
        area = screen.availableGeometry()
        x = min(global_pos.x(), area.right() - self.width())
        y = min(global_pos.y(), area.bottom() - self.height())
        self.move(max(area.left(), x), max(area.top(), y))
        self.show()
        self.search.setFocus()

    def types(self) -> list[str]:
        """The node types listed now, in order."""
        return [self.list.item(i).data(TYPE_ROLE) for i in range(self.list.count())]

    def refilter(self, text: str = "") -> None:
        self.list.clear()
        for t in rank_types(self.registry, self.search.text()):
            decl = self.registry.get(t)
            if self.accept is not None and not self.accept(decl):
                continue
            item = QListWidgetItem(f"{decl.display_name}   \u00b7 {decl.category}")
            item.setData(TYPE_ROLE, t)
            item.setToolTip(decl.doc)
            item.setForeground(QBrush(QColor(theme.TEXT)))
            self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)

    def pick_current(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self._pick(item.data(TYPE_ROLE))

    def _pick(self, node_type: str) -> None:
        self.hide()
        self.chosen.emit(node_type)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        """Up/Down in the search box move through the list."""
        if obj is self.search and event.type() == QEvent.KeyPress and event.key() in (Qt.Key_Up, Qt.Key_Down):
            row = self.list.currentRow() + (1 if event.key() == Qt.Key_Down else -1)
            if 0 <= row < self.list.count():
                self.list.setCurrentRow(row)
            return True
        return super().eventFilter(obj, event)
