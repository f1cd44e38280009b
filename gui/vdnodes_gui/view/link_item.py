"""Links as smooth bezier curves, coloured by the type that flows through them.

A ``LinkItem`` stands for one document link (keyed by its consumer and input
name); ``DragLink`` is the loose curve that follows the cursor while a link is
being drawn. Neither writes the document.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPainterPathStroker, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem, QStyleOptionGraphicsItem, QWidget

from vdnodes_gui import theme


def bezier(start: QPointF, end: QPointF) -> QPainterPath:
    """An S-curve leaving ``start`` to the right and entering ``end`` from the left."""
    dx = max(50.0, abs(end.x() - start.x()) * 0.5)
    path = QPainterPath(start)
    path.cubicTo(QPointF(start.x() + dx, start.y()), QPointF(end.x() - dx, end.y()), end)
    return path


def routed(start: QPointF, points: list[QPointF], end: QPointF) -> QPainterPath:
    """S-curves from ``start`` through each reroute point to ``end``."""
    path = QPainterPath(start)
    stops = [start, *points, end]
    for a, b in zip(stops, stops[1:]):
        path.connectPath(bezier(a, b))
    return path


class LinkItem(QGraphicsPathItem):
    """One link ``source.output -> consumer.input``; red and dashed when it no longer type-checks."""

    def __init__(self, dst: str, name: str) -> None:
        super().__init__()
        self.key = (dst, name)
        self.color = QColor(theme.TEXT_DIM)
        self.valid = True
        self._hover = False
        self.setFlag(QGraphicsItem.ItemIsSelectable)
        self.setAcceptHoverEvents(True)
        self.setZValue(0)

    def set_ends(self, start: QPointF, end: QPointF, points: list[QPointF] | None = None) -> None:
        self.setPath(routed(start, points, end) if points else bezier(start, end))

    def set_style(self, color: QColor, valid: bool, tooltip: str) -> None:
        self.color, self.valid = QColor(color), valid
        self.setToolTip(tooltip)
        self.update()

    def shape(self) -> QPainterPath:
        stroker = QPainterPathStroker()
        stroker.setWidth(12)
        return stroker.createStroke(self.path())

    def boundingRect(self) -> QRectF:
        return self.path().boundingRect().adjusted(-6, -6, 6, 6)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.setRenderHint(QPainter.Antialiasing)
        color = QColor(self.color if self.valid else theme.ERROR)
        width = 2.4
        if self.isSelected():
            outline = QColor(theme.SELECTED)
            painter.setPen(QPen(outline, 6, Qt.SolidLine, Qt.RoundCap))
            painter.drawPath(self.path())
        elif self._hover:
            width = 3.4
        pen = QPen(color, width, Qt.SolidLine if self.valid else Qt.DashLine, Qt.RoundCap)
        painter.setPen(pen)
        painter.setBrush(Qt.NoBrush)
        painter.drawPath(self.path())

    def hoverEnterEvent(self, event) -> None:
        self._hover = True
        self.update()

    def hoverLeaveEvent(self, event) -> None:
        self._hover = False
        self.update()


class DragLink(QGraphicsPathItem):
    """The curve under the cursor while a link is being drawn."""

    def __init__(self, color: QColor) -> None:
        super().__init__()
        pen = QPen(color, 2.2, Qt.DashLine, Qt.RoundCap)
        self.setPen(pen)
        self.setZValue(3)

    def set_ends(self, start: QPointF, end: QPointF) -> None:
        self.setPath(bezier(start, end))
