"""Defects seen in use, each shown fixed the way a user meets it: badges that say what is true,
problems that stay where they are, the first seconds of a run, search ranking, placement,
the viewer, the inspector, out-of-range typing, closing during start-up, the output folder."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, QPoint, Qt, Slot
from PySide6.QtGui import QCursor, QDesktopServices
from PySide6.QtTest import QTest

from vdnodes_gui.document import NodeState

from tests.gui.actions import GRAPHS, add_from_palette, drag_link, select, set_param
from tests.gui.test_run import RUN_TIMEOUT_MS, run_and_wait


def states(window) -> dict[str, NodeState]:
    return {n: s.state for n, s in window.doc.status.items()}


def test_undo_redo_back_to_a_computed_state_shows_it_fresh_and_a_rerun_leaves_nothing_stale(window, qtbot):
    window.open_path(GRAPHS / "hello.json")
    assert run_and_wait(window, qtbot).status == "ok"
    set_param(window, "bigger", "width", 128)
    assert {n for n, s in states(window).items() if s is NodeState.STALE} == {"bigger", "recolor", "save"}
    assert run_and_wait(window, qtbot).status == "ok"
    window.undo.undo()
    assert {n for n, s in states(window).items() if s is NodeState.STALE} == {"bigger", "recolor", "save"}
    window.undo.redo()  # the graph is the one just computed again
    assert NodeState.STALE not in states(window).values()
    assert run_and_wait(window, qtbot).status == "ok"
    assert NodeState.STALE not in states(window).values()
    window.undo.undo()  # back to the first run's graph: its results are in the cache
    assert run_and_wait(window, qtbot).status == "ok"
    assert NodeState.STALE not in states(window).values(), states(window)


def test_a_failed_run_then_undo_then_run_leaves_no_node_stale(window, qtbot):
    window.open_path(GRAPHS / "text_to_image.json")
    sampler = next(n for n, s in window.doc.graph.nodes.items() if s.type == "vd.denoise")
    prompt = next(n for n, s in window.doc.graph.nodes.items() if s.type == "vd.text")
    set_param(window, sampler, "steps", 2)
    assert run_and_wait(window, qtbot).status == "ok"
    window.doc.graph.nodes  # noqa: B018
    window.editor.set_param(prompt, "text", "")  # the encoder refuses an empty prompt at run time
    assert run_and_wait(window, qtbot).status == "failed"
    assert NodeState.FAILED in states(window).values()
    window.undo.undo()
    assert run_and_wait(window, qtbot).status == "ok"
    assert NodeState.STALE not in states(window).values(), states(window)
    assert NodeState.FAILED not in states(window).values()


def test_nodes_a_run_did_not_need_say_so_instead_of_an_old_done(window, qtbot):
    window.open_path(GRAPHS / "hello.json")
    assert run_and_wait(window, qtbot).status == "ok"
    set_param(window, "save", "prefix", "again")
    result = run_and_wait(window, qtbot)
    assert result.executed == ["save"] and result.cached == ["recolor"]
    st = window.doc.status
    assert st["save"].state is NodeState.DONE and st["recolor"].state is NodeState.CACHED
    for nid in ("scene", "palette", "bigger"):  # not in this run's plan: a later result was cached
        assert st[nid].state is NodeState.CACHED and "not needed" in st[nid].message, (nid, st[nid])
        assert st[nid].seconds is None  # no run time from an earlier run


def test_after_a_cancel_the_nodes_that_did_not_run_say_cancelled(window, qtbot):
    window.open_path(GRAPHS / "text_to_image.json")
    sampler = next(n for n, s in window.doc.graph.nodes.items() if s.type == "vd.denoise")
    set_param(window, sampler, "steps", 400)
    with qtbot.waitSignal(window.runner.finished, timeout=RUN_TIMEOUT_MS):
        assert window.run_graph()
        qtbot.waitUntil(lambda: window.doc.status[sampler].state is NodeState.RUNNING, timeout=RUN_TIMEOUT_MS)
        window.cancel_run()
    after = [n for n in window.doc.graph.nodes if sampler in window.doc.ancestors(n)]
    assert after and all(window.doc.status[n].state is NodeState.CANCELLED for n in [sampler, *after])
    assert window.scene.nodes[sampler]._badge(NodeState.CANCELLED, window.doc.status[sampler]) == "cancelled"
    before = window.doc.ancestors(sampler)
    assert all(window.doc.status[n].state in (NodeState.DONE, NodeState.CACHED) for n in before)


def test_problems_stay_listed_on_their_nodes_until_fixed_and_a_click_selects_the_node(window, qtbot):
    model = add_from_palette(window, "vd.load_model")
    enc = add_from_palette(window, "vd.encode_text")
    assert window.run_graph() is False
    listed = window.problems.problems()
    assert (enc, "required input 'model' (VDModel) is not connected") in listed
    assert any(nid == enc and "'text'" in message for nid, message in listed)  # every problem, uncut
    assert window.doc.status[enc].state is NodeState.FAILED and window.scene.nodes[enc]._error_lines
    assert "Problems" in window.last_message and window.statusBar().currentMessage() == window.last_message
    window.scene.clearSelection()
    item = next(window.problems.item(i) for i in range(window.problems.count())
                if window.problems.item(i).text().startswith(enc))
    rect = window.problems.visualItemRect(item)
    QTest.mouseClick(window.problems.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())
    assert window.scene.selected_node_ids() == [enc]
    drag_link(window, model, "model", enc, "model")  # fixing the node clears its entry
    qtbot.waitUntil(lambda: all(nid != enc for nid, _ in window.problems.problems()))


def test_a_run_shows_its_state_from_the_first_moment_and_reports_the_whole_time(window, qtbot):
    window.open_path(GRAPHS / "text_to_image.json")
    sampler = next(n for n, s in window.doc.graph.nodes.items() if s.type == "vd.denoise")
    set_param(window, sampler, "steps", 2)
    t0 = time.perf_counter()
    with qtbot.waitSignal(window.runner.finished, timeout=RUN_TIMEOUT_MS) as blocker:
        assert window.run_graph()
        # Before the worker has reported anything, every node that will run says so.
        assert all(s.state is NodeState.QUEUED for s in window.doc.status.values())
        assert window.run_label.text().startswith("running")
    wall = time.perf_counter() - t0
    result = blocker.args[0]
    reported = float(window.run_label.text().split(" in ")[1].split(" s")[0])
    assert reported >= result.seconds - 0.005 and reported >= 0.8 * wall - 0.05, (reported, result.seconds, wall)
    assert abs(window.history.records[0].seconds - reported) < 0.006


def test_typing_text_and_enter_in_the_search_adds_the_text_node(window):
    window.palette.search.setText("text")
    assert window.palette.visible_types()[0] == "vd.text"
    QTest.keyClick(window.palette.search, Qt.Key_Return)
    assert [s.type for s in window.doc.graph.nodes.values()] == ["vd.text"]
    window.palette.search.setText("enc")
    assert window.palette.visible_types()[0].startswith("vd.encode_")  # title prefix first


def _rect(window, nid):
    return window.scene.nodes[nid].sceneBoundingRect().adjusted(4, 4, -4, -4)


def test_new_nodes_go_to_the_cursor_or_beside_the_selection_without_overlap(window):
    view = window.view
    first = add_from_palette(window, "vd.denoise")
    second = add_from_palette(window, "vd.denoise")  # cursor off the canvas: right of the selection
    assert not _rect(window, first).intersects(_rect(window, second))
    assert window.doc.pos(second)[0] > window.doc.pos(first)[0]
    spot = view.viewport().rect().center() + QPoint(-200, 100)
    QCursor.setPos(view.viewport().mapToGlobal(spot))
    third = add_from_palette(window, "vd.text")
    where = view.mapToScene(spot)
    assert abs(window.doc.pos(third)[1] - (where.y() - 20)) < 2 or \
        not _rect(window, third).intersects(_rect(window, first))
    assert _rect(window, third).contains(where) or window.doc.pos(third)[1] > where.y()
    ids = [first, second, third]
    assert all(not _rect(window, a).intersects(_rect(window, b)) for a in ids for b in ids if a < b)


def test_pasted_nodes_land_at_the_cursor_without_overlap(window):
    window.open_path(GRAPHS / "hello.json")
    view = window.view
    view.setFocus()
    window.scene.select_nodes(["bigger", "recolor"])
    QTest.keyClick(view, Qt.Key_C, Qt.ControlModifier)
    QCursor.setPos(view.viewport().mapToGlobal(view.viewport().rect().center()))
    QTest.keyClick(view, Qt.Key_V, Qt.ControlModifier)
    QTest.keyClick(view, Qt.Key_V, Qt.ControlModifier)
    ids = list(window.doc.graph.nodes)
    assert len(ids) == 9
    assert all(not _rect(window, a).intersects(_rect(window, b)) for a in ids for b in ids if a < b)


def test_new_and_open_clear_the_viewer_and_save_as_names_the_graph(window, qtbot, tmp_path):
    window.open_path(GRAPHS / "hello.json")
    assert run_and_wait(window, qtbot).status == "ok"
    assert window.viewer.current_image() is not None and window.viewer.caption.text()
    window.new_graph()
    assert window.viewer.current_image() is None and window.viewer.images == [] and not window.viewer.caption.text()
    add_from_palette(window, "vd.text")
    window.scene.clearSelection()
    window.save_to(tmp_path / "my_graph.json")
    heading = window.inspector.widget().findChild(type(window.run_label), "heading")
    assert heading.text() == "my_graph"


def test_an_out_of_range_value_is_clamped_visibly_and_the_range_shown(window):
    nid = add_from_palette(window, "vd.denoise")
    select(window, nid)
    ed = window.inspector.editors["guidance"]
    assert ed.range_label.text() == "0 \u2013 30"
    ed.box.setFocus()
    ed.box.selectAll()
    QTest.keyClicks(ed.box, "999999")
    QTest.keyClick(ed.box, Qt.Key_Return)
    assert window.doc.graph.nodes[nid].params["guidance"] == 30.0
    assert "999999 is outside 0 \u2013 30; set to 30" in window.statusBar().currentMessage()


def test_closing_while_the_worker_starts_hides_the_window_at_once(window, qtbot):
    window.open_path(GRAPHS / "text_to_image.json")
    assert window.run_graph()
    t0 = time.perf_counter()
    window.close()
    assert time.perf_counter() - t0 < 0.5 and not window.isVisible()
    qtbot.waitUntil(lambda: not window.runner.is_running(), timeout=RUN_TIMEOUT_MS)
    qtbot.waitUntil(lambda: window.isHidden() and window._close_after_run, timeout=5000)


class _Opened(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.urls = []

    @Slot("QUrl")
    def open(self, url) -> None:
        self.urls.append(url)


def test_the_output_folder_is_shown_and_opens(window, tmp_path):
    assert str(tmp_path / "out") in window.out_label.toolTip()
    assert window.out_label.text().endswith(str(tmp_path / "out")[-40:])
    handler = _Opened()
    QDesktopServices.setUrlHandler("file", handler, "open")
    try:
        window.out_button.click()
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert [u.toLocalFile() for u in handler.urls] == [str((tmp_path / "out").resolve())]
