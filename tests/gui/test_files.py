"""Files from the canvas: save -> open -> save is identical, PNGs restore their graph, bad files are reported."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from vdnodes.core.graph import dump_graph, load_graph

from tests.gui.actions import GRAPHS, add_from_palette, drag_link
from tests.plugins.support import skip_if_plugin_missing

EXAMPLES = sorted(p.name for p in GRAPHS.glob("*.json"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_save_open_save_is_byte_identical(window, tmp_path, name):
    skip_if_plugin_missing(GRAPHS / name, window.registry)
    assert window.open_path(GRAPHS / name)
    assert all("pos" in window.doc.graph.ui[n] for n in window.doc.graph.nodes)  # laid out on open
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert window.save_to(first)
    assert window.open_path(first)
    assert window.save_to(second)
    assert first.read_bytes() == second.read_bytes()
    # What the file says is what the example says, plus positions.
    saved = load_graph(first, window.registry)
    original = load_graph(GRAPHS / name, window.registry)
    saved.ui = original.ui = {}
    assert dump_graph(saved) == dump_graph(original)


def test_ctrl_s_saves_to_the_open_file_and_clears_the_modified_mark(window, tmp_path):
    path = tmp_path / "g.json"
    add_from_palette(window, "vd.text")
    assert window.save_to(path)
    add_from_palette(window, "vd.denoise")
    assert window.windowTitle().startswith("g.json *")
    QTest.keyClick(window.view, Qt.Key_S, Qt.ControlModifier)
    assert window.windowTitle().startswith("g.json \u2014")
    assert '"denoise"' in path.read_text()


def test_an_unfinished_graph_opens_with_its_problems_on_the_nodes(window, tmp_path):
    path = tmp_path / "unfinished.json"
    den = add_from_palette(window, "vd.denoise")
    window.save_to(path)
    window.new_graph()
    assert window.open_path(path)  # `vdnodes run` would refuse it; the canvas opens it to finish it
    assert "required input 'model'" in window.doc.status[den].error
    assert window.doc.status[den].state.value == "idle"
    assert "2 to fix before it runs" in window.last_message
    model = add_from_palette(window, "vd.load_model")
    drag_link(window, model, "model", den, "model")
    assert window.doc.status[den].error == ""  # re-checked when run


def test_opening_a_png_saved_by_vdnodes_restores_its_graph(window, qtbot, tmp_path):
    window.open_path(GRAPHS / "hello.json")
    ran = window.doc.to_json()
    with qtbot.waitSignal(window.runner.finished, timeout=120_000) as blocker:
        window.run_graph()
    assert blocker.args[0].status == "ok"
    (png,) = (tmp_path / "out").glob("hello_*.png")
    window.doc.graph.nodes["bigger"].params["width"] = 64  # something else is on the canvas now
    assert window.open_path(png)
    assert window.doc.to_json() == ran
    assert window.doc.path is None  # a PNG is not overwritten by Save
    assert window.doc.graph.source == str(png)


def test_a_broken_file_is_reported_and_the_canvas_kept(window, tmp_path):
    window.open_path(GRAPHS / "hello.json")
    before = window.doc.to_json()
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "vdnodes.graph", "version": 1, "nodes": {"x": {"type": "vd.nope"}}}')
    assert not window.open_path(bad)
    assert "is not valid" in window.last_message
    assert "unknown node type 'vd.nope'" in window.viewer.log_view.toPlainText()
    assert window.doc.to_json() == before


def test_a_png_opened_from_another_folder_runs_again_with_its_recorded_inputs(window, qtbot, tmp_path,
                                                                              monkeypatch):
    import shutil

    import numpy as np
    from PIL import Image

    folder = tmp_path / "graph"
    shutil.copytree(GRAPHS / "inputs", folder / "inputs")
    shutil.copy(GRAPHS / "hello.json", folder / "hello.json")
    assert window.open_path(folder / "hello.json")
    with qtbot.waitSignal(window.runner.finished, timeout=120_000) as blocker:
        window.run_graph()
    assert blocker.args[0].status == "ok"
    (png,) = (tmp_path / "out").glob("hello_*.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths of the graph name nothing here or beside the PNG
    assert window.open_path(png)
    assert window.doc.graph.nodes["scene"].params["path"] == "inputs/red_circle_on_blue.png"  # as written
    with qtbot.waitSignal(window.runner.finished, timeout=120_000) as blocker:
        window.run_graph()
    assert blocker.args[0].status == "ok", blocker.args[0].error
    again = sorted((tmp_path / "out").glob("hello_*.png"))[-1]
    assert again != png
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(png)))
    (folder / "inputs" / "red_circle_on_blue.png").unlink()
    assert window.open_path(png)
    with qtbot.waitSignal(window.runner.finished, timeout=120_000) as blocker:
        window.run_graph()
    assert blocker.args[0].status == "failed"
    assert "--set scene.path=PATH" in str(blocker.args[0].error)
