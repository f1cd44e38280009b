"""Screenshots of the canvas for the docs: each example graph opened, run and grabbed.

For every graph in graphs/ (or the ones named), open it in a 1280x800 window,
run it, select its most telling node (the sampler) so the inspector shows its
params, keep the opening view and save ``docs/img/canvas_<graph>.png``. One extra
shot of dual_guided is taken mid-run (progress bars, live preview):
``docs/img/canvas_running.png``; ``--features`` adds shots of quick-add, a link
dropped on empty space, the node menu, params edited on a card, the problems
list and the run history (``docs/img/canvas_feature_*.png``; pop-ups are
separate windows, so those need a real screen: run it under Xvfb). Runs
offscreen unless QT_QPA_PLATFORM says otherwise:

    python scripts/screenshots.py [--steps N] [--out docs/img] [GRAPH ...]
    xvfb-run -a -s "-screen 0 1280x800x24" env QT_QPA_PLATFORM=xcb \
        python scripts/screenshots.py --features --steps 8
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `vdnodes gui` does
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "gui"))
sys.path.insert(0, str(ROOT / "scripts"))

from PySide6.QtCore import QEventLoop, QTimer  # noqa: E402

from vdnodes.core import events as ev  # noqa: E402

from vdnodes_gui.app import application  # noqa: E402
from vdnodes_gui.main_window import MainWindow  # noqa: E402

SIZE = (1280, 800)


def settle(app, ms: int = 150) -> None:
    """Let layouts, deferred fits and queued signals finish."""
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()
    app.processEvents()


def open_window(app, graph: Path, out_dir: str, steps: int | None) -> MainWindow:
    from vdnodes.nodes import build_registry_with_plugins

    registry, report = build_registry_with_plugins()  # as `vdnodes gui`: plugin graphs open too
    win = MainWindow(registry, out_dir=out_dir, plugin_report=report)
    win.ask_before_discard = False
    win.resize(*SIZE)
    win.show()
    if not win.open_path(graph):
        raise SystemExit(f"screenshots: cannot open {graph}: {win.last_message}")
    if steps is not None:
        for nid, spec in win.doc.graph.nodes.items():
            if spec.type == "vd.denoise":
                win.editor.set_param(nid, "steps", steps)
        win.undo.setClean()
    settle(app)
    return win


def focus_node(win: MainWindow) -> None:
    """Select the sampler (or the last node) so the inspector has something to show."""
    nodes = win.doc.graph.nodes
    pick = next((n for n, s in nodes.items() if s.type == "vd.denoise"), None) or list(nodes)[-1]
    win.scene.select_nodes([pick])


def run(app, win: MainWindow, on_event=None) -> str:
    loop = QEventLoop()
    status = {}
    win.runner.finished.connect(lambda r, o: (status.update(s=r.status if r else "crashed"), loop.quit()))
    if on_event is not None:
        win.runner.event.connect(on_event)
    if not win.run_graph():
        return f"not run: {win.last_message}"
    loop.exec()
    settle(app)
    return status["s"]


def shoot(win: MainWindow, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not win.grab().save(str(path)):
        raise SystemExit(f"screenshots: cannot write {path}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("graphs", nargs="*", help="graph files (default: every graphs/*.json)")
    p.add_argument("--out", default=str(ROOT / "docs" / "img"), help="folder for the PNGs")
    p.add_argument("--steps", type=int, default=None, help="override every sampler's steps (faster)")
    p.add_argument("--features", action="store_true", help="only the feature shots (needs a screen: Xvfb)")
    args = p.parse_args(argv)
    app = application()
    if args.features:
        from screenshot_features import shoot_features

        with tempfile.TemporaryDirectory() as tmp:
            for name in shoot_features(app, Path(args.out), tmp, args.steps):
                print(name, flush=True)
        return 0
    graphs = [Path(g) for g in args.graphs] or sorted((ROOT / "graphs").glob("*.json"))
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        for graph in graphs:
            t0 = time.perf_counter()
            win = open_window(app, graph, tmp, args.steps)
            focus_node(win)
            status = run(app, win)
            win.view.open_view()
            settle(app)
            shoot(win, out / f"canvas_{graph.stem}.png")
            print(f"{graph.name}: {status} in {time.perf_counter() - t0:.1f}s", flush=True)
            win.close()
        if not args.graphs:  # a mid-run shot: progress bars and the live preview
            win = open_window(app, ROOT / "graphs" / "dual_guided.json", tmp, args.steps)
            focus_node(win)
            done = []

            def grab_halfway(e) -> None:
                if isinstance(e, ev.NodeProgress) and e.fraction >= 0.5 and not done:
                    done.append(True)
                    settle(app, 50)
                    shoot(win, out / "canvas_running.png")

            run(app, win, grab_halfway)
            print("canvas_running.png:", "ok" if done else "no progress seen", flush=True)
            win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
