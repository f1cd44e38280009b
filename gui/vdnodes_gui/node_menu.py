"""Context menus of a node card and of one param.

The node menu: rename, collapse, colour, bypass, run up to here, copy,
duplicate, delete. The link menu adds or removes reroute points; the frame
menu renames, colours or deletes a frame. The param menu (a right-click on a param's row on the card, or on
its label in the inspector): edit on the card, reset to default, plus what
``PARAM_MENU_HOOKS`` add (one function per feature: ``sweep_entries`` sets a sweep).
Layout-only changes (title, colour, collapsed) go to the graph's ``ui``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QInputDialog, QMenu

from vdnodes_gui import theme
from vdnodes_gui.document import sweep_text

if TYPE_CHECKING:
    from vdnodes_gui.main_window import MainWindow

# Features add entries to the param menu here: fn(menu, window, node id, param name).
PARAM_MENU_HOOKS: list[Callable[[QMenu, "MainWindow", str, str], None]] = []


def _swatch(color: str) -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(QColor(color))
    return QIcon(pix)


def node_menu(win: "MainWindow", nid: str) -> QMenu:
    """The menu for node ``nid`` (the selection's copy/duplicate/delete included)."""
    doc, editor = win.doc, win.editor
    menu = QMenu(win)
    menu.addAction("Rename...", lambda: rename_dialog(win, nid))
    collapsed = bool(doc.graph.ui.get(nid, {}).get("collapsed"))
    menu.addAction("Expand" if collapsed else "Collapse",
                   lambda: editor.set_ui(nid, "collapsed", None if collapsed else True,
                                         f"{'Expand' if collapsed else 'Collapse'} {nid}"))
    colours = menu.addMenu("Colour")
    colours.addAction(_swatch(theme.category_color(doc.decl(nid).category).name()), "Category colour",
                      lambda: editor.set_ui(nid, "color", None, f"Colour of {nid}: category"))
    for name, value in theme.NODE_COLORS.items():
        colours.addAction(_swatch(value), name.capitalize(),
                          lambda v=value, n=name: editor.set_ui(nid, "color", v, f"Colour of {nid}: {n}"))
    bypass = menu.addAction("Bypass")
    bypass.setCheckable(True)
    bypass.setChecked(doc.graph.nodes[nid].bypass)
    bypass.triggered.connect(lambda on: editor.set_bypass(nid, bool(on)))
    bypass.setToolTip("Do not run it: each output passes a linked input of a fitting type through")
    menu.addSeparator()
    run = menu.addAction("Run up to here", lambda: win.run_graph(targets=[nid]))
    run.setEnabled(not win.runner.is_running())
    menu.addSeparator()
    menu.addActions([win.act_copy, win.act_duplicate, win.act_delete])
    return menu


def rename_dialog(win: "MainWindow", nid: str) -> QInputDialog:
    """Ask for a node's new title (not modal; empty goes back to the type's name)."""
    dialog = QInputDialog(win)
    dialog.setWindowTitle("Rename node")
    dialog.setLabelText(f"Title of {nid} (empty: {win.doc.decl(nid).display_name})")
    dialog.setTextValue(win.doc.title(nid))
    dialog.textValueSelected.connect(lambda text: nid in win.doc.graph.nodes and win.editor.rename(nid, text))
    dialog.open()
    win.rename_box = dialog
    return dialog


def param_menu(win: "MainWindow", nid: str, name: str) -> QMenu:
    """The menu for param ``name`` of node ``nid``."""
    doc, editor = win.doc, win.editor
    menu = QMenu(win)
    menu.setTitle(f"{nid}.{name}")
    menu.addAction("Edit on the card", lambda: win.scene.edit_param_inline(nid, name))
    default = doc.decl(nid).params[name].default
    reset = menu.addAction(f"Reset to default ({default!r})", lambda: editor.set_param(nid, name, default))
    reset.setEnabled(doc.graph.nodes[nid].params.get(name) != default)
    if name in doc.param_sockets(nid):
        menu.addAction("Back to a value on the node", lambda: editor.param_socket(nid, name, False))
    else:
        socket = menu.addAction("Make it an input socket", lambda: editor.param_socket(nid, name, True))
        socket.setToolTip("Another node (e.g. an Integer or Number) can then drive this param")
    for hook in PARAM_MENU_HOOKS:
        hook(menu, win, nid, name)
    return menu


def sweep_entries(menu: QMenu, win: "MainWindow", nid: str, name: str) -> None:
    """"Sweep..." (values in the CLI's syntax; Run then runs every item) and "Clear sweep"."""
    spec = win.doc.sweep_of(nid, name)
    menu.addSeparator()
    menu.addAction("Sweep..." if spec is None else f"Sweep: {sweep_text(spec)}...",
                   lambda: sweep_dialog(win, nid, name))
    if spec is not None:
        menu.addAction("Clear sweep", lambda: win.editor.set_sweep(nid, name, None))


PARAM_MENU_HOOKS.append(sweep_entries)


def sweep_dialog(win: "MainWindow", nid: str, name: str, problem: str = "", text: str | None = None) -> QInputDialog:
    """Ask for the values of ``nid.name``'s sweep (not modal); a refused spec reopens it with the reason."""
    p = win.doc.decl(nid).params[name]
    spec = win.doc.sweep_of(nid, name)
    dialog = QInputDialog(win)
    dialog.setWindowTitle(f"Sweep {nid}.{name}")
    label = (f"Values of {nid}.{name} ({p.type}), one run each:\n"
             "a,b,c   |   start:stop:step   |   @values.txt   |   @'photos/*.png'")
    dialog.setLabelText(f"{label}\n\n{problem}" if problem else label)
    dialog.setTextValue(text if text is not None else sweep_text(spec) if spec is not None else "")

    def chosen(text: str) -> None:
        if nid in win.doc.graph.nodes:
            why = win.editor.set_sweep(nid, name, text)
            if why:
                sweep_dialog(win, nid, name, why, text)
    dialog.textValueSelected.connect(chosen)
    dialog.open()
    win.sweep_box = dialog
    return dialog


def link_menu(win: "MainWindow", key: tuple[str, str], pos) -> QMenu:
    """The menu for the link into ``key`` = (consumer, input), opened at scene position ``pos``."""
    menu = QMenu(win)
    menu.addAction("Add reroute point here", lambda: win.scene.add_reroute(key, pos))
    remove = menu.addAction("Remove reroute points", lambda: win.editor.set_reroutes(*key, []))
    remove.setEnabled(bool(win.doc.graph.ui.get(key[0], {}).get("reroutes", {}).get(key[1])))
    menu.addAction("Delete link", lambda: win.editor.disconnect(*key))
    return menu


def frame_menu(win: "MainWindow", index: int) -> QMenu:
    """The menu for frame ``index``: rename, colour, delete (its nodes stay)."""
    menu = QMenu(win)
    menu.addAction("Rename frame...", lambda: rename_frame_dialog(win, index))
    colours = menu.addMenu("Colour")
    colours.addAction("Default", lambda: win.editor.edit_frame(index, "Frame colour", color=None))
    for name, value in theme.NODE_COLORS.items():
        colours.addAction(_swatch(value), name.capitalize(),
                          lambda v=value: win.editor.edit_frame(index, "Frame colour", color=v))
    menu.addAction("Delete frame (keep its nodes)", lambda: win.editor.edit_frame(index, "Delete frame", remove=True))
    return menu


def rename_frame_dialog(win: "MainWindow", index: int) -> QInputDialog:
    dialog = QInputDialog(win)
    dialog.setWindowTitle("Rename frame")
    dialog.setLabelText("Frame title")
    dialog.setTextValue(win.doc.frames()[index].get("title", "Frame"))
    dialog.textValueSelected.connect(lambda text: win.editor.edit_frame(index, "Rename frame", title=text.strip()))
    dialog.open()
    win.rename_box = dialog
    return dialog
