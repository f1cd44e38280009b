"""The node palette: every registered node type by category, with a search box.

Double-click (or Enter) asks for a node of that type; dragging an entry onto
the canvas drops one there. Entries show the node's doc as a tooltip. The
palette only emits requests; the window decides where new nodes go.
"""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView, QLineEdit, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget,
)

from vdnodes.core.registry import Registry

from vdnodes_gui import theme
from vdnodes_gui.view.canvas import NODE_MIME

TYPE_ROLE = Qt.UserRole + 1


def match_rank(decl, words: list[str]) -> int:
    """How well a node type matches search words: 0 exact title or id, 1 title prefix, 2 every word
    starts a title word, 3 every word is in the title or id, 4 found elsewhere (category, doc)."""
    title = decl.display_name.lower()
    short = decl.id.rsplit(".", 1)[-1].lower()
    query = " ".join(words)
    if query in (title, short, decl.id.lower()):
        return 0
    if title.startswith(query) or short.startswith(query.replace(" ", "_")):
        return 1
    title_words = title.replace("_", " ").split()
    if all(any(t.startswith(w) for t in title_words) for w in words):
        return 2
    if all(w in f"{decl.id} {title}".lower() for w in words):
        return 3
    return 4


def rank_types(registry: Registry, text: str) -> list[str]:
    """Node types matching every word of ``text``, best first (title matches before category or doc
    matches; palette order breaks ties). Empty text: every type in palette order."""
    words = text.lower().split()
    order = [d.id for decls in registry.by_category().values() for d in decls]
    hits = {d.id: d for d in registry.search(text)} if words else {d.id: d for d in registry}
    return sorted((t for t in order if t in hits), key=lambda t: (match_rank(hits[t], words) if words else 0,
                                                                  order.index(t)))


def _dot(color: QColor, size: int = 10) -> QIcon:
    pix = QPixmap(size, size)
    pix.fill(Qt.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.Antialiasing)
    p.setPen(Qt.NoPen)
    p.setBrush(color)
    p.drawRoundedRect(0, 0, size, size, 3, 3)
    p.end()
    return QIcon(pix)


class _Tree(QTreeWidget):
    """A tree whose node entries drag out as ``NODE_MIME``."""

    def mimeTypes(self) -> list[str]:
        return [NODE_MIME]

    def mimeData(self, items: list[QTreeWidgetItem]) -> QMimeData:
        mime = QMimeData()
        types = [i.data(0, TYPE_ROLE) for i in items if i.data(0, TYPE_ROLE)]
        if types:
            mime.setData(NODE_MIME, types[0].encode("utf-8"))
        return mime


class Palette(QWidget):
    """Search box over a category tree of node types."""

    add_requested = Signal(str)  # node type

    def __init__(self, registry: Registry) -> None:
        super().__init__()
        self.registry = registry
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search nodes...")
        self.search.setClearButtonEnabled(True)
        self.tree = _Tree()
        self.tree.setHeaderHidden(True)
        self.tree.setIndentation(12)
        self.tree.setDragEnabled(True)
        self.tree.setDragDropMode(QAbstractItemView.DragOnly)
        self.tree.setSelectionMode(QAbstractItemView.SingleSelection)
        self.tree.setMouseTracking(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 8)
        layout.setSpacing(6)
        layout.addWidget(self.search)
        layout.addWidget(self.tree)
        self.items: dict[str, QTreeWidgetItem] = {}
        self._build()
        self.search.textChanged.connect(self.filter)
        self.search.returnPressed.connect(self._add_first_visible)
        # Activation is a double-click (or Enter) on an entry; a double-click emits it once.
        self.tree.itemActivated.connect(self._on_activated)

    def _build(self) -> None:
        bold = theme.ui_font(9, bold=True)
        for category, decls in self.registry.by_category().items():
            top = QTreeWidgetItem([category.upper()])
            top.setFont(0, bold)
            top.setForeground(0, QBrush(QColor(theme.TEXT_DIM)))
            top.setIcon(0, _dot(theme.category_color(category)))
            top.setFlags(Qt.ItemIsEnabled)
            self.tree.addTopLevelItem(top)
            for decl in decls:
                item = QTreeWidgetItem([decl.display_name])
                item.setData(0, TYPE_ROLE, decl.id)
                origin = f"<br><i>from plugin {decl.plugin}</i>" if decl.plugin else ""
                item.setToolTip(0, f"<b>{decl.display_name}</b> <span style='color:{theme.TEXT_DIM}'>"
                                   f"{decl.id} {decl.version}</span><br>{decl.doc}{origin}")
                item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsDragEnabled)
                top.addChild(item)
                self.items[decl.id] = item
        self.tree.expandAll()

    def filter(self, text: str) -> None:
        """Show only node types matching every word of ``text`` (id, title, category, doc)."""
        hits = {d.id for d in self.registry.search(text)} if text.strip() else set(self.items)
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            visible = 0
            for j in range(top.childCount()):
                child = top.child(j)
                show = child.data(0, TYPE_ROLE) in hits
                child.setHidden(not show)
                visible += show
            top.setHidden(visible == 0)
        first = self.visible_types()
        if first:
            self.tree.setCurrentItem(self.items[first[0]])

    def visible_types(self) -> list[str]:
        """Shown node types, best match first (``rank_types``)."""
        shown = {t for t, item in self.items.items() if not item.isHidden() and not item.parent().isHidden()}
        return [t for t in rank_types(self.registry, self.search.text()) if t in shown]

    def _add_first_visible(self) -> None:
        """Enter in the search box adds the best match (the entry ``filter`` made current)."""
        current = self.tree.currentItem()
        node_type = current.data(0, TYPE_ROLE) if current is not None else None
        if node_type is None or self.items[node_type].isHidden():
            visible = self.visible_types()
            node_type = visible[0] if visible else None
        if node_type:
            self.add_requested.emit(node_type)

    def _on_activated(self, item: QTreeWidgetItem, column: int = 0) -> None:
        node_type = item.data(0, TYPE_ROLE)
        if node_type:
            self.add_requested.emit(node_type)
