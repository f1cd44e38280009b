"""A user scenario on the canvas, start to finish, checked at every step.

From an empty canvas: quick-add a Load image (double-click, type, Enter), drop
links on empty space to add a Resize image and a Save image that come
connected, run, change a param on the card, re-run (only what changed runs),
save, reopen, run again (everything from the cache but the saver), then sweep
the resize's width and height from their param menus and run the 3 x 3 sweep:
the contact sheet appears, and a click on its centre cell puts 48 x 48 into
the graph. Each step prints what it saw; a failed check exits 1.

    python scripts/scenario.py [--out DIR] [--slow MS]             # offscreen
    xvfb-run -a -s "-screen 0 1280x800x24" env QT_QPA_PLATFORM=xcb python scripts/scenario.py --slow 400
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "gui"))

from PySide6.QtCore import QEventLoop, QPoint, QPointF, Qt, QTimer  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from vdnodes_gui.app import application  # noqa: E402
from vdnodes_gui.main_window import MainWindow  # noqa: E402
from vdnodes_gui.node_menu import param_menu  # noqa: E402

INPUT = ROOT / "graphs" / "inputs" / "red_circle_on_blue.png"


class ScenarioFailed(AssertionError):
    pass


def check(ok: bool, what: str) -> None:
    if not ok:
        raise ScenarioFailed(what)


def wait(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def run(win: MainWindow) -> tuple[str, list[str], list[str]]:
    loop = QEventLoop()
    got = {}
    win.runner.finished.connect(lambda r, o: (got.update(r=r), loop.quit()))
    check(win.run_graph(), f"Run refused: {win.last_message}")
    loop.exec()
    result = got["r"]
    check(result is not None, "the run crashed")
    return result.status, list(result.executed), list(result.cached)


def run_sweep(win: MainWindow) -> object:
    loop = QEventLoop()
    got = {}
    win.runner.sweep_finished.connect(lambda summary, grid: (got.update(s=summary), loop.quit()))
    check(win.run_graph(), f"Run refused: {win.last_message}")
    loop.exec()
    check(got["s"] is not None, "the sweep crashed")
    return got["s"]


def sweep_from_menu(win: MainWindow, nid: str, name: str, values: str) -> None:
    """Right-click menu of the param -> Sweep... -> type the values -> OK."""
    menu = param_menu(win, nid, name)
    next(a for a in menu.actions() if a.text().startswith("Sweep")).trigger()
    win.sweep_box.setTextValue(values)
    win.sweep_box.accept()
    check(win.doc.sweep_of(nid, name) == values, f"{nid}.{name} swept over {values}")


def click_cell(win: MainWindow, row: int, col: int) -> None:
    """Click the centre of a cell of the contact sheet shown in the viewer."""
    shown = win.viewer.current_output()
    check(shown is not None and shown.grid is not None, "the viewer shows the contact sheet")
    g = shown.grid
    x = g["left"] + col * (g["cell"][0] + g["pad"]) + g["cell"][0] / 2
    y = g["top"] + row * (g["cell"][1] + g["pad"]) + g["cell"][1] / 2
    scale, target = win.viewer.view.target()
    at = target.topLeft() + QPointF(x, y) * scale
    QTest.mouseClick(win.viewer.view, Qt.LeftButton, Qt.NoModifier, at.toPoint())


def quick_add(win: MainWindow, spot: QPoint, text: str) -> str:
    before = set(win.doc.graph.nodes)
    QTest.mouseDClick(win.view.viewport(), Qt.LeftButton, Qt.NoModifier, spot)
    check(win.quick_add.isVisible(), "double-click on empty canvas opens quick-add")
    QTest.keyClicks(win.quick_add.search, text)
    QTest.keyClick(win.quick_add.search, Qt.Key_Return)
    (nid,) = set(win.doc.graph.nodes) - before
    return nid


def drop_link_and_add(win: MainWindow, nid: str, output: str, offset: QPointF, text: str) -> str:
    """Drag from an output socket to empty space, pick a node in the pop-up: it comes connected."""
    scene = win.scene
    before = set(win.doc.graph.nodes)
    sock = scene.socket(nid, output, False)
    target = sock.scenePos() + offset
    scene.begin_link(sock)
    scene.drag_link_to(target)
    scene.end_link(target)
    check(win.quick_add.isVisible(), "a link dropped on empty space opens quick-add")
    QTest.keyClicks(win.quick_add.search, text)
    QTest.keyClick(win.quick_add.search, Qt.Key_Return)
    (new,) = set(win.doc.graph.nodes) - before
    check(any(link.node == nid for link in win.doc.graph.nodes[new].inputs.values()),
          f"{new} is connected to {nid}.{output}")
    return new


def scenario(win: MainWindow, folder: Path, slow_ms: int = 0, say=print) -> None:
    view = win.view

    def step(text: str) -> None:
        say(f"- {text}")
        if slow_ms:
            wait(slow_ms)

    centre = view.viewport().rect().center()
    load = quick_add(win, centre + QPoint(-300, 0), "load image")
    win.editor.set_param(load, "path", str(INPUT))
    step(f"quick-add: {load} ({win.doc.graph.nodes[load].type}) at the double-click")
    resize = drop_link_and_add(win, load, "image", QPointF(90, 40), "resize")
    win.editor.set_param(resize, "width", 128)
    win.editor.set_param(resize, "height", 128)
    step(f"link-drop: {resize} added and connected to {load}.image")
    save = drop_link_and_add(win, resize, "image", QPointF(90, 40), "save image")
    win.editor.set_param(save, "prefix", "scenario")
    step(f"link-drop: {save} added and connected to {resize}.image")

    status, executed, _ = run(win)
    check(status == "ok" and sorted(executed) == sorted([load, resize, save]), f"first run: {status} {executed}")
    image = win.viewer.current_image()
    check(image is not None and (image.width(), image.height()) == (128, 128), "the viewer shows 128x128")
    step(f"run: {status}, {win.run_label.text()}")

    win.scene.clearSelection()
    inline = win.scene.edit_param_inline(resize, "width")
    check(inline is not None, "width is editable on the card")
    inline.widget_.box.setFocus()
    inline.widget_.box.selectAll()
    QTest.keyClicks(inline.widget_.box, "64")
    QTest.keyClick(inline.widget_.box, Qt.Key_Return)
    check(win.doc.graph.nodes[resize].params["width"] == 64, "the card's width field set 64")
    stale = sorted(n for n, s in win.doc.status.items() if s.state.value == "stale")
    check(stale == sorted([resize, save]), f"stale after the edit: {stale}")
    step(f"changed {resize}.width to 64 on the card; stale: {', '.join(stale)}")

    status, executed, cached = run(win)
    check(status == "ok" and sorted(executed) == sorted([resize, save]) and cached == [load],
          f"re-run: {status} ran {executed} cached {cached}")
    check(win.viewer.current_image().width() == 64, "the viewer shows the new width")
    step(f"re-run: only {', '.join(executed)} ran; {', '.join(cached)} from the cache")

    path = folder / "scenario.json"
    check(win.save_to(path), f"saved {path}")
    saved = path.read_text()
    win.new_graph()
    check(not win.doc.graph.nodes and win.viewer.current_image() is None, "New empties canvas and viewer")
    check(win.open_path(path), f"reopened {path}")
    check(win.doc.to_json() == saved, "the reopened graph is the saved one")
    step(f"saved and reopened {path.name}")

    status, executed, cached = run(win)
    check(status == "ok" and executed == [save], f"run after reopening: ran {executed}")
    step(f"run after reopening: {status}; cached {', '.join(cached)}; only the saver ran")
    files = sorted(p.name for p in Path(win.runner.executor.out_dir).glob("scenario_*.png"))
    check(len(files) == 3, f"three PNGs written: {files}")
    step(f"outputs: {', '.join(files)}")

    sweep_from_menu(win, resize, "width", "32,48,64")
    sweep_from_menu(win, resize, "height", "32:64:16")
    step(f"sweep set from the param menus: {resize}.width 32,48,64 x {resize}.height 32:64:16")
    summary = run_sweep(win)
    check(summary.status == "ok" and len(summary.done) == 9, f"3 x 3 sweep: {summary.status} {summary.done}")
    check(win.sweeps.progress.format() == "9/9 items", f"progress bar: {win.sweeps.progress.format()}")
    shown = win.viewer.current_output()
    check(shown is not None and shown.grid and (shown.grid["rows"], shown.grid["cols"]) == (3, 3),
          "the viewer shows a 3 x 3 contact sheet")
    step(f"run a 3 x 3 sweep: {win.run_label.text()}; {shown.caption}")
    click_cell(win, 1, 1)
    params = win.doc.graph.nodes[resize].params
    check((params["width"], params["height"]) == (48, 48), f"the centre cell restored {params}")
    step(f"clicked the centre cell: {resize} is now {params['width']} x {params['height']} "
         f"({win.undo.undoText()})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    p.add_argument("--slow", type=int, default=0, help="pause this many ms after each step (to watch)")
    args = p.parse_args(argv)
    app = application()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        win = MainWindow(out_dir=str(out / "out"))
        win.ask_before_discard = False
        win.resize(1280, 800)
        win.show()
        wait(100)
        try:
            scenario(win, out, args.slow)
        except ScenarioFailed as e:
            print(f"scenario FAILED: {e}", file=sys.stderr)
            return 1
        finally:
            win.close()
            app.processEvents()
    print("scenario ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
