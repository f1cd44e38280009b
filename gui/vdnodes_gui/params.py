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
from PySide6.QtGui import QRegularExpressionValidator, QValidator
from PySide6.QtWidgets import (
    QAbstractSpinBox, QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
    QPlainTextEdit, QScrollArea, QSpinBox, QToolButton, QVBoxLayout, QWidget,
)

from vdnodes.core.node import Param

from vdnodes_gui import theme
from vdnodes_gui.document import GraphDocument, NodeState, sweep_text
from vdnodes_gui.editor import Editor

INT_LIMIT = 2**31 - 1


class ParamEditor(QWidget):
    """One param's widget. ``edited(value, merge)``: merge=True while the user is typing;
    ``note(text)``: something the user should read (a typed value was clamped to the range)."""

    edited = Signal(object, bool)
    note = Signal(str)

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


def range_text(param: Param) -> str:
    """``0 - 30``, ``>= 1``, or "" for an unbounded param."""
    if param.min is not None and param.max is not None:
        return f"{param.min:g} – {param.max:g}"
    if param.min is not None:
        return f"≥ {param.min:g}"
    if param.max is not None:
        return f"≤ {param.max:g}"
    return ""


class _Clamping:
    """Spin-box behaviour shared by ints and floats: any number may be typed; one outside the
    range becomes the nearest bound when committed, and ``clamped(typed, bound)`` says so."""

    def _setup(self) -> None:
        self.setCorrectionMode(QAbstractSpinBox.CorrectToNearestValue)
        self.setKeyboardTracking(False)
        self.typed: float | None = None

    def validate(self, text: str, pos: int):
        number = _number(text)
        if number is not None and not (self.minimum() <= number <= self.maximum()):
            return QValidator.Intermediate, text, pos
        return super().validate(text, pos)

    def fixup(self, text: str) -> str:
        number = _number(text)
        if number is None:
            return super().fixup(text)
        self.typed = number
        return self.textFromValue(min(self.maximum(), max(self.minimum(), number)))

    def valueFromText(self, text: str):
        number = _number(text)
        if number is None:
            return super().valueFromText(text)
        bounded = min(self.maximum(), max(self.minimum(), number))
        if bounded != number:
            self.typed = number
        return type(self.value())(bounded)


def _number(text: str) -> float | None:
    try:
        return float(text.strip().replace(",", "."))
    except ValueError:
        return None


class _IntBox(_Clamping, QSpinBox):
    def __init__(self) -> None:
        super().__init__()
        self._setup()


class _FloatBox(_Clamping, QDoubleSpinBox):
    def __init__(self) -> None:
        super().__init__()
        self._setup()


class _NumberEditor(ParamEditor):
    """A number field with its range beside it; out-of-range input is clamped visibly."""

    def _finish(self, box: QAbstractSpinBox, cast: type) -> None:
        self.box = box
        box.valueChanged.connect(lambda v: self._changed(cast(v)))
        box.editingFinished.connect(self._report_clamp)
        self._layout.addWidget(box, 1)
        if range_text(self.param):
            self.range_label = QLabel(range_text(self.param))
            self.range_label.setObjectName("dim")
            self._layout.addWidget(self.range_label)

    def _changed(self, value: Any) -> None:
        self.edited.emit(value, False)
        self._report_clamp()

    def _report_clamp(self) -> None:
        typed, self.box.typed = self.box.typed, None
        if typed is not None and not (self.box.minimum() <= typed <= self.box.maximum()):
            self.note.emit(f"{typed:g} is outside {range_text(self.param)}; set to {self.box.value():g}")


class IntEditor(_NumberEditor):
    def __init__(self, param: Param) -> None:
        super().__init__(param)
        box = _IntBox()
        lo = -INT_LIMIT if param.min is None else int(max(param.min, -INT_LIMIT))
        hi = INT_LIMIT if param.max is None else int(min(param.max, INT_LIMIT))
        box.setRange(lo, hi)
        box.setSingleStep(int(param.step or 1))
        self._finish(box, int)

    def value(self) -> int:
        return self.box.value()

    def set_value(self, value: Any) -> None:
        self.box.blockSignals(True)
        self.box.setValue(int(value))
        self.box.blockSignals(False)


class FloatEditor(_NumberEditor):
    def __init__(self, param: Param) -> None:
        super().__init__(param)
        box = _FloatBox()
        box.setDecimals(3)
        box.setRange(-1e9 if param.min is None else param.min, 1e9 if param.max is None else param.max)
        span = (param.max - param.min) if param.min is not None and param.max is not None else 10.0
        box.setSingleStep(param.step or (0.05 if span <= 1 else 0.1))
        self._finish(box, float)

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


SEED_MODE_LABELS = {"fixed": "fixed", "increment": "+1 after run", "randomise": "random after run"}


class SeedEditor(ParamEditor):
    """A seed (0 <= seed < 2^63) with a randomise button and what happens to it after each run
    (``mode_changed``: "fixed", "increment" or "randomise")."""

    mode_changed = Signal(str)

    def __init__(self, param: Param) -> None:
        super().__init__(param)
        self.line = QLineEdit()
        self.line.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{1,19}")))
        self.line.editingFinished.connect(self._commit)
        self.dice = QToolButton()
        self.dice.setText("\u2684")
        self.dice.setToolTip("Random seed")
        self.dice.clicked.connect(self.randomise)
        self.mode = QComboBox()
        for mode, label in SEED_MODE_LABELS.items():
            self.mode.addItem(label, mode)
        self.mode.setToolTip("After each successful run: keep the seed, add 1, or pick a random one")
        self.mode.currentIndexChanged.connect(lambda _: self.mode_changed.emit(self.mode.currentData()))
        self._layout.addWidget(self.line, 1)
        self._layout.addWidget(self.dice)
        self._layout.addWidget(self.mode)

    def set_mode(self, mode: str) -> None:
        self.mode.blockSignals(True)
        self.mode.setCurrentIndex(max(0, self.mode.findData(mode)))
        self.mode.blockSignals(False)

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
    """Title, doc, inputs, params and run status of the selected node.

    ``param_menu_requested(node, param, global pos)``: a right-click on a param's label (the window
    shows the same param menu as on the card)."""

    param_menu_requested = Signal(str, str, object)

    def __init__(self, doc: GraphDocument, editor: Editor) -> None:
        super().__init__()
        self.doc = doc
        self.editor = editor
        self.node_id: str | None = None
        self.editors: dict[str, ParamEditor] = {}
        self.labels: dict[str, QLabel] = {}
        self.status_label = QLabel()
        self._title: QLabel | None = None
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.NoFrame)
        doc.param_changed.connect(self._on_param_changed)
        doc.path_changed.connect(lambda: self.node_id is None and self.set_node(None))
        doc.ui_changed.connect(lambda nid: nid == self.node_id and self._on_ui_changed())
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
        self.editors, self.labels = {}, {}
        page = QWidget()
        box = QVBoxLayout(page)
        box.setContentsMargins(12, 8, 12, 12)
        box.setSpacing(6)
        if self.node_id is None:
            self._title = None
            self._graph_summary(box)
            box.addStretch(1)
            self.setWidget(page)
            self.status_label = QLabel()
            return
        nid = self.node_id
        decl, spec = self.doc.decl(nid), self.doc.graph.nodes[nid]
        title = self._title = QLabel(self.doc.title(nid))
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
            ed.note.connect(lambda text, name=name: self.editor.refused.emit(f"{nid}.{name}: {text}"))
            if isinstance(ed, SeedEditor):
                ed.set_mode(self.doc.graph.ui.get(nid, {}).get("seed_mode", {}).get(name, "fixed"))
                ed.mode_changed.connect(lambda mode, name=name: self._seed_mode(name, mode))
            if name in spec.inputs:  # driven by a link: shown, not editable here
                ed.setEnabled(False)
                ed.setToolTip(f"linked from {spec.inputs[name]}; right-click the name to put it back")
            label = QLabel(name)
            label.setToolTip(_param_tip(name, p))
            self.labels[name] = label
            label.setContextMenuPolicy(Qt.CustomContextMenu)
            label.customContextMenuRequested.connect(
                lambda where, name=name, label=label: self.param_menu_requested.emit(
                    nid, name, label.mapToGlobal(where)))
            form.addRow(label, ed)
            self.editors[name] = ed
        box.addLayout(form)
        self._show_sweeps()
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
        hint = QLabel("Select a node to edit its parameters. Double-click the canvas or press Tab "
                      "to add a node.")
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

    def _seed_mode(self, name: str, mode: str) -> None:
        nid = self.node_id
        modes = dict(self.doc.graph.ui.get(nid, {}).get("seed_mode", {}))
        modes[name] = mode
        modes = {k: v for k, v in modes.items() if v != "fixed"}
        self.editor.set_ui(nid, "seed_mode", modes or None, f"Seed of {nid}: {SEED_MODE_LABELS[mode]}")

    def _on_ui_changed(self) -> None:
        modes = self.doc.graph.ui.get(self.node_id, {}).get("seed_mode", {})
        for name, ed in self.editors.items():
            if isinstance(ed, SeedEditor):
                ed.set_mode(modes.get(name, "fixed"))
        if self._title is not None:
            self._title.setText(self.doc.title(self.node_id))
        self._show_sweeps()

    def _show_sweeps(self) -> None:
        """A swept param's label says so (its values in the tooltip)."""
        for name, label in self.labels.items():
            spec = self.doc.sweep_of(self.node_id, name)
            label.setText(name if spec is None else f"{name} \u27f3")
            label.setToolTip(_param_tip(name, self.doc.decl(self.node_id).params[name]) if spec is None else
                             f"swept over {sweep_text(spec)}: Run runs every value (right-click to change)")

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
            text += f"<br><span style='color:{theme.ERROR}'>{status.error.replace(chr(10), '<br>')}</span>"
        self.status_label.setText(text)
