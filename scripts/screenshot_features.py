"""The feature shots of scripts/screenshots.py: quick-add, link-drop, node menu, frames, reroutes,
a param driven by another node, bypass, a param edited on its card, the problems list, the run
history, a 3 x 3 sweep and its contact sheet. Pop-ups are their own windows, so a shot is the
whole screen (run under Xvfb with a 1280x800 screen); the window sits at its top-left corner."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEventLoop, QPoint, QPointF

from screenshots import ROOT, open_window, run, settle, shoot
from vdnodes_gui.node_menu import node_menu


def screen_shot(app, path: Path) -> None:
    """The whole screen, pop-ups included (what ``import -window root`` takes)."""
    settle(app, 250)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not app.primaryScreen().grabWindow(0).save(str(path)):
        raise SystemExit(f"screenshots: cannot write {path}")


def shoot_features(app, out: Path, tmp: str, steps: int | None) -> list[str]:
    graphs = ROOT / "graphs"
    made = []

    # Quick-add: double-click on empty canvas, type.
    win = open_window(app, graphs / "hello.json", tmp, steps)
    win.move(0, 0)
    spot = win.view.mapToScene(win.view.viewport().rect().center() + QPoint(0, 220))
    win.open_quick_add(spot)
    win.quick_add.search.setText("res")
    screen_shot(app, out / "canvas_feature_quick_add.png")
    win.quick_add.hide()
    made.append("canvas_feature_quick_add.png")

    # Node menu on a renamed, coloured node; another collapsed.
    win.editor.rename("bigger", "Upscale to 256")
    win.editor.set_ui("bigger", "color", "#2b5f8a", "colour")
    win.editor.set_ui("palette", "collapsed", True, "collapse")
    settle(app)
    item = win.scene.nodes["bigger"]
    where = win.view.mapFromScene(item.sceneBoundingRect().center())
    menu = node_menu(win, "bigger")
    menu.popup(win.view.viewport().mapToGlobal(where))
    screen_shot(app, out / "canvas_feature_node_menu.png")
    menu.hide()
    made.append("canvas_feature_node_menu.png")

    # A frame, a reroute point, a param driven by an Integer node, a bypassed node.
    win.scene.select_nodes(["scene", "palette"])
    index = win.frame_selection()
    win.editor.edit_frame(index, "Rename frame", title="Inputs")
    key = ("recolor", "reference")
    link = win.scene.links[key]
    win.scene.add_reroute(key, link.path().pointAtPercent(0.5) + QPointF(0, -60))
    win.editor.param_socket("bigger", "width", True)
    size = win.add_node("value.int", (win.doc.pos("bigger")[0] - 40, win.doc.pos("bigger")[1] + 300))
    win.editor.set_param(size, "value", 128)
    win.editor.connect(size, "value", "bigger", "width")
    win.editor.set_bypass("recolor", True)
    win.scene.clearSelection()
    settle(app)
    shoot(win, out / "canvas_feature_layout.png")
    made.append("canvas_feature_layout.png")
    win.editor.set_bypass("recolor", False)

    # A param edited on its card, then two runs and the history.
    win.scene.clearSelection()
    win.scene.edit_param_inline("recolor", "strength")
    settle(app)
    shoot(win, out / "canvas_feature_param_on_card.png")
    win.scene.close_inline()
    made.append("canvas_feature_param_on_card.png")
    run(app, win)
    win.editor.set_param("recolor", "strength", 0.4)
    run(app, win)
    win.history_dock.raise_()
    settle(app)
    shoot(win, out / "canvas_feature_history.png")
    made.append("canvas_feature_history.png")
    win.close()

    # A link dropped on empty space offers only fitting nodes.
    win = open_window(app, graphs / "text_to_image.json", tmp, steps)
    win.move(0, 0)
    model = next(n for n, s in win.doc.graph.nodes.items() if s.type == "vd.load_model")
    sock = win.scene.socket(model, "model", False)
    drop = sock.scenePos() + QPointF(120, 260)
    win.scene.begin_link(sock)
    win.scene.drag_link_to(drop)
    win.scene.end_link(drop)
    screen_shot(app, out / "canvas_feature_link_drop.png")
    win.quick_add.hide()
    made.append("canvas_feature_link_drop.png")

    # Problems stay listed (and on their nodes) until fixed.
    enc = next(n for n, s in win.doc.graph.nodes.items() if s.type == "vd.encode_text")
    win.editor.disconnect(enc, "model")
    win.editor.disconnect(enc, "text")
    win.run_graph()
    win.scene.select_nodes([enc])
    win.show_node(enc)
    settle(app)
    shoot(win, out / "canvas_feature_problems.png")
    made.append("canvas_feature_problems.png")
    win.close()
    made.append(shoot_sweep(app, out, tmp, steps))
    return made


def shoot_sweep(app, out: Path, tmp: str, steps: int | None) -> str:
    """dual_guided.json swept over mix x seed (3 x 3): the swept params on the card, the items
    progress bar, the contact sheet in the viewer (a window grab: works offscreen too)."""
    win = open_window(app, ROOT / "graphs" / "dual_guided.json", tmp, steps)
    win.move(0, 0)
    win.editor.set_sweep("sample", "mix", "0,0.5,1")
    win.editor.set_sweep("sample", "seed", "1:3")
    loop = QEventLoop()
    win.runner.sweep_finished.connect(lambda *_: loop.quit())
    if not win.run_graph():
        raise SystemExit(f"screenshots: the sweep did not start: {win.last_message}")
    loop.exec()
    win.scene.select_nodes(["sample"])
    win.show_node("sample")
    win.output_dock.raise_()
    settle(app)
    shoot(win, out / "canvas_feature_sweep.png")
    win.close()
    return "canvas_feature_sweep.png"
