"""The canvas widget: a ``QGraphicsView`` with a dot grid, zoom, pan, fit and drops.

Wheel zooms around the cursor, middle-drag or space+drag pans, F fits the
graph. Double-click on empty space or Tab asks for the quick-add pop-up. Node types dragged from the palette are added where they are dropped;
graph files (JSON, or PNGs saved by vdnodes) dropped on it are opened.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QCursor, QKeyEvent, QMouseEvent, QPainter, QPen, QTransform, QWheelEvent
from PySide6.QtWidgets import QGraphicsView

from vdnodes_gui import theme
from vdnodes_gui.view.scene import GraphScene

NODE_MIME = "application/x-vdnodes-node-type"
MIN_ZOOM, MAX_ZOOM = 0.15, 3.0
GRID = 24


class CanvasView(QGraphicsView):
    """Shows a ``GraphScene``; emits ``node_dropped`` and ``file_dropped`` for the window to act on."""

    node_dropped = Signal(str, QPointF)  # node type, scene position
    file_dropped = Signal(str)
    quick_add_requested = Signal(QPointF)  # scene position (double-click on empty space, or Tab)

    def __init__(self, scene: GraphScene) -> None:
        super().__init__(scene)
        self.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing | QPainter.SmoothPixmapTransform)
        self.setViewportUpdateMode(QGraphicsView.FullViewportUpdate)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.AnchorViewCenter)
        self.setDragMode(QGraphicsView.RubberBandDrag)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setFrameShape(QGraphicsView.NoFrame)
        self.setAcceptDrops(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self._pan_from: QPointF | None = None
        self._space = False
        self.setMouseTracking(True)
        self.min_open_zoom = 0.8  # opening a graph never shows it smaller (text stays readable)

    # -- zoom and pan ------------------------------------------------------------------
    def zoom(self) -> float:
        return self.transform().m11()

    def zoom_by(self, factor: float) -> None:
        target = min(MAX_ZOOM, max(MIN_ZOOM, self.zoom() * factor))
        factor = target / self.zoom()
        self.scale(factor, factor)

    def fit(self) -> None:
        """Show the whole graph (F), never magnified beyond 1:1."""
        rect = self.scene().itemsBoundingRect()
        if rect.isEmpty():
            self.resetTransform()
            self.centerOn(0, 0)
            return
        self.fitInView(rect.adjusted(-24, -24, 24, 24), Qt.KeepAspectRatio)
        if self.zoom() > 1.0:
            self.zoom_by(1.0 / self.zoom())
        self.centerOn(rect.center())

    def open_view(self) -> None:
        """The view a graph opens at: all of it when that is readable, else its left end, readable."""
        rect = self.scene().itemsBoundingRect()
        self.fit()
        if rect.isEmpty() or self.zoom() >= self.min_open_zoom:
            return
        self.setTransform(QTransform.fromScale(self.min_open_zoom, self.min_open_zoom))
        visible = self.mapToScene(self.viewport().rect()).boundingRect()
        self.centerOn(rect.left() - 24 + visible.width() / 2, rect.center().y())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        for child in self.children():
            if hasattr(child, "place"):  # the minimap keeps to the bottom-right corner
                child.place()

    def cursor_scene_pos(self) -> QPointF | None:
        """Where the mouse is on the canvas, or None when it is outside the canvas."""
        local = self.viewport().mapFromGlobal(QCursor.pos())
        return self.mapToScene(local) if self.viewport().rect().contains(local) else None

    def focusNextPrevChild(self, next: bool) -> bool:
        return False  # Tab opens quick-add here instead of moving the focus

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        pos = self.mapToScene(event.position().toPoint())
        if event.button() == Qt.LeftButton and self.scene().node_at(pos) is None:
            self.quick_add_requested.emit(pos)
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.15 ** steps)
        event.accept()

    def pan_by(self, dx: float, dy: float) -> None:
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - round(dx))
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() - round(dy))

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MiddleButton or (event.button() == Qt.LeftButton and self._space):
            self._pan_from = event.position()
            self.viewport().setCursor(Qt.ClosedHandCursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            self.pan_by(delta.x(), delta.y())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None and event.button() in (Qt.MiddleButton, Qt.LeftButton):
            self._pan_from = None
            self.viewport().setCursor(Qt.OpenHandCursor if self._space else Qt.ArrowCursor)
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.OpenHandCursor)
            event.accept()
            return
        if event.key() == Qt.Key_F and not event.modifiers():
            self.fit()
            event.accept()
            return
        if event.key() == Qt.Key_Tab and not event.modifiers():
            pos = self.cursor_scene_pos()
            self.quick_add_requested.emit(pos if pos is not None else
                                          self.mapToScene(self.viewport().rect().center()))
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.viewport().setCursor(Qt.ArrowCursor)
            event.accept()
            return
        super().keyReleaseEvent(event)

    # -- drops ---------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        mime = event.mimeData()
        if mime.hasFormat(NODE_MIME) or mime.hasUrls():
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:
        mime = event.mimeData()
        if mime.hasFormat(NODE_MIME) or mime.hasUrls():
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event) -> None:
        mime = event.mimeData()
        if mime.hasFormat(NODE_MIME):
            node_type = bytes(mime.data(NODE_MIME)).decode("utf-8")
            self.node_dropped.emit(node_type, self.mapToScene(event.position().toPoint()))
            event.acceptProposedAction()
        elif mime.hasUrls():
            for url in mime.urls():
                if url.isLocalFile():
                    self.file_dropped.emit(url.toLocalFile())
                    break
            event.acceptProposedAction()
        else:
            super().dropEvent(event)

    # -- background -----------------------------------------------------------------------
    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        painter.fillRect(rect, QColor(theme.CANVAS))
        if self.zoom() < 0.35:
            return
        left = int(rect.left()) - int(rect.left()) % GRID
        top = int(rect.top()) - int(rect.top()) % GRID
        minor = QPen(QColor(theme.GRID_MAJOR), 1.6 / self.zoom())
        painter.setPen(minor)
        points = [QPointF(x, y) for x in range(left, int(rect.right()) + GRID, GRID)
                  for y in range(top, int(rect.bottom()) + GRID, GRID)]
        painter.drawPoints(points)

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        if self.scene().items():
            return
        painter.save()
        painter.resetTransform()
        painter.setPen(QColor(theme.TEXT_FAINT))
        painter.setFont(theme.ui_font(11))
        painter.drawText(self.viewport().rect(), Qt.AlignCenter,
                         "Double-click here or press Tab to add a node (or drag one from the palette).\n"
                         "Open a graph with Ctrl+O, or drop a graph file or a vdnodes PNG.")
        painter.restore()
