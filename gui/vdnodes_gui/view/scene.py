"""The graph scene: keeps node and link items in step with the document, turns gestures into requests.

Document signals add, remove, move and repaint items. Mouse gestures become
``Editor`` requests: dragging node cards (one undo step per drag), drawing a
link from a socket (``begin_link`` / ``drag_link_to`` / ``end_link``, the same
path a test drives), picking up a link by its input end, deleting the
selection. The scene never writes the document itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGraphicsScene, QGraphicsSceneMouseEvent

from vdnodes_gui import theme
from vdnodes_gui.document import GraphDocument
from vdnodes_gui.editor import Editor
from vdnodes_gui.layout import layered_positions, missing_positions
from vdnodes_gui.view.frame_item import FrameItem, RerouteHandle
from vdnodes_gui.view.inline_param import InlineParam
from vdnodes_gui.view.link_item import DragLink, LinkItem
from vdnodes_gui.view.node_item import MORE, NodeItem, SocketItem

SNAP_RADIUS = 14.0
GRID = 24  # the canvas's dot grid


@dataclass
class LinkDrag:
    anchor: SocketItem  # the fixed end
    old: tuple[str, str] | None  # the input whose link was picked up, if any
    line: DragLink


@dataclass
class FrameDrag:
    gesture: int
    start: QPointF
    index: int
    origin: list[float]
    nodes: dict[str, tuple[float, float]]


@dataclass
class PointDrag:
    handle: RerouteHandle
    points: list[QPointF]


@dataclass
class MoveDrag:
    gesture: int
    start: QPointF
    origins: dict[str, tuple[float, float]]


class GraphScene(QGraphicsScene):
    """Items for one ``GraphDocument``; edits go through ``editor``."""

    refused_at = Signal(str, QPointF)  # a refused link: the reason and where it was dropped
    link_dropped = Signal(str, str, bool, QPointF)  # a new link dropped on empty space: node, socket, is_input, where

    def __init__(self, doc: GraphDocument, editor: Editor) -> None:
        super().__init__()
        self.doc = doc
        self.editor = editor
        self.nodes: dict[str, NodeItem] = {}
        self.links: dict[tuple[str, str], LinkItem] = {}
        self._link_drag: LinkDrag | None = None
        self._move: MoveDrag | None = None
        self.snap = False  # moves land on the grid
        self.inline: InlineParam | None = None  # a param being edited on its card
        self._param_press: tuple[str, str, QPointF] | None = None
        self.frames: list[FrameItem] = []
        self.handles: dict[tuple[str, str], list[RerouteHandle]] = {}
        self._frame_drag: FrameDrag | None = None
        self._point_drag: PointDrag | None = None
        self.setSceneRect(QRectF(-20000, -20000, 40000, 40000))
        self.setBackgroundBrush(QColor(theme.CANVAS))
        doc.reset.connect(self.rebuild)
        doc.node_added.connect(self._on_node_added)
        doc.node_removed.connect(self._on_node_removed)
        doc.node_moved.connect(self._on_node_moved)
        doc.param_changed.connect(self._on_param_changed)
        doc.link_changed.connect(self._on_link_changed)
        doc.status_changed.connect(self._on_status_changed)
        doc.ui_changed.connect(self._on_ui_changed)
        doc.frames_changed.connect(self._rebuild_frames)
        self.rebuild()

    # -- document -> items -----------------------------------------------------------
    def rebuild(self) -> None:
        self.close_inline()
        self._link_drag = self._move = None
        for item in list(self.nodes.values()) + list(self.links.values()):
            self.removeItem(item)
        self.nodes.clear()
        self.links.clear()
        for nid in self.doc.graph.nodes:
            self.nodes[nid] = item = NodeItem(self.doc, nid)
            self.addItem(item)
        self._place_unplaced()
        for nid, item in self.nodes.items():
            item.setPos(*self.doc.pos(nid))
        for dst, name, _ in self.doc.links():
            self._on_link_changed(dst, name)
        self._rebuild_frames()

    def _rebuild_frames(self) -> None:
        for item in self.frames:
            self.removeItem(item)
        self.frames = []
        for i, frame in enumerate(self.doc.frames()):
            item = FrameItem(i, frame)
            self.addItem(item)
            self.frames.append(item)

    def frame_at(self, pos: QPointF, bar_only: bool = True) -> FrameItem | None:
        """The frame whose title bar (or body) is under ``pos``, if no card is."""
        if self.node_at(pos) is not None:
            return None
        for item in reversed(self.frames):
            if (item.bar() if bar_only else item.rect()).contains(pos):
                return item
        return None

    def link_at(self, pos: QPointF) -> LinkItem | None:
        return next((i for i in self.items(pos) if isinstance(i, LinkItem)), None)

    def _place_unplaced(self) -> None:
        """Graphs without positions (hand-written files) get a layered layout, stored in ``ui``."""
        if not missing_positions(self.doc.graph):
            return
        heights = {nid: item.height() for nid, item in self.nodes.items()}
        for nid, pos in layered_positions(self.doc.graph, heights).items():
            self.doc.graph.ui.setdefault(nid, {}).setdefault("pos", list(pos))

    def _on_node_added(self, nid: str) -> None:
        self.nodes[nid] = item = NodeItem(self.doc, nid)
        self.addItem(item)
        item.setPos(*self.doc.pos(nid))

    def _on_node_removed(self, nid: str) -> None:
        if self.inline is not None and self.inline.nid == nid:
            self.close_inline()
        item = self.nodes.pop(nid, None)
        if item is not None:
            self.removeItem(item)

    def _on_node_moved(self, nid: str) -> None:
        item = self.nodes.get(nid)
        if item is None:
            return
        item.setPos(*self.doc.pos(nid))
        self._update_links_of(nid)

    def _on_param_changed(self, nid: str, name: str) -> None:
        # A param can change an output type (vd.denoise 'output'): refresh every card and link.
        for item in self.nodes.values():
            item.refresh()
        self._update_all_links()

    def _on_status_changed(self, nid: str) -> None:
        item = self.nodes.get(nid)
        if item is not None:
            height = item.height()
            item.refresh()
            if item.height() != height:  # an error or a text appeared: sockets stay, links too
                self._update_links_of(nid)

    def _on_ui_changed(self, nid: str) -> None:
        item = self.nodes.get(nid)
        if item is not None:
            item.refresh()
            self._update_links_of(nid)

    def _on_link_changed(self, dst: str, name: str) -> None:
        link = self.doc.link(dst, name) if dst in self.doc.graph.nodes else None
        item = self.links.get((dst, name))
        if link is None:
            if item is not None:
                self.removeItem(self.links.pop((dst, name)))
            for handle in self.handles.pop((dst, name), []):
                self.removeItem(handle)
        elif item is None:
            self.links[(dst, name)] = item = LinkItem(dst, name)
            self.addItem(item)
        for nid in self.nodes:
            self.nodes[nid].refresh()
        self._update_all_links()

    def _update_links_of(self, nid: str) -> None:
        for (dst, name), item in self.links.items():
            link = self.doc.link(dst, name)
            if link is not None and nid in (dst, link.node):
                self._place_link(item)

    def _update_all_links(self) -> None:
        for item in self.links.values():
            self._place_link(item)

    def _place_link(self, item: LinkItem) -> None:
        dst, name = item.key
        link = self.doc.link(dst, name)
        if link is None or link.node not in self.nodes or dst not in self.nodes:
            return
        points = [QPointF(x, y) for x, y in self.doc.graph.ui.get(dst, {}).get("reroutes", {}).get(name, [])]
        item.set_ends(self.nodes[link.node].socket_pos(link.output, False),
                      self.nodes[dst].socket_pos(name, True), points)
        t = self.doc.output_type(link.node, link.output)
        valid = self.doc.link_is_valid(dst, name)
        d = self.doc.registry.types.defs.get(t.name)
        want = self.doc.input_type(dst, name)
        tip = f"{link} \u2192 {dst}.{name}  ({t})" if valid else \
            f"{link} \u2192 {dst}.{name}: {t} does not fit {want}"
        item.set_style(QColor(d.color if d else theme.TEXT_DIM), valid, tip)
        for handle in self.handles.pop(item.key, []):
            self.removeItem(handle)
        self.handles[item.key] = []
        for i, point in enumerate(points):
            handle = RerouteHandle(item.key, i, item.color)
            handle.setPos(point)
            self.addItem(handle)
            self.handles[item.key].append(handle)

    def snapped(self, x: float, y: float) -> tuple[float, float]:
        """A position on the grid when snapping is on."""
        if not self.snap:
            return x, y
        return round(x / GRID) * GRID, round(y / GRID) * GRID

    # -- selection -----------------------------------------------------------------------
    def selected_node_ids(self) -> list[str]:
        return [i.node_id for i in self.selectedItems() if isinstance(i, NodeItem)]

    def node_at(self, pos: QPointF) -> str | None:
        """The id of the node card under a scene position, if any."""
        for item in self.items(pos):
            while item is not None and not isinstance(item, NodeItem):
                item = item.parentItem()
            if isinstance(item, NodeItem):
                return item.node_id
        return None

    def select_nodes(self, nids: list[str]) -> None:
        self.clearSelection()
        for nid in nids:
            if nid in self.nodes:
                self.nodes[nid].setSelected(True)

    def delete_selected(self) -> None:
        nids = self.selected_node_ids()
        links = [i.key for i in self.selectedItems() if isinstance(i, LinkItem)
                 if i.key[0] not in nids and self.doc.link(*i.key) is not None
                 and self.doc.link(*i.key).node not in nids]
        if not nids and not links:
            return
        self.editor.undo.beginMacro("Delete selection")
        for dst, name in links:
            self.editor.disconnect(dst, name)
        self.editor.remove(nids)
        self.editor.undo.endMacro()

    # -- link drawing (mouse and tests share this path) -------------------------------------
    def socket(self, nid: str, name: str, is_input: bool) -> SocketItem:
        return (self.nodes[nid].inputs if is_input else self.nodes[nid].outputs)[name]

    def begin_link(self, sock: SocketItem) -> None:
        """Start drawing from a socket; pressing a linked input picks its link up."""
        old = None
        if sock.is_input:
            link = self.doc.link(sock.node_id, sock.name)
            if link is not None:
                old = (sock.node_id, sock.name)
                self.links[old].hide()
                sock = self.socket(link.node, link.output, False)
        line = DragLink(sock.color)
        self.addItem(line)
        self._link_drag = LinkDrag(sock, old, line)
        for item in self.nodes.values():
            for other in (*item.inputs.values(), *item.outputs.values()):
                other.set_hint(self._fits(sock, other))
        self.drag_link_to(sock.scenePos())

    def drag_link_to(self, pos: QPointF) -> None:
        drag = self._link_drag
        if drag is None:
            return
        a = drag.anchor.scenePos()
        drag.line.set_ends(a, pos) if not drag.anchor.is_input else drag.line.set_ends(pos, a)

    def end_link(self, pos: QPointF) -> str | None:
        """Drop the link at ``pos``: connect, move or drop it; returns the reason when refused."""
        drag, self._link_drag = self._link_drag, None
        if drag is None:
            return None
        self.removeItem(drag.line)
        for item in self.nodes.values():
            for other in (*item.inputs.values(), *item.outputs.values()):
                other.set_hint(None)
        if drag.old is not None and drag.old in self.links:
            self.links[drag.old].show()
        target = self.socket_at(pos, exclude=drag.anchor)
        if target is None:
            if drag.old is not None:
                self.editor.disconnect(*drag.old)
            elif self.node_at(pos) is None:  # on empty space: offer the nodes that fit
                self.link_dropped.emit(drag.anchor.node_id, drag.anchor.name, drag.anchor.is_input, pos)
            return None
        if target.is_input == drag.anchor.is_input:
            why = "link an output (right edge) to an input (left edge)"
            self.editor.refused.emit(why)
        else:
            src, dst = (drag.anchor, target) if not drag.anchor.is_input else (target, drag.anchor)
            if drag.old is not None:
                why = self.editor.move_link(drag.old, src.node_id, src.name, dst.node_id, dst.name)
            else:
                why = self.editor.connect(src.node_id, src.name, dst.node_id, dst.name)
        if why:
            self.refused_at.emit(why, pos)
        return why

    def socket_at(self, pos: QPointF, exclude: SocketItem | None = None) -> SocketItem | None:
        r = SNAP_RADIUS
        near = [i for i in self.items(QRectF(pos.x() - r, pos.y() - r, 2 * r, 2 * r))
                if isinstance(i, SocketItem) and i is not exclude]
        if not near:
            return None
        return min(near, key=lambda s: (s.scenePos() - pos).manhattanLength())

    def _fits(self, anchor: SocketItem, other: SocketItem) -> bool | None:
        if other.is_input == anchor.is_input:
            return None
        src, dst = (anchor, other) if not anchor.is_input else (other, anchor)
        return self.doc.link_problem(src.node_id, src.name, dst.node_id, dst.name) is None

    # -- params on the card -------------------------------------------------------------------
    def edit_param_inline(self, nid: str, name: str) -> InlineParam | None:
        """Open the param's widget over its row on the card (None: the row is not shown)."""
        self.close_inline()
        row = self.nodes[nid].param_row(name) if nid in self.nodes else None
        if row is None:
            return None
        self.inline = InlineParam(self.editor, nid, name)
        self.addItem(self.inline)
        label = self.nodes[nid].param_label_width(name)  # the param's name stays readable
        tall = 50 if self.inline.widget_.param.widget == "multiline" else 0
        self.inline.setGeometry(row.adjusted(label, -3, 0, 3 + tall))
        self.inline.focus()
        return self.inline

    def close_inline(self) -> None:
        inline, self.inline = self.inline, None
        if inline is not None:
            inline.widget_.edited.disconnect()
            self.removeItem(inline)
            inline.deleteLater()

    # -- mouse ------------------------------------------------------------------------------
    def mousePressEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if self.inline is not None and not self.inline.geometry().contains(event.scenePos()):
            self.close_inline()
        self._param_press = None
        if event.button() == Qt.LeftButton and self._begin_layout_drag(event.scenePos()):
            event.accept()
            return
        if event.button() == Qt.LeftButton:
            nid = self.node_at(event.scenePos())
            name = self.nodes[nid].param_at(event.scenePos()) if nid is not None else None
            if name is not None:
                self._param_press = (nid, name, event.scenePos())
        if event.button() == Qt.LeftButton:
            sock = self.socket_at(event.scenePos())
            if sock is not None:
                self.begin_link(sock)
                event.accept()
                return
        super().mousePressEvent(event)
        if event.button() == Qt.LeftButton:
            nid = self.node_at(event.scenePos())
            if nid is not None and self.nodes[nid].isSelected():
                nids = self.selected_node_ids()
                self._move = MoveDrag(self.editor.new_gesture(), event.scenePos(),
                                      {n: self.doc.pos(n) for n in nids})

    def mouseMoveEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if self._frame_drag is not None or self._point_drag is not None:
            self._layout_drag_to(event.scenePos())
            event.accept()
            return
        if self._link_drag is not None:
            self.drag_link_to(event.scenePos())
            event.accept()
            return
        if self._move is not None and event.buttons() & Qt.LeftButton:
            delta = event.scenePos() - self._move.start
            self.editor.move({n: self.snapped(x + delta.x(), y + delta.y())
                              for n, (x, y) in self._move.origins.items()}, self._move.gesture)
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QGraphicsSceneMouseEvent) -> None:
        if (self._frame_drag is not None or self._point_drag is not None) and event.button() == Qt.LeftButton:
            self._end_layout_drag()
            event.accept()
            return
        if self._link_drag is not None and event.button() == Qt.LeftButton:
            self.end_link(event.scenePos())
            event.accept()
            return
        self._move = None
        press, self._param_press = self._param_press, None
        super().mouseReleaseEvent(event)
        if press is not None and event.button() == Qt.LeftButton \
                and (event.scenePos() - press[2]).manhattanLength() < 4:
            if press[1] == MORE:
                show = not self.doc.graph.ui.get(press[0], {}).get("all_params")
                self.editor.set_ui(press[0], "all_params", True if show else None,
                                   f"{'Show every' if show else 'Fewer'} param of {press[0]}")
            else:
                self.edit_param_inline(press[0], press[1])

    # -- frame and reroute-point drags (tests drive these too) -------------------------------
    def _begin_layout_drag(self, pos: QPointF) -> bool:
        handle = next((i for i in self.items(pos) if isinstance(i, RerouteHandle)), None)
        if handle is not None:
            self._point_drag = PointDrag(handle, [h.pos() for h in self.handles[handle.key]])
            return True
        frame = self.frame_at(pos)
        if frame is None:
            return False
        inside = {n: self.doc.pos(n) for n, item in self.nodes.items()
                  if frame.rect().contains(item.sceneBoundingRect().center())}
        self._frame_drag = FrameDrag(self.editor.new_gesture(), pos, frame.index, list(frame.frame["rect"]), inside)
        return True

    def _layout_drag_to(self, pos: QPointF) -> None:
        if self._point_drag is not None:
            drag = self._point_drag
            drag.points[drag.handle.index] = pos
            drag.handle.setPos(pos)
            link = self.doc.link(*drag.handle.key)
            if link is not None:
                self.links[drag.handle.key].set_ends(self.nodes[link.node].socket_pos(link.output, False),
                                                     self.nodes[drag.handle.key[0]].socket_pos(drag.handle.key[1],
                                                                                               True), drag.points)
            return
        drag = self._frame_drag
        dx, dy = self.snapped(pos.x() - drag.start.x(), pos.y() - drag.start.y())
        self.editor.move_frame(drag.index, dx, dy, drag.origin, drag.nodes, drag.gesture)

    def _end_layout_drag(self) -> None:
        point, self._point_drag = self._point_drag, None
        self._frame_drag = None
        if point is not None:
            self.editor.set_reroutes(*point.handle.key, [(p.x(), p.y()) for p in point.points])

    def add_reroute(self, key: tuple[str, str], pos: QPointF) -> None:
        """A reroute point on the link into ``key`` at ``pos``, kept in order along the link."""
        points = [h.pos() for h in self.handles.get(key, [])]
        index = next((i for i, p in enumerate(points) if p.x() > pos.x()), len(points))
        points.insert(index, pos)
        self.editor.set_reroutes(*key, [(p.x(), p.y()) for p in points])
