"""A minimap: the whole graph, small, in the canvas's bottom-right corner.

It draws the same scene as the canvas (no copy of its own) with the visible
area framed; a click or drag in it centres the canvas there.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QGraphicsView

from vdnodes_gui import theme

SIZE = (200, 130)
MARGIN = 10


class Minimap(QGraphicsView):
    """A child of the canvas view, over its viewport's corner."""

    def __init__(self, canvas: QGraphicsView) -> None:
        super().__init__(canvas.scene(), canvas)
        self.canvas = canvas
        self.setFixedSize(*SIZE)
        self.setInteractive(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setRenderHints(QPainter.Antialiasing)
        self.setStyleSheet(f"background: {theme.PANEL}; border: 1px solid {theme.NODE_BORDER};")
        self.setToolTip("Minimap: click to go there")
        canvas.scene().changed.connect(self.refit)
        canvas.horizontalScrollBar().valueChanged.connect(self.follow)
        canvas.verticalScrollBar().valueChanged.connect(self.follow)
        self.place()


    def place(self) -> None:
        parent = self.canvas
        self.move(parent.width() - SIZE[0] - MARGIN, parent.height() - SIZE[1] - MARGIN)

    def follow(self, *_: object) -> None:
        self.viewport().update()

    def refit(self, *_: object) -> None:
        rect = self.scene().itemsBoundingRect()
        if not rect.isEmpty():
            self.fitInView(rect.adjusted(-40, -40, 40, 40), Qt.KeepAspectRatio)
        self.viewport().update()

    def visible_area(self) -> QRectF:
        """The part of the scene the canvas shows."""
        return self.canvas.mapToScene(self.canvas.viewport().rect()).boundingRect()

    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        painter.fillRect(rect, QColor(theme.PANEL))

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        painter.setPen(QPen(QColor(theme.SELECTED), 0))
        painter.setBrush(QColor(255, 204, 102, 18))
        painter.drawRect(self.visible_area())

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.canvas.centerOn(self.mapToScene(event.position().toPoint()))
        self.viewport().update()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.buttons() & Qt.LeftButton:
            self.mousePressEvent(event)
