"""Sweeps in the canvas: set one from a param's menu (checked by the engine), run it with an items
progress bar through ``vdnodes.batch``, see the contact sheet, click a cell to put its values back."""

from __future__ import annotations

import json

from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

from vdnodes.batch import events as bev
from vdnodes.batch.manifest import Manifest
from vdnodes.core.graph import load_graph

from vdnodes_gui.document import NodeState
from vdnodes_gui.node_menu import param_menu

from tests.gui.actions import GRAPHS

SWEEP_TIMEOUT_MS = 300_000


def _action(menu, text):
    return next(a for a in menu.actions() if a.text().replace("&", "") == text)


def _sweep_from_menu(window, nid, name, text):
    menu = param_menu(window, nid, name)
    next(a for a in menu.actions() if a.text().startswith("Sweep")).trigger()
    window.sweep_box.setTextValue(text)
    window.sweep_box.accept()


def _click_cell(window, row, col):
    g = window.viewer.current_output().grid
    x = g["left"] + col * (g["cell"][0] + g["pad"]) + g["cell"][0] / 2
    y = g["top"] + row * (g["cell"][1] + g["pad"]) + g["cell"][1] / 2
    scale, target = window.viewer.view.target()
    at = target.topLeft() + QPointF(x, y) * scale
    QTest.mouseClick(window.viewer.view, Qt.LeftButton, Qt.NoModifier, at.toPoint())


def _run_sweep(window, qtbot):
    with qtbot.waitSignal(window.runner.sweep_finished, timeout=SWEEP_TIMEOUT_MS) as blocker:
        assert window.run_graph()
    return blocker.args


def _quick_dual_guided(window):
    assert window.open_path(GRAPHS / "dual_guided.json")
    window.editor.set_param("sample", "steps", 2)


def test_a_sweep_is_set_from_the_param_menu_checked_shown_saved_and_undone(window, tmp_path, registry):
    _quick_dual_guided(window)
    _sweep_from_menu(window, "sample", "mix", "0:1:0.5")
    assert window.doc.graph.sweep == {"params": {"sample.mix": "0:1:0.5"}}
    card = window.scene.nodes["sample"]
    assert "mix" in card._params and window.doc.sweep_of("sample", "mix") == "0:1:0.5"
    window.inspector.set_node("sample")
    assert window.inspector.labels["mix"].text() == "mix \u27f3"
    assert "swept over 0:1:0.5" in window.inspector.labels["mix"].toolTip()
    # The menu now names the sweep and offers to clear it.
    menu = param_menu(window, "sample", "mix")
    assert _action(menu, "Sweep: 0:1:0.5...") and _action(menu, "Clear sweep")
    # The engine's own checks refuse bad values; the dialog comes back with the reason, nothing changes.
    _sweep_from_menu(window, "sample", "steps", "2,x")
    assert "'x'" in window.sweep_box.labelText() and window.sweep_box.textValue() == "2,x"
    assert "sample.steps" not in json.dumps(window.doc.graph.sweep)
    window.sweep_box.reject()
    why = window.editor.set_sweep("sample", "steps", "0:5000:2500")
    assert why and "value" in why and window.last_message == why
    assert window.doc.graph.sweep == {"params": {"sample.mix": "0:1:0.5"}}
    # Saved with the graph (format 2's sweep block), read back from the file, undone and redone.
    path = tmp_path / "swept.json"
    assert window.save_to(path)
    assert json.loads(path.read_text())["sweep"] == {"params": {"sample.mix": "0:1:0.5"}}
    assert load_graph(path, registry).sweep == {"params": {"sample.mix": "0:1:0.5"}}
    window.undo.undo()
    assert window.doc.graph.sweep == {} and window.doc.sweep_of("sample", "mix") is None
    window.undo.redo()
    _action(param_menu(window, "sample", "mix"), "Clear sweep").trigger()
    assert window.doc.graph.sweep == {}
    assert window.undo.undoText() == "Clear the sweep of sample.mix"


def test_the_sweep_block_of_a_graph_file_shows_on_its_params(window):
    assert window.open_path(GRAPHS / "sweep_mix_focus.json")
    block = window.doc.graph.sweep["params"]
    for key in block:
        nid, _, name = window.doc.graph.inputs.get(key, key).partition(".")
        assert window.doc.sweep_of(nid, name) == block[key]
        assert name in window.scene.nodes[nid]._params


def test_a_3x3_sweep_runs_with_an_items_progress_bar_and_its_grid_cells_restore_their_values(window, qtbot):
    _quick_dual_guided(window)
    _sweep_from_menu(window, "sample", "mix", "0,0.5,1")
    _sweep_from_menu(window, "sample", "seed", "1:3")
    seen = []
    window.runner.sweep_event.connect(
        lambda e: isinstance(e, bev.ItemFinished) and seen.append(window.sweeps.progress.format()))
    with qtbot.waitSignal(window.runner.sweep_finished, timeout=SWEEP_TIMEOUT_MS) as blocker:
        assert window.run_graph()
        assert window.sweeps.progress.isVisible() and window.sweeps.progress.format() == "0/9 items"
    summary, grid = blocker.args
    assert summary.status == "ok" and summary.done == list(range(9)) and not summary.failed
    assert seen == [f"{i}/9 items" for i in range(1, 10)] and window.sweeps.progress.value() == 9
    out = window.output_folder()
    assert sorted(p.name for p in out.glob("dual_guided_item*.png")) == \
        [f"dual_guided_item{i:04d}_00001.png" for i in range(9)]
    records = Manifest(out).records()
    assert [r["overrides"] for r in records][7] == {"sample.mix": 1.0, "sample.seed": 2}
    assert window.run_label.text().startswith("sweep ok") and "9 ok, 0 failed" in window.run_label.text()
    assert not any(s.state in (NodeState.QUEUED, NodeState.RUNNING) for s in window.doc.status.values())
    # The contact sheet is in the viewer; a click on row 3 (mix=1), column 2 (seed=2) restores item 7.
    shown = window.viewer.current_output()
    assert shown is not None and grid.name in shown.caption and shown.grid["rows"] == shown.grid["cols"] == 3
    g = shown.grid
    _click_cell(window, 2, 1)
    params = window.doc.graph.nodes["sample"].params
    assert (params["mix"], params["seed"]) == (1.0, 2)
    assert window.undo.undoText() == "Restore sweep item 7 (sample.mix=1, sample.seed=2)"
    window.undo.undo()
    assert (params["mix"], params["seed"]) == (0.5, 1)
    assert window.history.records[0].status == "ok" and window.history.records[0].images[0].grid == g


def test_cancel_keeps_finished_items_and_run_again_resumes(window, qtbot):
    _quick_dual_guided(window)
    window.editor.set_param("sample", "steps", 6)
    window.editor.set_sweep("sample", "seed", "1:9")
    def cancel_after_an_item(e):
        if isinstance(e, bev.ItemFinished):
            window.cancel_run()
    window.runner.sweep_event.connect(cancel_after_an_item)
    with qtbot.waitSignal(window.runner.sweep_finished, timeout=SWEEP_TIMEOUT_MS) as blocker:
        assert window.run_graph()
    summary, grid = blocker.args
    assert summary.status == "cancelled" and grid is None and 1 <= len(summary.done) < 9
    done = len(summary.done)
    assert window.sweeps.progress.format() == f"{done}/9 items"
    assert window.run_label.text().startswith("sweep cancelled")
    window.runner.sweep_event.disconnect(cancel_after_an_item)
    started = []
    window.runner.sweep_event.connect(lambda e: isinstance(e, bev.SweepStarted) and started.append(e))
    with qtbot.waitSignal(window.runner.sweep_finished, timeout=SWEEP_TIMEOUT_MS) as blocker:
        assert window.run_graph()
    summary, grid = blocker.args
    assert summary.status == "ok" and len(started[0].skipped) == done and len(summary.done) == 9 - done
    assert window.sweeps.progress.format() == "9/9 items" and grid is not None


def test_a_bad_sweep_block_in_a_file_is_a_problem_and_nothing_runs(window, tmp_path):
    data = json.loads((GRAPHS / "dual_guided.json").read_text())
    data["sweep"] = {"params": {"sample.steps": "1,2,99999"}}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    assert window.open_path(path)
    assert window.run_graph() is False and not window.runner.is_running()
    assert any("sample.steps" in p and "99999" in p for p in window.problems.graph_problems)
    assert "Cannot run the sweep" in window.last_message


def test_a_sheet_from_the_run_history_restores_its_own_sweeps_items(window, qtbot):
    assert window.open_path(GRAPHS / "hello.json")
    assert window.editor.set_sweep("bigger", "width", "64,128") is None
    summary, sheet_a = _run_sweep(window, qtbot)
    assert summary.status == "ok" and sheet_a is not None
    window.editor.set_sweep("bigger", "width", None)
    window.editor.set_sweep("bigger", "height", "32,96")
    summary, sheet_b = _run_sweep(window, qtbot)
    assert summary.status == "ok" and sheet_b != sheet_a
    # The older run's sheet, shown again from the history, answers with its own sweep (width), not the last one.
    window.restore_run(window.history.records[1])
    assert window.viewer.current_output().grid["sheet"] == str(sheet_a)
    _click_cell(window, 0, 1)
    assert window.doc.graph.nodes["bigger"].params["width"] == 128
    assert window.undo.undoText() == "Restore sweep item 1 (bigger.width=128)"


def test_a_param_driven_by_a_link_cannot_be_swept(window):
    assert window.open_path(GRAPHS / "hello.json")
    window.editor.param_socket("bigger", "width", True)
    number = window.add_node("value.int")
    assert window.editor.connect(number, "value", "bigger", "width") is None
    why = window.editor.set_sweep("bigger", "width", "1,2")
    assert why == "bigger.width takes its value from a link; sweep the node that drives it"
    assert window.doc.graph.sweep == {}
