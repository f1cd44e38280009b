"""A node card and its sockets, drawn from the document.

``NodeItem`` paints what ``GraphDocument`` says about one node: a header in
its category colour (or the user's) with title, id and run-state badge, a
progress bar, one row per input/output socket, a short summary of its params
(click one to edit it on the card), a preview area (sampler previews, output
images, a Load image's picture), the text a node made, and the error of a
failed run. A collapsed card is its header only. ``text_styles`` lists the
fonts and colours the text is drawn with (the readability tests use it). It never
writes the document; the scene turns mouse gestures into editor requests.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from vdnodes.core.executor import graph_dir
from vdnodes.core.node import NodeDecl, Param

from vdnodes_gui import theme
from vdnodes_gui.document import GraphDocument, NodeState, sweep_text

WIDTH = 248.0
HEADER = 50.0
ROW = 24.0
PARAM_ROW = 22.0
PAD = 10.0
CORNER = 7.0
PREVIEW_H = 120.0
TEXT_LINE = 17.0
MAX_TEXT_LINES = 4
MAX_PARAMS = 5
SOCKET_R = 5.5
MORE = "@more"  # the row that shows every param on the card, or only the summary again
# Pixel sizes at zoom 1; the canvas opens at zoom >= 0.8, so titles and params are >= 11 px there.
TITLE_PX, ROW_PX, SMALL_PX = 16, 14, 14
ID_COLOR = "#dfe2ea"  # the id line on the header


def _font(px: int, bold: bool = False):
    font = theme.ui_font(9, bold=bold)
    font.setPixelSize(px)
    return font


def has_preview(decl: NodeDecl, params: dict) -> bool:
    """Nodes that show a picture on their card: an image sampler and image-producing steps."""
    if decl.id == "vd.denoise":
        return params.get("output") == "image"
    if decl.id == "vd.load_image":
        return True
    return decl.category != "input" and any(o.socket_type.name == "Image" for o in decl.outputs.values())


def summary_params(decl: NodeDecl, params: dict, limit: int = MAX_PARAMS) -> list[str]:
    """Params worth a line on the card: changed ones first, in declaration order, at most ``limit``."""
    names = list(decl.params)
    ranked = sorted(names, key=lambda n: (params.get(n) == decl.params[n].default, names.index(n)))
    chosen = [n for n in ranked if params.get(n) not in ("", None)][:limit]
    return sorted(chosen, key=names.index)


def format_value(p: Param, value: object) -> str:
    if p.type == "Bool":
        return "on" if value else "off"
    if p.type == "Float":
        return f"{value:g}"
    if p.type in ("String",) and p.widget == "multiline":
        return f"\u201c{' '.join(str(value).split())}\u201d"
    if p.type == "Path":
        return str(value).replace("\\", "/").rsplit("/", 1)[-1]
    return str(value)


class SocketItem(QGraphicsItem):
    """One input (left edge) or output (right edge) socket; coloured by its type."""

    def __init__(self, parent: "NodeItem", name: str, is_input: bool) -> None:
        super().__init__(parent)
        self.node_id = parent.node_id
        self.name = name
        self.is_input = is_input
        self.color = QColor(theme.TEXT_DIM)
        self.hollow = False
        self.hint: bool | None = None  # during a link drag: True fits, False does not
        self._hover = False
        self.setAcceptHoverEvents(True)
        self.setZValue(2)

    def boundingRect(self) -> QRectF:
        return QRectF(-9, -9, 18, 18)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.setRenderHint(QPainter.Antialiasing)
        r = SOCKET_R + (1.5 if self._hover or self.hint else 0)
        color = QColor(self.color)
        if self.hint is False:
            color.setAlphaF(0.25)
        if self.hint:
            glow = QColor(self.color)
            glow.setAlphaF(0.35)
            painter.setPen(Qt.NoPen)
            painter.setBrush(glow)
            painter.drawEllipse(QPointF(0, 0), r + 4, r + 4)
        painter.setPen(QPen(color.darker(170), 1.5))
        painter.setBrush(QBrush(QColor(theme.NODE_BODY)) if self.hollow else QBrush(color))
        painter.drawEllipse(QPointF(0, 0), r, r)
        if self.hollow:
            painter.setPen(QPen(color, 2))
            painter.setBrush(Qt.NoBrush)
            painter.drawEllipse(QPointF(0, 0), r - 1, r - 1)

    def hoverEnterEvent(self, event) -> None:
        self._hover = True
        self.update()

    def hoverLeaveEvent(self, event) -> None:
        self._hover = False
        self.update()

    def set_hint(self, hint: bool | None) -> None:
        if hint != self.hint:
            self.hint = hint
            self.update()


class NodeItem(QGraphicsItem):
    """One node card. ``refresh()`` re-reads the document; the scene calls it on every change."""

    def __init__(self, doc: GraphDocument, nid: str) -> None:
        super().__init__()
        self.doc = doc
        self.node_id = nid
        self.decl = doc.decl(nid)
        self.setFlag(QGraphicsItem.ItemIsSelectable)
        self.setAcceptHoverEvents(True)
        self.setZValue(1)
        self.inputs = {name: SocketItem(self, name, True) for name in self.decl.inputs}
        self.outputs = {name: SocketItem(self, name, False) for name in self.decl.outputs}
        self._height = HEADER
        self._params: list[str] = []
        self._error_lines: list[str] = []
        self._title_font = _font(TITLE_PX, bold=True)
        self._small_font = _font(SMALL_PX - 2)
        self._id_font = _font(SMALL_PX - 1)
        self._row_font = _font(ROW_PX)
        self._text_lines: list[str] = []
        self._more = 0
        self._param_rows: dict[str, QRectF] = {}
        self._thumb: tuple[str, QImage | None] = ("", None)  # a Load image's file and picture
        self.refresh()

    # -- what the card shows ---------------------------------------------------------
    def collapsed(self) -> bool:
        return bool(self.doc.graph.ui.get(self.node_id, {}).get("collapsed"))

    def header_color(self) -> QColor:
        return QColor(self.doc.graph.ui.get(self.node_id, {}).get("color")
                      or theme.category_color(self.decl.category))

    def text_styles(self) -> list[tuple[str, QFont, QColor, QColor]]:
        """``(what, font, text colour, background colour)`` for the card's text."""
        body = QColor(theme.NODE_BODY)
        return [("title", self._title_font, QColor(theme.TEXT), self.header_color()),
                ("id", self._id_font, QColor(ID_COLOR), self.header_color()),
                ("socket", self._row_font, QColor(theme.TEXT_DIM), body),
                ("param name", self._row_font, QColor(theme.TEXT_DIM), body),
                ("param value", self._row_font, QColor(theme.TEXT), body)]

    def param_at(self, scene_pos: QPointF) -> str | None:
        """The param whose summary row is under a scene position."""
        local = self.mapFromScene(scene_pos)
        return next((n for n, r in self._param_rows.items() if r.contains(local)), None)

    def param_row(self, name: str) -> QRectF | None:
        """The row of a param on the card, in scene coordinates (None: not shown)."""
        rect = self._param_rows.get(name)
        return self.mapRectToScene(rect) if rect is not None else None

    def param_label_width(self, name: str) -> float:
        """How much of a param row its name takes (an editor on the card goes right of it)."""
        return QFontMetricsF(self._row_font).horizontalAdvance(name) + 14

    def thumbnail(self) -> QImage | None:
        """A Load image node's picture, read from its file (None: no readable file)."""
        if self.decl.id != "vd.load_image":
            return None
        path = str(self.doc.graph.nodes[self.node_id].params.get("path", ""))
        if path != self._thumb[0]:
            full = Path(path)
            if path and not full.is_absolute():
                full = Path(graph_dir(self.doc.graph)) / full
            image = QImage(str(full)) if path and full.is_file() else QImage()
            self._thumb = (path, None if image.isNull() else image)
        return self._thumb[1]

    # -- layout ---------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read params, links and run status; recompute the card's height and sockets."""
        spec = self.doc.graph.nodes[self.node_id]
        status = self.doc.status.get(self.node_id)
        self.prepareGeometryChange()
        self._param_rows = {}
        if self.collapsed():
            self._refresh_collapsed(status)
            return
        self._sync_param_sockets()
        rows = max(len(self.inputs), len(self.outputs))
        y = HEADER + 6
        for i, (name, sock) in enumerate(self.inputs.items()):
            sock.setPos(0, y + i * ROW + ROW / 2)
            sock.color = self._type_color(self.doc.input_type(self.node_id, name).name)
            optional = name not in self.decl.inputs or self.decl.inputs[name].optional
            sock.hollow = optional and name not in spec.inputs
            sock.setToolTip(self._socket_tip(name, True))
        for i, (name, sock) in enumerate(self.outputs.items()):
            sock.setPos(WIDTH, y + i * ROW + ROW / 2)
            sock.color = self._type_color(self.doc.output_type(self.node_id, name).name)
            sock.setToolTip(self._socket_tip(name, False))
        y += rows * ROW
        on_card = [n for n in self.decl.params if n not in self.inputs]
        show_all = bool(self.doc.graph.ui.get(self.node_id, {}).get("all_params"))
        self._params = on_card if show_all else \
            summary_params(self.decl, {n: spec.params.get(n) for n in on_card})
        swept = [n for n in on_card if n not in self._params and self.doc.sweep_of(self.node_id, n) is not None]
        self._params = sorted(self._params + swept, key=on_card.index)  # a swept param is always on its card
        self._more = len(on_card) - len(self._params)
        if self._params:
            y += 6
            for name in self._params:
                self._param_rows[name] = QRectF(PAD - 4, y, WIDTH - 2 * PAD + 8, PARAM_ROW)
                y += PARAM_ROW
        if self._more or (show_all and len(on_card) > MAX_PARAMS):
            self._param_rows[MORE] = QRectF(PAD - 4, y, WIDTH - 2 * PAD + 8, PARAM_ROW)
            y += PARAM_ROW
        self._preview_top = y + 8 if has_preview(self.decl, spec.params) else None
        if self._preview_top is not None:
            y = self._preview_top + PREVIEW_H
        self._text_lines = self._wrap(status.text, MAX_TEXT_LINES, self._row_font) if status and status.text else []
        self._text_top = y + 8
        if self._text_lines:
            y = self._text_top + 8 + len(self._text_lines) * TEXT_LINE
        self._error_lines = self._wrap(status.error, 3) if status and status.error else []
        self._error_top = y + 8
        if self._error_lines:
            y = self._error_top + 8 + len(self._error_lines) * TEXT_LINE
        self._height = y + PAD
        self._finish_refresh(status)

    def _refresh_collapsed(self, status) -> None:
        """Header only; every socket sits on the header's middle line."""
        for sock in self.inputs.values():
            sock.setPos(0, HEADER / 2)
        for sock in self.outputs.values():
            sock.setPos(WIDTH, HEADER / 2)
        self._params, self._preview_top, self._text_lines = [], None, []
        self._error_lines = []
        self._height = HEADER
        self._finish_refresh(status)

    def _finish_refresh(self, status) -> None:
        tip = f"<b>{self.doc.title(self.node_id)}</b> <span style='color:{theme.TEXT_DIM}'>{self.decl.id} " \
              f"{self.decl.version}</span><br>{self.decl.doc}"
        if status and status.message:
            tip += f"<br><br>{status.state.value}: {status.message}"
        if status and status.error:
            tip += f"<br><br><span style='color:{theme.ERROR}'>{status.error}</span>"
        self.setToolTip(tip)
        self.update()
        for sock in (*self.inputs.values(), *self.outputs.values()):
            sock.update()

    def _type_color(self, type_name: str) -> QColor:
        d = self.doc.registry.types.defs.get(type_name)
        return QColor(d.color if d else theme.TEXT_DIM)

    def _sync_param_sockets(self) -> None:
        """Params shown as sockets get a socket after the node's own inputs; others lose theirs."""
        want = self.doc.param_sockets(self.node_id)
        for name in [n for n in self.inputs if n not in self.decl.inputs and n not in want]:
            sock = self.inputs.pop(name)
            sock.setParentItem(None)
            if sock.scene() is not None:
                sock.scene().removeItem(sock)
        for name in want:
            if name not in self.inputs:
                self.inputs[name] = SocketItem(self, name, True)

    def _socket_tip(self, name: str, is_input: bool) -> str:
        if is_input and name not in self.decl.inputs:
            p = self.decl.params[name]
            return f"<b>{name}</b> : {p.type} (a param; unlinked, it keeps its value {p.default!r} or the one set)" \
                   f"<br>{p.doc}"
        if is_input:
            sock = self.decl.inputs[name]
            kind = f"{sock.type}{' (optional)' if sock.optional else ''}"
        else:
            sock = self.decl.outputs[name]
            kind = str(self.doc.output_type(self.node_id, name))
        type_doc = self.doc.registry.types.defs.get(sock.socket_type.name)
        lines = [f"<b>{name}</b> : {kind}", sock.doc, type_doc.doc if type_doc else ""]
        return "<br>".join(x for x in lines if x)

    def _wrap(self, text: str, max_lines: int, font: QFont | None = None) -> list[str]:
        fm = QFontMetricsF(font or self._small_font)
        words, lines, line = text.split(), [], ""
        for w in words:
            trial = f"{line} {w}".strip()
            if fm.horizontalAdvance(trial) > WIDTH - 2 * PAD - 8 and line:
                lines.append(line)
                line = w
            else:
                line = trial
        if line:
            lines.append(line)
        if len(lines) > max_lines:
            lines = lines[:max_lines]
            lines[-1] = fm.elidedText(lines[-1] + " ...", Qt.ElideRight, WIDTH - 2 * PAD - 8)
        return lines

    def height(self) -> float:
        return self._height

    def boundingRect(self) -> QRectF:
        return QRectF(-4, -4, WIDTH + 8, self._height + 8)

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        path.addRoundedRect(QRectF(0, 0, WIDTH, self._height), CORNER, CORNER)
        return path

    def socket_pos(self, name: str, is_input: bool) -> QPointF:
        sock = (self.inputs if is_input else self.outputs)[name]
        return self.mapToScene(sock.pos())

    # -- painting -------------------------------------------------------------------
    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.setRenderHint(QPainter.Antialiasing)
        painter.setRenderHint(QPainter.TextAntialiasing)
        status = self.doc.status.get(self.node_id)
        state = status.state if status else NodeState.IDLE
        spec = self.doc.graph.nodes[self.node_id]
        body = QRectF(0, 0, WIDTH, self._height)
        # 1. shadow, body and header
        painter.setPen(Qt.NoPen)
        painter.setBrush(QColor(0, 0, 0, 90))
        painter.drawRoundedRect(body.translated(0, 3), CORNER, CORNER)
        painter.setBrush(QColor(theme.NODE_BODY))
        painter.drawRoundedRect(body, CORNER, CORNER)
        header = QPainterPath()
        header.addRoundedRect(QRectF(0, 0, WIDTH, HEADER), CORNER, CORNER)
        square = QPainterPath()
        square.addRect(QRectF(0, HEADER - CORNER, WIDTH, CORNER))
        painter.setBrush(self.header_color())
        painter.drawPath(header if self.collapsed() else header.united(square))
        # 2. title; id and state badge on the second line
        painter.setFont(self._title_font)
        painter.setPen(QColor(theme.TEXT))
        title = QFontMetricsF(self._title_font).elidedText(self.doc.title(self.node_id), Qt.ElideRight,
                                                           WIDTH - 2 * PAD)
        painter.drawText(QRectF(PAD, 5, WIDTH - 2 * PAD, 22), Qt.AlignLeft | Qt.AlignVCenter, title)
        badge = "bypassed" if spec.bypass else self._badge(state, status)
        painter.setFont(self._small_font)
        badge_w = QFontMetricsF(self._small_font).horizontalAdvance(badge) + 12 if badge else 0
        painter.setFont(self._id_font)
        painter.setPen(QColor(ID_COLOR))
        painter.drawText(QRectF(PAD, 27, WIDTH - 2 * PAD - badge_w - 4, 17), Qt.AlignLeft | Qt.AlignVCenter,
                         self.node_id)
        if badge:
            painter.setFont(self._small_font)
            rect = QRectF(WIDTH - PAD - badge_w + 4, 27, badge_w, 17)
            painter.setPen(Qt.NoPen)
            painter.setBrush(QColor(0, 0, 0, 150))
            painter.drawRoundedRect(rect, 8, 8)
            painter.setPen(QColor(theme.STATE_COLORS["skipped" if spec.bypass else state.value]))
            painter.drawText(rect, Qt.AlignCenter, badge)
        if self.collapsed():
            self._paint_outline(painter, body, state)
            return
        if spec.bypass:  # a bypassed card is drawn faded and struck through its body
            painter.setOpacity(0.55)
        # 3. progress bar along the header's bottom edge
        if state in (NodeState.RUNNING, NodeState.QUEUED):
            track = QRectF(0, HEADER - 3, WIDTH, 3)
            painter.setPen(Qt.NoPen)
            painter.setBrush(QColor(0, 0, 0, 120))
            painter.drawRect(track)
            if state is NodeState.RUNNING:
                painter.setBrush(QColor(theme.ACCENT))
                painter.drawRect(QRectF(0, HEADER - 3, WIDTH * max(0.02, status.progress), 3))
        # 4. socket rows
        painter.setFont(self._row_font)
        y = HEADER + 6
        for i, name in enumerate(self.inputs):
            linked = name in spec.inputs
            painter.setPen(QColor(theme.TEXT if linked else theme.TEXT_DIM))
            label = name if name in self.decl.inputs else \
                f"{name}" + ("" if linked else f" = {format_value(self.decl.params[name], spec.params.get(name))}")
            painter.drawText(QRectF(PAD + 4, y + i * ROW, WIDTH - 2 * PAD - 8, ROW), Qt.AlignLeft | Qt.AlignVCenter,
                             label)
        for i, name in enumerate(self.outputs):
            painter.setPen(QColor(theme.TEXT))
            painter.drawText(QRectF(WIDTH / 2 - PAD - 4, y + i * ROW, WIDTH / 2, ROW),
                             Qt.AlignRight | Qt.AlignVCenter, name)
        y += max(len(self.inputs), len(self.outputs)) * ROW
        # 5. param summary
        if self._params:
            painter.setPen(QPen(QColor(theme.NODE_BORDER), 1))
            painter.drawLine(QPointF(PAD, y + 3), QPointF(WIDTH - PAD, y + 3))
            y += 6
            fm = QFontMetricsF(self._row_font)
            for name in self._params:
                painter.setPen(QColor(theme.TEXT_DIM))
                painter.drawText(QRectF(PAD, y, WIDTH, PARAM_ROW), Qt.AlignLeft | Qt.AlignVCenter, name)
                name_w = fm.horizontalAdvance(name) + 14
                sweep = self.doc.sweep_of(self.node_id, name)
                value = format_value(self.decl.params[name], spec.params.get(name)) if sweep is None else \
                    f"sweep {sweep_text(sweep)}"
                text = fm.elidedText(value, Qt.ElideRight, WIDTH - 2 * PAD - name_w)
                painter.setPen(QColor(theme.TEXT if sweep is None else theme.ACCENT_TEXT))
                painter.drawText(QRectF(PAD + name_w, y, WIDTH - 2 * PAD - name_w, PARAM_ROW),
                                 Qt.AlignRight | Qt.AlignVCenter, text)
                y += PARAM_ROW
        if MORE in self._param_rows:
            painter.setPen(QColor(theme.ACCENT_TEXT))
            painter.drawText(self._param_rows[MORE].adjusted(4, 0, 0, 0), Qt.AlignLeft | Qt.AlignVCenter,
                             f"+ {self._more} more params" if self._more else "\u2212 fewer params")
        # 6. preview
        if self._preview_top is not None:
            self._paint_preview(painter, status)
        # 7. text the node made, then the error
        if self._text_lines:
            self._paint_lines(painter, self._text_top, self._text_lines, QColor(theme.FIELD), QColor(theme.TEXT),
                              self._row_font)
        if self._error_lines:
            self._paint_lines(painter, self._error_top, self._error_lines, QColor(90, 24, 24),
                              QColor(theme.ERROR_TEXT), self._small_font)
        painter.setOpacity(1.0)
        self._paint_outline(painter, body, state)

    def _paint_lines(self, painter: QPainter, top: float, lines: list[str], back: QColor, fore: QColor,
                     font: QFont) -> None:
        box = QRectF(PAD, top, WIDTH - 2 * PAD, 8 + len(lines) * TEXT_LINE)
        painter.setPen(Qt.NoPen)
        painter.setBrush(back)
        painter.drawRoundedRect(box, 4, 4)
        painter.setFont(font)
        painter.setPen(fore)
        for i, line in enumerate(lines):
            painter.drawText(QRectF(box.x() + 5, box.y() + 4 + i * TEXT_LINE, box.width() - 10, TEXT_LINE),
                             Qt.AlignLeft | Qt.AlignVCenter, line)

    def _paint_outline(self, painter: QPainter, body: QRectF, state: NodeState) -> None:
        """Selection wins, then failure, then running."""
        if self.isSelected():
            pen = QPen(QColor(theme.SELECTED), 2)
        elif state is NodeState.FAILED:
            pen = QPen(QColor(theme.ERROR), 1.6)
        elif state is NodeState.RUNNING:
            pen = QPen(QColor(theme.ACCENT), 1.6)
        else:
            pen = QPen(QColor(theme.NODE_BORDER), 1)
        painter.setPen(pen)
        painter.setBrush(Qt.NoBrush)
        painter.drawRoundedRect(body, CORNER, CORNER)

    def _paint_preview(self, painter: QPainter, status) -> None:
        area = QRectF(PAD, self._preview_top, WIDTH - 2 * PAD, PREVIEW_H)
        painter.setPen(Qt.NoPen)
        painter.setBrush(QColor(theme.FIELD))
        painter.drawRoundedRect(area, 4, 4)
        image = status.preview if status and status.preview is not None else self.thumbnail()
        if image is None or image.isNull():
            painter.setFont(self._small_font)
            painter.setPen(QColor(theme.TEXT_FAINT))
            painter.drawText(area, Qt.AlignCenter, "preview")
            return
        scale = min(area.width() / image.width(), area.height() / image.height())
        w, h = image.width() * scale, image.height() * scale
        target = QRectF(area.center().x() - w / 2, area.center().y() - h / 2, w, h)
        painter.setRenderHint(QPainter.SmoothPixmapTransform, scale < 4)
        painter.drawImage(target, image)

    @staticmethod
    def _badge(state: NodeState, status) -> str:
        if state is NodeState.IDLE:
            return ""
        if state is NodeState.RUNNING:
            return f"running {round(100 * status.progress)}%"
        if state is NodeState.DONE and status.seconds is not None:
            return f"done {status.seconds:.1f}s"
        if state is NodeState.QUEUED and status.message:
            return status.message
        return state.value

    def itemChange(self, change: QGraphicsItem.GraphicsItemChange, value):
        if change == QGraphicsItem.ItemSelectedHasChanged:
            self.update()
        return super().itemChange(change, value)
