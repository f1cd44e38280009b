"""``vdnodes gui [GRAPH]``: opens the canvas with the graph; a clear message without PySide6."""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from vdnodes.cli import main

from vdnodes_gui.main_window import MainWindow

from tests.gui.actions import GRAPHS


def test_gui_opens_the_graph_and_returns_when_the_window_closes(qapp, tmp_path):
    seen = {}

    def inspect_and_close() -> None:
        (win,) = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        seen["title"] = win.windowTitle()
        seen["nodes"] = sorted(win.doc.graph.nodes)
        seen["out"] = win.runner.executor.out_dir
        win.close()
        QApplication.quit()

    QTimer.singleShot(0, inspect_and_close)
    assert main(["gui", str(GRAPHS / "hello.json"), "--out", str(tmp_path)]) == 0
    assert seen["title"].startswith("hello.json")
    assert seen["nodes"] == ["bigger", "palette", "recolor", "save", "scene"]
    assert seen["out"] == str(tmp_path)


def test_gui_without_pyside6_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "PySide6", None)  # makes `import PySide6` fail
    assert main(["gui"]) == 2
    err = capsys.readouterr().err
    assert "needs PySide6" in err and "pip install 'vdnodes[gui]'" in err


def test_gui_refuses_an_unavailable_device(capsys):
    import torch

    if torch.cuda.is_available():
        return
    assert main(["gui", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
