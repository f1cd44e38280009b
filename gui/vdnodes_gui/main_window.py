"""The main window: canvas in the middle, palette left, inspector and outputs right.

It wires the parts together (document, undo stack, editor, scene, panels,
runner), owns the actions and their shortcuts, opens and saves files, and
turns run events into node status. It holds no graph state of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QPoint, QPointF, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QDockWidget, QFileDialog, QLabel, QMainWindow, QMenu, QMessageBox, QToolBar, QToolTip, QWidget,
)

from vdnodes.core import events as ev
from vdnodes.core.errors import GraphError, NodeError, UserInputError, VDNodesError
from vdnodes.core.executor import Executor, RunResult
from vdnodes.core.graph import Graph, save_graph, validate
from vdnodes.core.registry import Registry
from vdnodes.plugins import PluginReport

from vdnodes_gui.document import GraphDocument, NodeState
from vdnodes_gui.editor import Editor
from vdnodes_gui.files import open_graph
from vdnodes_gui.palette import Palette
from vdnodes_gui.params import Inspector
from vdnodes_gui.run import RunOutputs, Runner
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
        self.runner = Runner(executor if executor is not None else default_executor(registry, out_dir, device))
        self.ask_before_discard = True  # tests and scripts turn the unsaved-changes prompt off
        self.last_message = ""
        self.last_result: RunResult | None = None
        self._edited_during_run: set[str] = set()  # their results are stale the moment they arrive
        self._build_layout()
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
        self.resizeDocks([left, inspector], [200, 320], Qt.Horizontal)
        self.resizeDocks([inspector, output], [440, 360], Qt.Vertical)
        self.plugin_label = QLabel("")
        self.plugin_label.setObjectName("dim")
        self.statusBar().addPermanentWidget(self.plugin_label)
        self.run_label = QLabel("")
        self.run_label.setObjectName("dim")
        self.statusBar().addPermanentWidget(self.run_label)

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
        self.act_run = a("\u25b6  Run", self.run_graph, ["Ctrl+Return", "Ctrl+Enter"], "Run the graph")
        self.act_cancel = a("\u25a0  Cancel", self.cancel_run, ["Ctrl+."], "Cancel the run")
        self.act_plugins = a("Plugins...", self.show_plugins, tip="Which plugins loaded, and why others did not")
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addActions([self.act_new, self.act_open, self.act_save, self.act_save_as])
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        edit_menu = self.menuBar().addMenu("&Edit")
        edit_menu.addActions([self.act_undo, self.act_redo])
        edit_menu.addSeparator()
        edit_menu.addActions([self.act_copy, self.act_paste, self.act_duplicate, self.act_delete,
                              self.act_select_all])
        view_menu = self.menuBar().addMenu("&View")
        view_menu.addAction(self.act_fit)
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
        bar.addAction(self.act_fit)
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
        self.view.file_dropped.connect(lambda path: self.confirm_discard() and self.open_path(path))
        self.scene.selectionChanged.connect(self._on_selection)
        self.scene.refused_at.connect(self._show_refusal_tip)
        self.editor.refused.connect(self.show_message)
        self.undo.cleanChanged.connect(lambda _: self._update_title())
        self.doc.path_changed.connect(self._update_title)
        self.doc.param_changed.connect(lambda nid, _: self._note_edit(nid))
        self.doc.link_changed.connect(lambda nid, _: self._note_edit(nid))
        self.runner.event.connect(self._on_run_event)
        self.runner.finished.connect(self._on_run_finished)

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
    def add_node(self, node_type: str) -> str:
        """Add a node near the middle of the visible canvas, not on top of another; select it."""
        centre = self.view.mapToScene(self.view.viewport().rect().center())
        x, y = centre.x() - WIDTH / 2, centre.y() - 60
        taken = {self.doc.pos(n) for n in self.doc.graph.nodes}
        while (round(x), round(y)) in taken:
            x, y = x + 30, y + 30
        nid = self.editor.add_node(node_type, (x, y))
        self.scene.select_nodes([nid])
        return nid

    def _context_menu(self, where: QPoint) -> None:
        """Right-click: actions on the node under the cursor, or 'add node' menus by category."""
        pos = self.view.mapToScene(where)
        menu = QMenu(self)
        node = self.scene.node_at(pos)
        if node is not None:
            if node not in self.scene.selected_node_ids():
                self.scene.select_nodes([node])
            menu.addActions([self.act_copy, self.act_duplicate, self.act_delete])
        else:
            for category, decls in self.registry.by_category().items():
                sub = menu.addMenu(category.capitalize())
                for decl in decls:
                    act = sub.addAction(decl.display_name)
                    act.setToolTip(decl.doc)
                    act.triggered.connect(lambda _=False, t=decl.id: self._on_node_dropped(t, pos))
            menu.addSeparator()
            menu.addActions([self.act_paste, self.act_fit])
        menu.popup(self.view.viewport().mapToGlobal(where))

    def _on_node_dropped(self, node_type: str, pos: QPointF) -> None:
        nid = self.editor.add_node(node_type, (pos.x() - WIDTH / 2, pos.y() - 20))
        self.scene.select_nodes([nid])

    def _on_selection(self) -> None:
        ids = self.scene.selected_node_ids()
        self.inspector.set_node(ids[0] if len(ids) == 1 else None)

    def copy_selection(self) -> None:
        n = self.editor.copy_to_clipboard(self.scene.selected_node_ids())
        if n:
            self.show_message(f"Copied {n} node{'s' if n != 1 else ''}")

    def paste(self) -> list[str]:
        nids = self.editor.paste_from_clipboard()
        if nids:
            self.scene.select_nodes(nids)
        return nids

    def duplicate(self) -> list[str]:
        nids = self.editor.paste_nodes(self.editor.copy_nodes(self.scene.selected_node_ids()))
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
        self._mark_problems(problems, state=NodeState.IDLE)
        extra = f", {len(problems)} to fix before it runs" if problems else ""
        self.show_message(f"Opened {path.name} ({len(graph.nodes)} nodes{extra})")
        return True

    def _set_graph(self, graph: Graph, path: Path | None) -> None:
        self.doc.replace(graph, path)
        self.undo.clear()
        self.undo.setClean()
        self.viewer.set_images([])
        self.viewer.set_texts([])
        self._update_title()
        QTimer.singleShot(0, self.view.fit)

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
    def _update_run_actions(self) -> None:
        running = self.runner.is_running()
        self.act_run.setEnabled(not running)
        self.act_cancel.setEnabled(running)

    def run_graph(self) -> bool:
        """Validate, then run in the worker thread; False when the graph cannot run."""
        if self.runner.is_running():
            return False
        for nid, status in self.doc.status.items():
            if status.state is NodeState.FAILED or status.error:
                self.doc.set_status(nid, state=NodeState.IDLE if status.state is NodeState.FAILED
                                    else status.state, error="")
        problems = validate(self.doc.graph, self.registry)
        if not self.doc.graph.nodes:
            self.show_message("Nothing to run: add nodes from the palette first")
            return False
        if problems:
            self._mark_problems(problems)
            self.show_message(f"Cannot run: {len(problems)} problem{'s' if len(problems) != 1 else ''} "
                              f"({problems[0]})")
            return False
        self._edited_during_run = set()
        self.runner.start(self.doc.graph)
        self._update_run_actions()
        self.run_label.setText("running...")
        self.viewer.log(f"run started ({len(self.doc.graph.nodes)} nodes)")
        return True

    def cancel_run(self) -> None:
        if self.runner.is_running():
            self.runner.cancel()
            self.run_label.setText("cancelling...")

    def _note_edit(self, nid: str) -> None:
        if self.runner.is_running() and nid in self.doc.graph.nodes:
            self._edited_during_run |= {nid} | self.doc.descendants(nid)

    def _mark_problems(self, problems: list, state: NodeState = NodeState.FAILED) -> None:
        """Show graph problems on their nodes (and in the log)."""
        for p in problems:
            self.viewer.log(str(p))
            if p.where in self.doc.graph.nodes:
                old = self.doc.status[p.where].error
                self.doc.set_status(p.where, state=state, error=f"{old}; {p.message}" if old else p.message)

    def _on_run_event(self, e: ev.Event) -> None:
        doc = self.doc
        if isinstance(e, ev.RunStarted):
            for nid in e.planned:
                doc.set_status(nid, state=NodeState.QUEUED, progress=0.0, error="", message="")
        elif isinstance(e, ev.NodeStarted):
            doc.set_status(e.node_id, state=NodeState.RUNNING, progress=0.0)
        elif isinstance(e, ev.NodeProgress):
            changes: dict[str, Any] = {"progress": e.fraction, "message": e.message}
            if e.preview is not None:
                changes["preview"] = e.preview
                self.viewer.show_preview(e.node_id, e.preview, e.message)
            doc.set_status(e.node_id, **changes)
        elif isinstance(e, ev.NodeCached):
            doc.set_status(e.node_id, state=self._settled(e.node_id, NodeState.CACHED), progress=1.0)
        elif isinstance(e, ev.NodeFinished):
            doc.set_status(e.node_id, state=self._settled(e.node_id, NodeState.DONE), progress=1.0,
                           seconds=e.seconds)
        elif isinstance(e, ev.NodeFailed):
            doc.set_status(e.node_id, state=NodeState.FAILED, error=e.message)
            self.viewer.log(f"{e.node_id} failed: {e.message}")
        elif isinstance(e, ev.NodeWarning):
            doc.set_status(e.node_id, message=e.message)
            self.viewer.log(f"{e.node_id}: warning: {e.message}")
        elif isinstance(e, ev.RunFinished):
            for nid, status in doc.status.items():
                if status.state in (NodeState.QUEUED, NodeState.RUNNING):
                    doc.set_status(nid, state=NodeState.IDLE, progress=0.0,
                                   message="cancelled" if e.status == "cancelled" else "")

    def _settled(self, nid: str, state: NodeState) -> NodeState:
        """A result computed from a graph the user has edited since the run began is stale."""
        return NodeState.STALE if nid in self._edited_during_run else state

    def _on_run_finished(self, result: RunResult | None, outputs: Any) -> None:
        self.last_result = result
        self._update_run_actions()
        if result is None:
            self.run_label.setText("run crashed")
            self.show_message(f"internal error: {type(outputs).__name__}: {outputs}")
            self.viewer.log(f"internal error: {outputs!r}")
            return
        summary = f"{result.status} in {result.seconds:.1f} s \u00b7 {len(result.executed)} ran, " \
                  f"{len(result.cached)} cached"
        self.run_label.setText(summary)
        self.viewer.log(f"run {summary}")
        if isinstance(result.error, GraphError):
            self._mark_problems(result.error.problems)
        if isinstance(result.error, (NodeError, GraphError, VDNodesError)) and result.status != "cancelled":
            self.show_message(str(result.error).splitlines()[0])
        elif result.status == "cancelled":
            self.show_message("Run cancelled")
        else:
            self.show_message("")
        if isinstance(outputs, RunOutputs):
            for nid, image in outputs.previews.items():
                self.doc.set_status(nid, preview=image)
            if outputs.images:
                self.viewer.set_images(outputs.images)
            if outputs.texts:
                self.viewer.set_texts(outputs.texts)

    # -- closing -------------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        if not self.confirm_discard():
            event.ignore()
            return
        if self.runner.is_running():
            self.runner.cancel()
            self.runner.wait()
        # Destroying the window clears the undo stack and the scene; nothing may react any more.
        self.undo.blockSignals(True)
        self.scene.blockSignals(True)
        event.accept()
