"""Editing a param on the node card: the inspector's own widget, over the param's row.

A click on a param row of a card opens it; a value the declaration refuses is
shown back as it was (the editor says why). It closes on Escape, on a click
elsewhere, or after a committed edit of a one-shot widget (number, choice).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QGraphicsProxyWidget

from vdnodes_gui.editor import Editor
from vdnodes_gui.params import ParamEditor, TextEditor, make_editor


class InlineParam(QGraphicsProxyWidget):
    """One param's editor on a card (z above the cards)."""

    def __init__(self, editor: Editor, nid: str, name: str) -> None:
        super().__init__()
        self.editor, self.nid, self.name = editor, nid, name
        param = editor.doc.decl(nid).params[name]
        self.widget_: ParamEditor = make_editor(param)
        self.widget_.set_value(editor.doc.graph.nodes[nid].params.get(name, param.default))
        self.widget_.edited.connect(self._edited)
        self.widget_.note.connect(editor.refused)
        self.setWidget(self.widget_)
        self.setZValue(10)
        for child in [self.widget_, *self.widget_.findChildren(QObject)]:
            child.installEventFilter(self)

    def _edited(self, value: Any, merge: bool) -> None:
        if self.editor.set_param(self.nid, self.name, value, merge=merge):
            self.widget_.set_value(self.editor.doc.graph.nodes[self.nid].params[self.name])

    def focus(self) -> None:
        target = getattr(self.widget_, "box", None) or getattr(self.widget_, "line", None) or \
            getattr(self.widget_, "text", None)
        if target is not None:
            target.setFocus()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.KeyPress and event.key() == Qt.Key_Escape:
            self.close_later()
            return True
        if event.type() == QEvent.KeyPress and event.key() in (Qt.Key_Return, Qt.Key_Enter) \
                and not isinstance(self.widget_, TextEditor):
            obj.event(event)  # let the widget commit first
            self.close_later()
            return True
        return False

    def close_later(self) -> None:
        scene = self.scene()
        if scene is not None and getattr(scene, "inline", None) is self:
            scene.close_inline()
