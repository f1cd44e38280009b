"""The output viewer: the image viewer (with the live sampler preview), the text viewer and a run log.

It shows what ``run.collect_outputs`` gathered after a run and the previews
the sampler streams during one. Read-only; it knows nothing about the graph.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QLabel, QListView, QListWidget, QListWidgetItem, QPlainTextEdit, QTabWidget, QVBoxLayout, QWidget,
)

from vdnodes_gui import theme
from vdnodes_gui.run import ImageOutput, TextOutput

THUMB = 56


class ImageView(QWidget):
    """One image, scaled to fit with its aspect ratio; small images are magnified without blur."""

    clicked = Signal(float, float)  # image pixel coordinates of a click on the image

    def __init__(self) -> None:
        super().__init__()
        self.image: QImage | None = None
        self.setMinimumSize(160, 160)

    def set_image(self, image: QImage | None) -> None:
        self.image = image
        self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(theme.FIELD))
        if self.image is None or self.image.isNull():
            p.setPen(QColor(theme.TEXT_FAINT))
            p.drawText(self.rect(), Qt.AlignCenter, "Run the graph to see its images here.")
            return
        scale, target = self.target()
        p.setRenderHint(QPainter.SmoothPixmapTransform, scale < 3)
        p.drawImage(target, self.image)

    def target(self) -> tuple[float, QRectF]:
        """The image's scale and where it is drawn in the widget."""
        area = QRectF(self.rect()).adjusted(8, 8, -8, -8)
        scale = min(area.width() / self.image.width(), area.height() / self.image.height())
        w, h = self.image.width() * scale, self.image.height() * scale
        return scale, QRectF(area.center().x() - w / 2, area.center().y() - h / 2, w, h)

    def to_image(self, pos: QPointF) -> QPointF | None:
        """Widget position -> image pixel, or None off the image."""
        if self.image is None or self.image.isNull():
            return None
        scale, target = self.target()
        if not target.contains(pos):
            return None
        return (pos - target.topLeft()) / scale

    def mousePressEvent(self, event) -> None:
        at = self.to_image(event.position())
        if event.button() == Qt.LeftButton and at is not None:
            self.clicked.emit(at.x(), at.y())
        super().mousePressEvent(event)


class OutputViewer(QTabWidget):
    """Tabs: Image (big view + thumbnails), Text, Log. A click on a sweep's contact sheet names its cell."""

    cell_clicked = Signal(object, int)  # a contact sheet's layout (``ImageOutput.grid``), the item index clicked

    def __init__(self) -> None:
        super().__init__()
        self.images: list[ImageOutput] = []
        # Image tab
        page = QWidget()
        box = QVBoxLayout(page)
        box.setContentsMargins(6, 6, 6, 6)
        box.setSpacing(4)
        self.view = ImageView()
        self.view.clicked.connect(self._on_click)
        self.caption = QLabel("")
        self.caption.setObjectName("caption")
        self.thumbs = QListWidget()
        self.thumbs.setViewMode(QListView.IconMode)
        self.thumbs.setFlow(QListView.LeftToRight)
        self.thumbs.setWrapping(False)
        self.thumbs.setIconSize(QSize(THUMB, THUMB))
        self.thumbs.setFixedHeight(THUMB + 14)
        self.thumbs.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.thumbs.setMovement(QListView.Static)
        self.thumbs.currentRowChanged.connect(self._show_row)
        box.addWidget(self.view, 1)
        box.addWidget(self.caption)
        box.addWidget(self.thumbs)
        self.addTab(page, "Image")
        # Text and log tabs
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(theme.mono_font(9.5))
        self.text.setPlaceholderText("Text outputs (type Text) appear here.")
        self.addTab(self.text, "Text")
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setFont(theme.mono_font(8.5))
        self.addTab(self.log_view, "Log")

    # -- images ---------------------------------------------------------------------
    def show_preview(self, node_id: str, image: QImage, message: str = "") -> None:
        """The sampler's live preview, shown until the run's outputs arrive."""
        self.view.set_image(image)
        extra = f" \u00b7 {message}" if message else ""
        self.caption.setText(f"{node_id} \u00b7 live preview{extra}")
        self.setCurrentIndex(0)

    def set_images(self, images: list[ImageOutput]) -> None:
        self.images = list(images)
        self.thumbs.blockSignals(True)
        self.thumbs.clear()
        for out in self.images:
            pix = QPixmap.fromImage(out.image.scaled(THUMB, THUMB, Qt.KeepAspectRatio, Qt.SmoothTransformation))
            item = QListWidgetItem(QIcon(pix), "")
            item.setToolTip(out.caption)
            self.thumbs.addItem(item)
        self.thumbs.blockSignals(False)
        self.thumbs.setVisible(len(self.images) > 1)
        if self.images:
            self.thumbs.setCurrentRow(len(self.images) - 1)
            self._show_row(len(self.images) - 1)
            self.setCurrentIndex(0)

    def clear(self) -> None:
        """Forget the outputs shown (a new or opened graph); the log stays."""
        self.set_images([])
        self.view.set_image(None)
        self.caption.setText("")
        self.text.clear()

    def current_image(self) -> QImage | None:
        return self.view.image

    def current_output(self) -> ImageOutput | None:
        row = self.thumbs.currentRow()
        return self.images[row] if 0 <= row < len(self.images) and self.view.image is self.images[row].image else None

    def _show_row(self, row: int) -> None:
        if 0 <= row < len(self.images):
            out = self.images[row]
            self.view.set_image(out.image)
            hint = " \u00b7 click a cell to put its values into the graph" if out.grid else ""
            self.caption.setText(f"{out.caption} \u00b7 {out.image.width()}\u00d7{out.image.height()}{hint}")

    def _on_click(self, x: float, y: float) -> None:
        from vdnodes.batch.grid import cell_at

        out = self.current_output()
        if out is not None and out.grid:
            index = cell_at(out.grid, x, y)
            if index is not None:
                self.cell_clicked.emit(out.grid, index)

    # -- text and log -------------------------------------------------------------------
    def set_texts(self, texts: list[TextOutput]) -> None:
        self.text.setPlainText("\n\n".join(f"# {t.caption}\n{t.text}" for t in texts))
        if texts and not self.images:
            self.setCurrentIndex(1)

    def log(self, message: str) -> None:
        self.log_view.appendPlainText(f"{time.strftime('%H:%M:%S')}  {message}")
