"""What a user does on the canvas, as functions the tests share.

Nodes are added by double-clicking palette entries, links are drawn through
the scene's drag path (the one mouse events take), params are set through
the inspector's generated widgets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from vdnodes_gui.main_window import MainWindow
from vdnodes_gui.params import (
    BoolEditor, EnumEditor, FloatEditor, IntEditor, LineEditor, SeedEditor, TextEditor,
)

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


def add_from_palette(win: MainWindow, node_type: str) -> str:
    """Double-click the palette entry of ``node_type``; returns the new node's id."""
    before = set(win.doc.graph.nodes)
    item = win.palette.items[node_type]
    tree = win.palette.tree
    tree.scrollToItem(item)
    centre = tree.visualItemRect(item).center()
    QTest.mouseClick(tree.viewport(), Qt.LeftButton, Qt.NoModifier, centre)  # a double-click is
    QTest.mouseDClick(tree.viewport(), Qt.LeftButton, Qt.NoModifier, centre)  # click + double-click
    (nid,) = set(win.doc.graph.nodes) - before
    return nid


def drag_link(win: MainWindow, src: str, output: str, dst: str, name: str) -> str | None:
    """Press on an output socket, drag, release on an input socket; returns the refusal, if any."""
    scene = win.scene
    start = scene.socket(src, output, False)
    end = scene.socket(dst, name, True).scenePos()
    scene.begin_link(start)
    scene.drag_link_to((start.scenePos() + end) / 2)
    scene.drag_link_to(end + QPointF(3, 2))  # drops snap to the nearest socket
    return scene.end_link(end + QPointF(3, 2))


def select(win: MainWindow, nid: str) -> None:
    win.scene.select_nodes([nid])
    assert win.inspector.node_id == nid


def set_param(win: MainWindow, nid: str, name: str, value: Any) -> None:
    """Select the node and type/pick ``value`` in the inspector's widget for ``name``."""
    select(win, nid)
    ed = win.inspector.editors[name]
    if isinstance(ed, (IntEditor, FloatEditor)):
        ed.box.setValue(value)
    elif isinstance(ed, BoolEditor):
        ed.box.setChecked(value)
    elif isinstance(ed, EnumEditor):
        ed.box.setCurrentText(value)
    elif isinstance(ed, TextEditor):
        ed.text.setFocus()
        ed.text.selectAll()
        QTest.keyClicks(ed.text, value)
    elif isinstance(ed, (LineEditor, SeedEditor)):
        ed.line.setFocus()
        ed.line.selectAll()
        QTest.keyClicks(ed.line, str(value))
        QTest.keyClick(ed.line, Qt.Key_Return)
    else:  # pragma: no cover - a new editor kind
        raise TypeError(type(ed))
    assert win.doc.graph.nodes[nid].params[name] == value
