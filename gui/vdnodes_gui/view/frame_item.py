"""Frames (named groups drawn behind cards) and reroute handles (points a link is drawn through).

Both are layout only (``graph.ui``): a frame is ``ui["@frames"][i]`` = ``{"title", "rect", "color"}``,
a link's reroute points are ``ui[consumer]["reroutes"][input]``. Dragging a frame's title bar
moves the frame and the cards inside it; dragging a handle moves its point. The scene turns
those drags into editor requests; these items only draw.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFontMetricsF, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from vdnodes_gui import theme

FRAME_BAR = 34.0
FRAME_PX = 16
HANDLE_R = 6.0


class FrameItem(QGraphicsItem):
    """Frame number ``index`` of the document's frame list."""

    def __init__(self, index: int, frame: dict) -> None:
        super().__init__()
        self.index = index
        self.frame = frame
        self.setZValue(-1)
        self.setAcceptHoverEvents(True)
        self.setToolTip("Drag the title bar to move the frame and the nodes in it; right-click for more")

    def rect(self) -> QRectF:
        x, y, w, h = self.frame["rect"]
        return QRectF(x, y, w, h)

    def bar(self) -> QRectF:
        r = self.rect()
        return QRectF(r.x(), r.y(), r.width(), FRAME_BAR)

    def boundingRect(self) -> QRectF:
        return self.rect().adjusted(-2, -2, 2, 2)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.setRenderHint(QPainter.Antialiasing)
        color = QColor(self.frame.get("color") or theme.FRAME)
        fill = QColor(color)
        fill.setAlpha(40)
        painter.setPen(QPen(color, 1.5))
        painter.setBrush(fill)
        painter.drawRoundedRect(self.rect(), 8, 8)
        font = theme.ui_font(9, bold=True)
        font.setPixelSize(FRAME_PX)
        painter.setFont(font)
        painter.setPen(QColor(theme.TEXT))
        title = QFontMetricsF(font).elidedText(self.frame.get("title", "Frame"), Qt.ElideRight,
                                               self.rect().width() - 20)
        painter.drawText(self.bar().adjusted(10, 0, -10, 0), Qt.AlignLeft | Qt.AlignVCenter, title)


class RerouteHandle(QGraphicsItem):
    """Point ``index`` of the link into ``key`` = (consumer, input)."""

    def __init__(self, key: tuple[str, str], index: int, color: QColor) -> None:
        super().__init__()
        self.key, self.index, self.color = key, index, QColor(color)
        self.setZValue(2)
        self.setToolTip("Reroute point: drag to move; right-click the link to remove its points")

    def boundingRect(self) -> QRectF:
        return QRectF(-HANDLE_R - 2, -HANDLE_R - 2, 2 * HANDLE_R + 4, 2 * HANDLE_R + 4)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.setRenderHint(QPainter.Antialiasing)
        painter.setPen(QPen(self.color.darker(160), 1.5))
        painter.setBrush(self.color)
        painter.drawEllipse(QPointF(0, 0), HANDLE_R, HANDLE_R)
