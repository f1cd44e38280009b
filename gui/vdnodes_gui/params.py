"""The inspector: parameter widgets generated from a node's ``Param`` declarations.

``make_editor`` picks a widget per param: spin boxes with the declared range,
a combo box for Enum choices, a line or multi-line text field, a file picker
for ``widget="file"``, a seed field with a randomise button, a check box for
Bool. ``Inspector`` shows the editors of the selected node, sends every edit
to the ``Editor`` (which makes it an undoable command) and follows the
document, so undo updates the widgets too.
"""

from __future__ import annotations

import secrets
from typing import Any

from PySide6.QtCore import QRegularExpression, Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
    QPlainTextEdit, QScrollArea, QSpinBox, QToolButton, QVBoxLayout, QWidget,
)

from vdnodes.core.node import Param

from vdnodes_gui import theme
from vdnodes_gui.document import GraphDocument, NodeState
from vdnodes_gui.editor import Editor

INT_LIMIT = 2**31 - 1


class ParamEditor(QWidget):
    """One param's widget. ``edited(value, merge)``: merge=True while the user is typing."""

    edited = Signal(object, bool)

    def __init__(self, param: Param) -> None:
        super().__init__()
        self.param = param
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)

    def value(self) -> Any:
        raise NotImplementedError

    def set_value(self, value: Any) -> None:
        """Show ``value`` without emitting ``edited``."""
        raise NotImplementedError


class IntEditor(ParamEditor):
    def __init__(self, param: Param) -> None:
        super().__init__(param)
        self.box = QSpinBox()
        lo = -INT_LIMIT if param.min is None else int(max(param.min, -INT_LIMIT))
        hi = INT_LIMIT if param.max is None else int(min(param.max, INT_LIMIT))
        self.box.setRange(lo, hi)
        self.box.setSingleStep(int(param.step or 1))
        self.box.setKeyboardTracking(False)
        self.box.valueChanged.connect(lambda v: self.edited.emit(int(v), False))
        self._layout.addWidget(self.box)

    def value(self) -> int:
        return self.box.value()

    def set_value(self, value: Any) -> None:
        self.box.blockSignals(True)
        self.box.setValue(int(value))
        self.box.blockSignals(False)


class FloatEditor(ParamEditor):
    def __init__(self, param: Param) -> None:
        super().__init__(param)
        self.box = QDoubleSpinBox()
        self.box.setDecimals(3)
        self.box.setRange(-1e9 if param.min is None else param.min, 1e9 if param.max is None else param.max)
        span = (param.max - param.min) if param.min is not None and param.max is not None else 10.0
        self.box.setSingleStep(param.step or (0.05 if span <= 1 else 0.1))
        self.box.setKeyboardTracking(False)
        self.box.valueChanged.connect(lambda v: self.edited.emit(float(v), False))
        self._layout.addWidget(self.box)

    def value(self) -> float:
        return self.box.value()

    def set_value(self, value: Any) -> None:
        self.box.blockSignals(True)
        self.box.setValue(float(value))
        self.box.blockSignals(False)


class BoolEditor(ParamEditor):
    def __init__(self, param: Param) -> None:
        super().__init__(param)
        self.box = QCheckBox()
        self.box.toggled.connect(lambda v: self.edited.emit(bool(v), False))
        self._layout.addWidget(self.box)

    def value(self) -> bool:
        return self.box.isChecked()

    def set_value(self, value: Any) -> None:
        self.box.blockSignals(True)
        self.box.setChecked(bool(value))
        self.box.blockSignals(False)


class EnumEditor(ParamEditor):
    def __init__(self, param: Param) -> None:
        super().__init__(param)
        self.box = QComboBox()
        self.box.addItems(list(param.choices))
        self.box.currentTextChanged.connect(lambda v: self.edited.emit(v, False))
        self._layout.addWidget(self.box)

    def value(self) -> str:
        return self.box.currentText()

    def set_value(self, value: Any) -> None:
        self.box.blockSignals(True)
        self.box.setCurrentText(str(value))
        self.box.blockSignals(False)


class LineEditor(ParamEditor):
    """Single-line text; a Path with ``widget="file"`` / ``"save_file"`` gets a browse button."""

    def __init__(self, param: Param) -> None:
        super().__init__(param)
        self.line = QLineEdit()
        self.line.textEdited.connect(lambda v: self.edited.emit(v, True))
        self._layout.addWidget(self.line)
        if param.widget in ("file", "save_file"):
            self.browse = QToolButton()
            self.browse.setText("...")
            self.browse.setToolTip("Choose a file")
            self.browse.clicked.connect(self._browse)
            self._layout.addWidget(self.browse)

    def _browse(self) -> None:
        if self.param.widget == "save_file":
            path, _ = QFileDialog.getSaveFileName(self, "Choose a file", self.line.text())
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a file", self.line.text())
        if path:
            self.line.setText(path)
            self.edited.emit(path, False)

    def value(self) -> str:
        return self.line.text()

    def set_value(self, value: Any) -> None:
        if self.line.text() != str(value):
            self.line.setText(str(value))


class TextEditor(ParamEditor):
    """Multi-line text (prompts); typing merges into one undo step."""

    def __init__(self, param: Param) -> None:
        super().__init__(param)
        self.text = QPlainTextEdit()
        self.text.setFixedHeight(72)
        self.text.setTabChangesFocus(True)
        self.text.textChanged.connect(self._changed)
        self._quiet = False
        self._layout.addWidget(self.text)

    def _changed(self) -> None:
        if not self._quiet:
            self.edited.emit(self.text.toPlainText(), True)

    def value(self) -> str:
        return self.text.toPlainText()

    def set_value(self, value: Any) -> None:
        if self.text.toPlainText() != str(value):
            self._quiet = True
            self.text.setPlainText(str(value))
            self._quiet = False


class SeedEditor(ParamEditor):
    """A seed (0 <= seed < 2^63) with a randomise button."""

    def __init__(self, param: Param) -> None:
        super().__init__(param)
        self.line = QLineEdit()
        self.line.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{1,19}")))
        self.line.editingFinished.connect(self._commit)
        self.dice = QToolButton()
        self.dice.setText("\u2684")
        self.dice.setToolTip("Random seed")
        self.dice.clicked.connect(self.randomise)
        self._layout.addWidget(self.line)
        self._layout.addWidget(self.dice)

    def _commit(self) -> None:
        if self.line.text():
            self.edited.emit(int(self.line.text()), False)

    def randomise(self) -> None:
        self.line.setText(str(secrets.randbelow(2**32)))
        self._commit()

    def value(self) -> int:
        return int(self.line.text() or 0)

    def set_value(self, value: Any) -> None:
        self.line.setText(str(value))


def make_editor(param: Param) -> ParamEditor:
    """The widget for one param declaration."""
    if param.type == "Seed":
        return SeedEditor(param)
    if param.type == "Int":
        return IntEditor(param)
    if param.type == "Float":
        return FloatEditor(param)
    if param.type == "Bool":
        return BoolEditor(param)
    if param.type == "Enum":
        return EnumEditor(param)
    if param.widget == "multiline":
        return TextEditor(param)
    return LineEditor(param)


def first_sentence(text: str) -> str:
    """The doc's first sentence (the panel is narrow; the whole doc is the tooltip)."""
    head, dot, _ = text.partition(". ")
    return head + "." if dot else text


def _section(title: str) -> QLabel:
    label = QLabel(title.upper())
    label.setObjectName("section")
    return label


def _param_tip(name: str, p: Param) -> str:
    bits = [f"<b>{name}</b> : {p.type}", p.doc]
    if p.min is not None or p.max is not None:
        lo = "-inf" if p.min is None else f"{p.min:g}"
        hi = "inf" if p.max is None else f"{p.max:g}"
        bits.append(f"range [{lo}, {hi}]")
    bits.append(f"default {p.default!r}")
    return "<br>".join(b for b in bits if b)


class Inspector(QScrollArea):
    """Title, doc, inputs, params and run status of the selected node."""

    def __init__(self, doc: GraphDocument, editor: Editor) -> None:
        super().__init__()
        self.doc = doc
        self.editor = editor
        self.node_id: str | None = None
        self.editors: dict[str, ParamEditor] = {}
        self.status_label = QLabel()
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.NoFrame)
        doc.param_changed.connect(self._on_param_changed)
        doc.node_removed.connect(lambda nid: nid == self.node_id and self.set_node(None))
        doc.reset.connect(lambda: self.set_node(None))
        doc.status_changed.connect(lambda nid: nid == self.node_id and self._show_status())
        doc.link_changed.connect(lambda nid, _: nid == self.node_id and self.set_node(nid))
        for signal in (doc.node_added, doc.node_removed, doc.link_changed):  # keep the summary's counts
            signal.connect(lambda *_: self.node_id is None and self.set_node(None))
        self.set_node(None)

    def set_node(self, nid: str | None) -> None:
        """Rebuild the panel for ``nid`` (None: an empty hint)."""
        self.node_id = nid if nid in self.doc.graph.nodes else None
        self.editors = {}
        page = QWidget()
        box = QVBoxLayout(page)
        box.setContentsMargins(12, 8, 12, 12)
        box.setSpacing(6)
        if self.node_id is None:
            self._graph_summary(box)
            box.addStretch(1)
            self.setWidget(page)
            self.status_label = QLabel()
            return
        nid = self.node_id
        decl, spec = self.doc.decl(nid), self.doc.graph.nodes[nid]
        title = QLabel(decl.display_name)
        title.setObjectName("heading")
        sub = QLabel(f"{nid}  \u00b7  {decl.id} {decl.version}")
        sub.setObjectName("dim")
        doc_label = QLabel(first_sentence(decl.doc))
        doc_label.setWordWrap(True)
        doc_label.setObjectName("dim")
        doc_label.setToolTip(decl.doc)
        for w in (title, sub, doc_label):
            box.addWidget(w)
        if decl.params:
            box.addWidget(_section("Parameters"))
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignLeft | Qt.AlignVCenter)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.setVerticalSpacing(6)
        for name, p in decl.params.items():
            ed = make_editor(p)
            ed.set_value(spec.params.get(name, p.default))
            ed.setToolTip(_param_tip(name, p))
            ed.edited.connect(lambda value, merge, name=name: self._edited(name, value, merge))
            label = QLabel(name)
            label.setToolTip(_param_tip(name, p))
            form.addRow(label, ed)
            self.editors[name] = ed
        box.addLayout(form)
        if decl.inputs:
            box.addWidget(_section("Inputs"))
            lines = []
            for name, inp in decl.inputs.items():
                link = spec.inputs.get(name)
                src = f"{link}" if link else ("(optional)" if inp.optional else "<span style='color:"
                                              f"{theme.WARNING}'>not connected</span>")
                lines.append(f"<span style='color:{theme.TEXT_DIM}'>{name}</span> \u2190 {src}")
            inputs = QLabel("<br>".join(lines))
            inputs.setTextFormat(Qt.RichText)
            box.addWidget(inputs)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        box.addWidget(self.status_label)
        box.addStretch(1)
        self.setWidget(page)
        self._show_status()

    def _graph_summary(self, box: QVBoxLayout) -> None:
        """With no node selected: what the graph is, and what to do."""
        graph = self.doc.graph
        title = QLabel(graph.meta.get("name") or (self.doc.path.stem if self.doc.path else "Untitled graph"))
        title.setObjectName("heading")
        box.addWidget(title)
        if graph.meta.get("description"):
            about = QLabel(graph.meta["description"])
            about.setWordWrap(True)
            about.setObjectName("dim")
            box.addWidget(about)
        n_links = len(self.doc.links())
        counts = QLabel(f"{len(graph.nodes)} nodes \u00b7 {n_links} links")
        counts.setObjectName("dim")
        hint = QLabel("Select a node to edit its parameters.")
        hint.setObjectName("dim")
        hint.setWordWrap(True)
        box.addWidget(counts)
        box.addSpacing(8)
        box.addWidget(hint)

    def _edited(self, name: str, value: Any, merge: bool) -> None:
        nid = self.node_id
        if nid is None:
            return
        if self.editor.set_param(nid, name, value, merge=merge):
            self.editors[name].set_value(self.doc.graph.nodes[nid].params[name])  # refused: show the old value

    def _on_param_changed(self, nid: str, name: str) -> None:
        if nid == self.node_id and name in self.editors:
            self.editors[name].set_value(self.doc.graph.nodes[nid].params[name])

    def _show_status(self) -> None:
        status = self.doc.status.get(self.node_id) if self.node_id else None
        if status is None or status.state is NodeState.IDLE:
            self.status_label.setText("")
            return
        color = theme.STATE_COLORS[status.state.value]
        text = f"<span style='color:{color}'>{status.state.value}</span>"
        if status.seconds is not None and status.state is NodeState.DONE:
            text += f" in {status.seconds:.2f} s"
        if status.message:
            text += f" \u2014 {status.message}"
        if status.error:
            text += f"<br><span style='color:{theme.ERROR}'>{status.error}</span>"
        self.status_label.setText(text)
