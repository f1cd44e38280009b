"""The main window: canvas in the middle, palette left, inspector and outputs right.

It wires the parts together (document, undo stack, editor, scene, panels,
runner and ``RunControl``), owns the actions and their shortcuts, places new
nodes, opens and saves files. It holds no graph state of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QDockWidget, QFileDialog, QLabel, QMainWindow, QMenu, QMessageBox, QToolBar, QToolButton, QToolTip, QWidget,
)

from vdnodes.core.errors import GraphError, UserInputError
from vdnodes.core.executor import Executor, RunResult
from vdnodes.core.graph import Graph, save_graph
from vdnodes.core.registry import Registry
from vdnodes.core.types import explain_mismatch
from vdnodes.plugins import PluginReport

from vdnodes_gui.document import GraphDocument, NodeState
from vdnodes_gui.editor import Editor
from vdnodes_gui.files import open_graph
from vdnodes_gui.history import HistoryList, RunRecord
from vdnodes_gui.layout import layered_positions
from vdnodes_gui.minimap import Minimap
from vdnodes_gui.node_menu import frame_menu, link_menu, node_menu, param_menu
from vdnodes_gui.palette import Palette
from vdnodes_gui.params import Inspector
from vdnodes_gui.placement import beside, free_spot, group_spot
from vdnodes_gui.problems import ProblemsList
from vdnodes_gui.quick_add import QuickAdd
from vdnodes_gui.run import Runner
from vdnodes_gui.run_control import RunControl
from vdnodes_gui.sweep_control import SweepControl
from vdnodes_gui.view.canvas import CanvasView
from vdnodes_gui.view.node_item import WIDTH
from vdnodes_gui.view.scene import GraphScene
from vdnodes_gui.viewer import OutputViewer

GRAPH_FILTER = "vdnodes graphs (*.json *.png);;JSON graphs (*.json);;PNGs saved by vdnodes (*.png)"


def default_executor(registry: Registry, out_dir: str, device: str = "cpu") -> Executor:
    """The executor the CLI would build: same registry, model manager and manifest hooks."""
    from vdnodes.nodes.runtime import build_executor

    return build_executor(registry, device=device, out_dir=out_dir)


class MainWindow(QMainWindow):
    """One graph document in one window, with one executor (its cache lives as long as the window)."""

    def __init__(self, registry: Registry | None = None, *, executor: Executor | None = None,
                 out_dir: str = "out", device: str = "cpu", plugin_report: PluginReport | None = None) -> None:
        super().__init__()
        if registry is None:
            from vdnodes.nodes import build_registry

            registry = build_registry()
        self.registry = registry
        self.plugin_report = plugin_report  # how the registry's plugins loaded (None: not asked)
        self.plugins_box: QMessageBox | None = None
        self.doc = GraphDocument(registry)
        self.undo = QUndoStack(self)
        self.editor = Editor(self.doc, self.undo)
        self.scene = GraphScene(self.doc, self.editor)
        self.view = CanvasView(self.scene)
        self.palette = Palette(registry)
        self.inspector = Inspector(self.doc, self.editor)
        self.viewer = OutputViewer()
        self.problems = ProblemsList(self.doc)
        self.history = HistoryList()
        self.quick_add = QuickAdd(registry, self)
        self.minimap = Minimap(self.view)
        self.runner = Runner(executor if executor is not None else default_executor(registry, out_dir, device))
        self.ask_before_discard = True  # tests and scripts turn the unsaved-changes prompt off
        self.last_message = ""
        self.last_result: RunResult | None = None
        self.rename_box = None  # the open Rename dialog, if any
        self.sweep_box = None  # the open Sweep dialog, if any
        self._quick_add_at = QPointF()
        self._quick_link: tuple[str, str, bool] | None = None  # the dropped link quick-add will connect
        self._close_after_run = False
        self.run_control = RunControl(self)
        self._build_layout()
        self.sweeps = SweepControl(self)
        self._build_actions()
        self._connect()
        self.resize(1280, 800)
        self._update_title()
        self._update_run_actions()
        self._report_plugins()

    # -- construction -------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        return dock

    def _build_layout(self) -> None:
        self.setCentralWidget(self.view)
        left = self._dock("Nodes", self.palette, Qt.LeftDockWidgetArea)
        inspector = self._dock("Inspector", self.inspector, Qt.RightDockWidgetArea)
        output = self._dock("Output", self.viewer, Qt.RightDockWidgetArea)
        self.splitDockWidget(inspector, output, Qt.Vertical)
        self.problems_dock = self._dock("Problems", self.problems, Qt.RightDockWidgetArea)
        self.history_dock = self._dock("History", self.history, Qt.RightDockWidgetArea)
        self.tabifyDockWidget(output, self.problems_dock)
        self.tabifyDockWidget(self.problems_dock, self.history_dock)
        output.raise_()
        self.output_dock = output
        self.resizeDocks([left, inspector], [200, 320], Qt.Horizontal)
        self.resizeDocks([inspector, output], [440, 360], Qt.Vertical)
        self.plugin_label = QLabel("")
        self.plugin_label.setObjectName("dim")
        self.statusBar().addPermanentWidget(self.plugin_label)
        self.run_label = QLabel("")
        self.run_label.setObjectName("dim")
        self.statusBar().addPermanentWidget(self.run_label)
        self.out_label = QLabel("")
        self.out_label.setObjectName("dim")
        self.statusBar().addPermanentWidget(self.out_label)
        self.out_button = QToolButton()
        self.out_button.setText("Open output folder")
        self.out_button.clicked.connect(self.open_output_folder)
        self.statusBar().addPermanentWidget(self.out_button)
        self._show_out_dir()

    def _action(self, text: str, slot: Any, shortcuts: list[str] | QKeySequence.StandardKey | None = None,
                tip: str = "", canvas_only: bool = False) -> QAction:
        act = QAction(text, self)
        if isinstance(shortcuts, list):
            act.setShortcuts([QKeySequence(s) for s in shortcuts])
        elif shortcuts is not None:
            act.setShortcuts(shortcuts)
        if canvas_only:  # keys that text fields need for themselves (Delete, F, Ctrl+C...)
            act.setShortcutContext(Qt.WidgetWithChildrenShortcut)
            self.view.addAction(act)
        else:
            self.addAction(act)
        act.setToolTip(f"{tip or text} ({act.shortcut().toString()})" if act.shortcut() else tip or text)
        act.triggered.connect(slot)
        return act

    def _build_actions(self) -> None:
        a = self._action
        self.act_new = a("New", self.new_graph, QKeySequence.New)
        self.act_open = a("Open...", self.open_dialog, QKeySequence.Open)
        self.act_save = a("Save", self.save, ["Ctrl+S"])
        self.act_save_as = a("Save As...", self.save_as, ["Ctrl+Shift+S"])
        self.act_quit = a("Quit", self.close, QKeySequence.Quit)
        self.act_undo = self.undo.createUndoAction(self, "Undo")
        self.act_undo.setShortcuts([QKeySequence("Ctrl+Z")])
        self.act_redo = self.undo.createRedoAction(self, "Redo")
        self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.addActions([self.act_undo, self.act_redo])
        self.act_copy = a("Copy", self.copy_selection, ["Ctrl+C"], canvas_only=True)
        self.act_paste = a("Paste", self.paste, ["Ctrl+V"], canvas_only=True)
        self.act_duplicate = a("Duplicate", self.duplicate, ["Ctrl+D"], canvas_only=True)
        self.act_delete = a("Delete", self.scene.delete_selected, ["Delete", "Backspace"], canvas_only=True)
        self.act_select_all = a("Select All", self.select_all, ["Ctrl+A"], canvas_only=True)
        self.act_fit = a("Fit to View", self.view.fit, ["F"], canvas_only=True)
        self.act_frame = a("Frame Selection", self.frame_selection, ["Ctrl+G"], "Put the selected nodes in a named frame",
                           canvas_only=True)
        self.act_layout = a("Auto-layout", self.auto_layout, ["Ctrl+L"], "Lay the graph out left to right by depth")
        self.act_snap = a("Snap to Grid", self._toggle_snap, tip="Moved nodes land on the grid")
        self.act_snap.setCheckable(True)
        self.act_minimap = a("Minimap", lambda on: self.minimap.setVisible(on), tip="Show the whole graph in a corner")
        self.act_minimap.setCheckable(True)
        self.act_minimap.setChecked(True)
        self.act_quick_add = a("Add Node...", lambda: self.open_quick_add(
            self.view.cursor_scene_pos() or self.view.mapToScene(self.view.viewport().rect().center())),
            tip="Search for a node to add (Tab, or double-click the canvas)")
        self.act_out = a("Open Output Folder", self.open_output_folder)
        self.act_run = a("\u25b6  Run", lambda: self.run_graph(), ["Ctrl+Return", "Ctrl+Enter"], "Run the graph")
        self.act_cancel = a("\u25a0  Cancel", self.cancel_run, ["Ctrl+."], "Cancel the run")
        self.act_plugins = a("Plugins...", self.show_plugins, tip="Which plugins loaded, and why others did not")
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addActions([self.act_new, self.act_open, self.act_save, self.act_save_as])
        file_menu.addSeparator()
        file_menu.addAction(self.act_out)
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        edit_menu = self.menuBar().addMenu("&Edit")
        edit_menu.addActions([self.act_undo, self.act_redo])
        edit_menu.addSeparator()
        edit_menu.addActions([self.act_quick_add, self.act_copy, self.act_paste, self.act_duplicate,
                              self.act_delete, self.act_select_all])
        edit_menu.addSeparator()
        edit_menu.addActions([self.act_frame, self.act_layout])
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addActions([self.act_fit, self.act_snap, self.act_minimap])
        run_menu = self.menuBar().addMenu("&Run")
        run_menu.addActions([self.act_run, self.act_cancel])
        self.menuBar().addMenu("&Help").addAction(self.act_plugins)
        bar = QToolBar("Main")
        bar.setObjectName("main-toolbar")
        bar.setMovable(False)
        bar.addActions([self.act_open, self.act_save])
        bar.addSeparator()
        bar.addActions([self._toolbar_undo("Undo", self.undo.undo, self.undo.canUndoChanged, self.undo.undoTextChanged),
                        self._toolbar_undo("Redo", self.undo.redo, self.undo.canRedoChanged, self.undo.redoTextChanged)])
        bar.addSeparator()
        bar.addActions([self.act_run, self.act_cancel])
        bar.addSeparator()
        bar.addActions([self.act_fit, self.act_layout])
        bar.widgetForAction(self.act_run).setObjectName("run")
        bar.widgetForAction(self.act_cancel).setObjectName("cancel")
        self.addToolBar(Qt.TopToolBarArea, bar)
        self.toolbar = bar

    def _toolbar_undo(self, text: str, slot: Any, can_changed: Any, label: Any) -> QAction:
        """A short toolbar twin of the Edit menu's Undo/Redo (which carry the long labels and keys)."""
        act = QAction(text, self)
        act.setEnabled(False)
        act.triggered.connect(slot)
        can_changed.connect(act.setEnabled)
        label.connect(lambda what: act.setToolTip(f"{text} {what}".strip()))
        return act

    def _connect(self) -> None:
        self.palette.add_requested.connect(self.add_node)
        self.view.setContextMenuPolicy(Qt.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.node_dropped.connect(self._on_node_dropped)
        self.view.quick_add_requested.connect(self.open_quick_add)
        self.scene.link_dropped.connect(self._on_link_dropped)
        self.quick_add.chosen.connect(self._on_quick_add_chosen)
        self.problems.node_clicked.connect(self.show_node)
        self.problems.count_changed.connect(
            lambda n: self.problems_dock.setWindowTitle(f"Problems ({n})" if n else "Problems"))
        self.history.restore_requested.connect(self.restore_run)
        self.inspector.param_menu_requested.connect(lambda nid, name, at: param_menu(self, nid, name).popup(at))
        self.view.file_dropped.connect(lambda path: self.confirm_discard() and self.open_path(path))
        self.scene.selectionChanged.connect(self._on_selection)
        self.scene.refused_at.connect(self._show_refusal_tip)
        self.editor.refused.connect(self.show_message)
        self.undo.cleanChanged.connect(lambda _: self._update_title())
        self.doc.path_changed.connect(self._update_title)
        self.runner.finished.connect(lambda *_: self._close_after_run and QTimer.singleShot(0, self.close))
        self.runner.sweep_finished.connect(lambda *_: self._close_after_run and QTimer.singleShot(0, self.close))

    # -- messages -------------------------------------------------------------------------
    def show_message(self, text: str, timeout_ms: int = 10000) -> None:
        self.last_message = text
        self.statusBar().showMessage(text, timeout_ms)

    def _report_plugins(self) -> None:
        """Plugin outcome: a status-bar summary, a line per plugin in the log, a message on failure."""
        report = self.plugin_report
        if report is None or (not report.plugins and not report.problems and not report.safe_mode):
            return
        self.plugin_label.setText(report.summary())
        self.plugin_label.setToolTip(self.plugins_text())
        for p in report.loaded:
            self.viewer.log(f"plugin {p.name} {p.version} loaded")
        for line in report.warnings():
            self.viewer.log(f"warning: {line}")
        for line in report.output_notes():  # what plugins printed while they loaded
            self.viewer.log(line)
        if report.failed:
            names = ", ".join(p.name for p in report.failed)
            n = len(report.failed)
            self.show_message(f"{n} plugin{'s' if n != 1 else ''} could not be loaded ({names}); "
                              "see Help \u203a Plugins", 0)

    def plugins_text(self) -> str:
        """Every plugin found and what became of it, as plain text (the Plugins dialog)."""
        report = self.plugin_report
        if report is None:
            return "Plugins were not loaded in this window."
        lines = []
        for p in report.plugins:
            head = f"{p.name} {p.version}".strip()
            if p.status == "loaded":
                added = "; ".join(f"{k}: {', '.join(v)}" for k, v in p.adds.items() if v)
                lines.append(f"\u2713 {head}: loaded" + (f" ({added})" if added else ""))
            else:
                mark = "\u2717" if p.status == "failed" else "\u2013"
                lines.append(f"{mark} {head}: {p.status}: {p.reason}")
        lines += [f"! {line}" for line in report.problems]
        return "\n".join(lines) or "No plugins found (see docs/plugins.md)."

    def show_plugins(self) -> QMessageBox:
        """Help > Plugins: what loaded and what failed, with the reasons (not modal)."""
        box = QMessageBox(QMessageBox.Warning if self.plugin_report and self.plugin_report.failed
                          else QMessageBox.Information, "Plugins",
                          self.plugin_report.summary() if self.plugin_report else "Plugins", QMessageBox.Close, self)
        box.setInformativeText(self.plugins_text())
        box.setTextInteractionFlags(Qt.TextSelectableByMouse)
        box.open()
        self.plugins_box = box
        return box

    def _show_refusal_tip(self, why: str, scene_pos: QPointF) -> None:
        where = self.view.viewport().mapToGlobal(self.view.mapFromScene(scene_pos))
        QToolTip.showText(where, why, self.view)

    def _update_title(self) -> None:
        name = self.doc.path.name if self.doc.path else self.doc.graph.meta.get("name", "untitled")
        self.setWindowTitle(f"{name}{'' if self.undo.isClean() else ' *'} \u2014 vdnodes")

    # -- editing ----------------------------------------------------------------------------
    def _rects(self, exclude: set[str] = frozenset()) -> list[tuple[float, float, float, float]]:
        return [(*self.doc.pos(n), WIDTH, item.height()) for n, item in self.scene.nodes.items() if n not in exclude]

    def placement(self, height: float = 120.0) -> tuple[float, float]:
        """Where a new node goes: at the cursor when it is on the canvas, else right of the selection,
        else the middle of the view; moved down until it overlaps no card."""
        cursor = self.view.cursor_scene_pos()
        selected = [n for n in self.scene.selected_node_ids()]
        if cursor is not None:
            x, y = cursor.x() - WIDTH / 2, cursor.y() - 20
        elif selected:
            x, y = beside([(*self.doc.pos(n), WIDTH, self.scene.nodes[n].height()) for n in selected])
        else:
            centre = self.view.mapToScene(self.view.viewport().rect().center())
            x, y = centre.x() - WIDTH / 2, centre.y() - 60
        return free_spot((*self.scene.snapped(x, y), WIDTH, height), self._rects())

    def add_node(self, node_type: str, at: tuple[float, float] | None = None) -> str:
        """Add a node (at ``at``, else where ``placement`` says), not on top of another; select it."""
        if at is None:
            at = self.placement()
        else:
            at = free_spot((*self.scene.snapped(*at), WIDTH, 120.0), self._rects())
        nid = self.editor.add_node(node_type, at)
        self.scene.select_nodes([nid])
        return nid

    def _context_menu(self, where: QPoint) -> None:
        """Right-click: a param's menu on its row, the node's menu on a card, else 'add node' menus."""
        pos = self.view.mapToScene(where)
        node = self.scene.node_at(pos)
        if node is not None:
            name = self.scene.nodes[node].param_at(pos)
            if name is not None and name in self.doc.decl(node).params:
                menu = param_menu(self, node, name)
            else:
                if node not in self.scene.selected_node_ids():
                    self.scene.select_nodes([node])
                menu = node_menu(self, node)
        elif self.scene.link_at(pos) is not None:
            menu = link_menu(self, self.scene.link_at(pos).key, pos)
        elif self.scene.frame_at(pos, bar_only=False) is not None:
            menu = frame_menu(self, self.scene.frame_at(pos, bar_only=False).index)
        else:
            menu = QMenu(self)
            menu.addAction("Search nodes... (Tab)", lambda: self.open_quick_add(pos))
            for category, decls in self.registry.by_category().items():
                sub = menu.addMenu(category.capitalize())
                for decl in decls:
                    act = sub.addAction(decl.display_name)
                    act.setToolTip(decl.doc)
                    act.triggered.connect(lambda _=False, t=decl.id: self._on_node_dropped(t, pos))
            menu.addSeparator()
            menu.addActions([self.act_paste, self.act_fit, self.act_layout])
        self.last_menu = menu
        menu.popup(self.view.viewport().mapToGlobal(where))

    def _on_node_dropped(self, node_type: str, pos: QPointF) -> None:
        self.add_node(node_type, (pos.x() - WIDTH / 2, pos.y() - 20))

    # -- quick-add ------------------------------------------------------------------------------
    def open_quick_add(self, scene_pos: QPointF) -> None:
        """The search pop-up, adding at ``scene_pos``."""
        self._quick_add_at, self._quick_link = QPointF(scene_pos), None
        self.quick_add.open_at(self._global(scene_pos))

    def _global(self, scene_pos: QPointF) -> QPoint:
        return self.view.viewport().mapToGlobal(self.view.mapFromScene(scene_pos))

    def _on_link_dropped(self, nid: str, socket: str, is_input: bool, pos: QPointF) -> None:
        """A link dropped on empty space: offer only node types with a socket that fits it."""
        if is_input:
            want = self.doc.decl(nid).inputs[socket].socket_type
            accept = lambda d: any(explain_mismatch(o.socket_type, want) is None for o in d.outputs.values())  # noqa: E731
        else:
            have = self.doc.output_type(nid, socket)
            accept = lambda d: any(explain_mismatch(have, i.socket_type) is None for i in d.inputs.values())  # noqa: E731
        self._quick_add_at, self._quick_link = QPointF(pos), (nid, socket, is_input)
        self.quick_add.open_at(self._global(pos), accept, f"Connect {nid}.{socket} to a new node")

    def _on_quick_add_chosen(self, node_type: str) -> None:
        pos, link, self._quick_link = self._quick_add_at, self._quick_link, None
        x = pos.x() - (WIDTH if link and link[2] else 0) - (0 if link else WIDTH / 2)
        if link is None:
            self.add_node(node_type, (x, pos.y() - 20))
            return
        self.undo.beginMacro(f"Add {self.registry.get(node_type).display_name} and connect it")
        new = self.add_node(node_type, (x, pos.y() - 20))
        nid, socket, is_input = link
        decl = self.registry.get(node_type)
        names = decl.outputs if is_input else decl.inputs
        for name in names:  # the first socket of the new node that links
            problem = self.doc.link_problem(new, name, nid, socket) if is_input else \
                self.doc.link_problem(nid, socket, new, name)
            if problem is None:
                if is_input:
                    self.editor.connect(new, name, nid, socket)
                else:
                    self.editor.connect(nid, socket, new, name)
                break
        self.undo.endMacro()

    def show_node(self, nid: str) -> None:
        """Select a node and bring it into view (a click in the problems list)."""
        self.scene.select_nodes([nid])
        self.view.centerOn(self.scene.nodes[nid].sceneBoundingRect().center())

    def show_problems(self) -> None:
        self.problems_dock.raise_()

    # -- layout -------------------------------------------------------------------------------------
    def auto_layout(self) -> None:
        """Lay the graph out left to right by depth (one undo step) and show it."""
        heights = {nid: item.height() for nid, item in self.scene.nodes.items()}
        self.editor.layout({n: (float(x), float(y)) for n, (x, y) in
                            layered_positions(self.doc.graph, heights).items()})
        self.view.open_view()

    def frame_selection(self) -> int:
        """A frame around the selected nodes; returns its index (-1: nothing selected)."""
        nids = self.scene.selected_node_ids()
        rects = {n: (*self.doc.pos(n), WIDTH, self.scene.nodes[n].height()) for n in nids}
        return self.editor.frame_nodes(nids, rects)

    def _toggle_snap(self, on: bool) -> None:
        self.scene.snap = bool(on)
    def _on_selection(self) -> None:
        ids = self.scene.selected_node_ids()
        self.inspector.set_node(ids[0] if len(ids) == 1 else None)

    def copy_selection(self) -> None:
        n = self.editor.copy_to_clipboard(self.scene.selected_node_ids())
        if n:
            self.show_message(f"Copied {n} node{'s' if n != 1 else ''}")

    def _group_offset(self, data: dict) -> tuple[float, float]:
        """Pasted nodes go to the cursor, or right of the selection, overlapping no card."""
        group = [(*raw.get("pos", (0, 0)), WIDTH, 120.0) for raw in data.get("nodes", {}).values()]
        if not group:
            return 0.0, 0.0
        cursor = self.view.cursor_scene_pos()
        selected = self.scene.selected_node_ids()
        if cursor is not None:
            anchor = (cursor.x() - WIDTH / 2, cursor.y() - 20)
        elif selected:
            anchor = beside([(*self.doc.pos(n), WIDTH, self.scene.nodes[n].height()) for n in selected])
        else:
            centre = self.view.mapToScene(self.view.viewport().rect().center())
            anchor = (centre.x() - WIDTH / 2, centre.y() - 60)
        return group_spot(group, self.scene.snapped(*anchor), self._rects())

    def paste(self) -> list[str]:
        data = self.editor.clipboard_data()
        nids = self.editor.paste_nodes(data, self._group_offset(data)) if data else []
        if nids:
            self.scene.select_nodes(nids)
        return nids

    def duplicate(self) -> list[str]:
        data = self.editor.copy_nodes(self.scene.selected_node_ids())
        nids = self.editor.paste_nodes(data, self._group_offset(data))
        self.scene.select_nodes(nids)
        return nids

    def select_all(self) -> None:
        self.scene.select_nodes(list(self.doc.graph.nodes))

    # -- files --------------------------------------------------------------------------------
    def confirm_discard(self) -> bool:
        """Ask before dropping unsaved edits; True when it is fine to go on."""
        if self.undo.isClean() or not self.ask_before_discard:
            return True
        answer = QMessageBox.question(
            self, "Unsaved changes", "Save the changes to this graph first?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save)
        if answer == QMessageBox.Save:
            return self.save()
        return answer == QMessageBox.Discard

    def new_graph(self) -> None:
        if self.confirm_discard():
            self._set_graph(Graph(), None)

    def open_dialog(self) -> None:
        if not self.confirm_discard():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open graph", str(self._folder()), GRAPH_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path) -> bool:
        """Open a graph file or a PNG saved by vdnodes; problems go to the status bar and log."""
        path = Path(path)
        try:
            graph, problems = open_graph(path, self.registry)
        except (GraphError, UserInputError) as e:
            self.show_message(str(e).splitlines()[0])
            self.viewer.log(str(e))
            return False
        # A PNG is a source, not a save target: Save asks for a .json name.
        self._set_graph(graph, path if path.suffix.lower() == ".json" else None)
        self.run_control.mark_problems(problems, state=NodeState.IDLE)
        extra = f", {len(problems)} to fix before it runs" if problems else ""
        self.show_message(f"Opened {path.name} ({len(graph.nodes)} nodes{extra})")
        return True

    def _set_graph(self, graph: Graph, path: Path | None) -> None:
        self.doc.replace(graph, path)
        self.undo.clear()
        self.undo.setClean()
        self.viewer.clear()
        self._update_title()
        self.view.open_view()
        QTimer.singleShot(0, self.view.open_view)  # again once the window has its final size

    def _folder(self) -> Path:
        return self.doc.path.parent if self.doc.path else Path.cwd()

    def save(self) -> bool:
        if self.doc.path is None:
            return self.save_as()
        return self.save_to(self.doc.path)

    def save_as(self) -> bool:
        suggested = self._folder() / f"{self.doc.graph.meta.get('name', 'graph').replace(' ', '_')}.json"
        path, _ = QFileDialog.getSaveFileName(self, "Save graph", str(self.doc.path or suggested),
                                              "JSON graphs (*.json)")
        return self.save_to(path) if path else False

    def save_to(self, path: str | Path) -> bool:
        path = Path(path)
        if path.suffix.lower() != ".json":
            path = path.with_suffix(".json")
        try:
            save_graph(self.doc.graph, path)
        except OSError as e:
            self.show_message(f"cannot save {path}: {e}")
            return False
        self.doc.set_path(path)
        self.undo.setClean()
        self.show_message(f"Saved {path}")
        return True

    # -- running ----------------------------------------------------------------------------------
    def update_run_actions(self) -> None:
        running = self.runner.is_running()
        self.act_run.setEnabled(not running)
        self.act_cancel.setEnabled(running)

    _update_run_actions = update_run_actions

    def run_graph(self, targets: list[str] | None = None) -> bool:
        """Validate, then run in the worker thread (``targets``: run up to those nodes only)."""
        return self.run_control.run(targets)

    def cancel_run(self) -> None:
        self.run_control.cancel()

    def restore_run(self, record: RunRecord) -> None:
        """Put back the graph a history entry ran (one undo step) and show its outputs."""
        self.editor.restore_graph(record.graph, f"Restore the run of {record.label().split()[0]}")
        self.run_control.states.mark_cached()
        self.viewer.clear()
        self.viewer.set_images(record.images)
        self.viewer.set_texts(record.texts)
        self.show_message(f"Restored the graph of the run at {record.label().split()[0]}")

    # -- output folder ------------------------------------------------------------------------------
    def output_folder(self) -> Path:
        return Path(self.runner.executor.out_dir).resolve()

    def _show_out_dir(self) -> None:
        folder = str(self.output_folder())
        shown = folder if len(folder) <= 48 else "\u2026" + folder[-47:]
        self.out_label.setText(f"output: {shown}")
        self.out_label.setToolTip(f"{folder}\nWhere Save image and Save text write their files")

    def open_output_folder(self) -> QUrl:
        """Show the output folder in the file manager (made first if no run wrote it yet)."""
        folder = self.output_folder()
        folder.mkdir(parents=True, exist_ok=True)
        url = QUrl.fromLocalFile(str(folder))
        if not QDesktopServices.openUrl(url):
            self.show_message(f"could not open {folder}")
        return url

    # -- closing -------------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        if not self._close_after_run and not self.confirm_discard():
            event.ignore()
            return
        if self.runner.is_running():
            # The worker may be importing torch (seconds, not interruptible): hide now, close
            # for good when it has stopped, so the window never hangs on screen.
            self.runner.cancel()
            self._close_after_run = True
            self.hide()
            event.ignore()
            return
        # Destroying the window clears the undo stack and the scene; nothing may react any more.
        self.undo.blockSignals(True)
        self.scene.blockSignals(True)
        event.accept()
