"""What users of other node editors reach for: quick-add, link-drop, params on the card, the node
menu, run up to here, collapse and colour, snap, minimap, auto-layout, previews, history, seeds."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from vdnodes.core.graph import load_graph

from vdnodes_gui.document import NodeState
from vdnodes_gui.node_menu import node_menu, param_menu
from vdnodes_gui.view.node_item import HEADER, WIDTH

from tests.gui.actions import GRAPHS, add_from_palette, select, set_param
from tests.gui.test_run import run_and_wait


def _action(menu, text):
    return next(a for a in menu.actions() if a.text().replace("&", "") == text)


def test_double_click_on_empty_canvas_opens_quick_add_and_enter_adds_the_best_match(window):
    view = window.view
    spot = view.viewport().rect().center()
    QTest.mouseDClick(view.viewport(), Qt.LeftButton, Qt.NoModifier, spot)
    assert window.quick_add.isVisible()
    QTest.keyClicks(window.quick_add.search, "text")
    assert window.quick_add.types()[0] == "vd.text"
    QTest.keyClick(window.quick_add.search, Qt.Key_Return)
    assert not window.quick_add.isVisible()
    (nid,) = window.doc.graph.nodes
    assert window.doc.graph.nodes[nid].type == "vd.text"
    assert window.scene.node_at(view.mapToScene(spot) + QPointF(0, 25)) == nid  # where it was asked for


def test_tab_opens_quick_add_too(window):
    window.view.setFocus()
    QTest.keyClick(window.view, Qt.Key_Tab)
    assert window.quick_add.isVisible() and window.quick_add.search.hasFocus()
    QTest.keyClicks(window.quick_add.search, "decode image")
    QTest.keyClick(window.quick_add.search, Qt.Key_Return)
    assert [s.type for s in window.doc.graph.nodes.values()] == ["vd.decode_image"]


def test_dropping_a_link_on_empty_space_offers_only_fitting_nodes_and_connects_the_choice(window, registry):
    model = add_from_palette(window, "vd.load_model")
    scene = window.scene
    start = scene.socket(model, "model", False)
    drop = start.scenePos() + QPointF(400, 150)
    scene.begin_link(start)
    scene.drag_link_to(drop)
    assert scene.end_link(drop) is None
    offered = window.quick_add.types()
    assert offered and all(any(i.socket_type.name == "VDModel" for i in registry.get(t).inputs.values())
                           for t in offered)
    assert "vd.text" not in offered and "vd.encode_text" in offered
    QTest.keyClicks(window.quick_add.search, "encode text")
    QTest.keyClick(window.quick_add.search, Qt.Key_Return)
    enc = next(n for n, s in window.doc.graph.nodes.items() if s.type == "vd.encode_text")
    assert window.doc.link(enc, "model").node == model
    assert abs(window.doc.pos(enc)[0] - drop.x()) < 2  # the new card starts where the link was dropped
    window.undo.undo()  # adding and connecting is one step
    assert list(window.doc.graph.nodes) == [model]
    # From an input: only nodes with an output that fits it.
    enc = add_from_palette(window, "vd.encode_text")
    sock = scene.socket(enc, "text", True)
    scene.begin_link(sock)
    assert scene.end_link(sock.scenePos() - QPointF(350, 0)) is None
    assert all(any(o.socket_type.name == "Text" for o in registry.get(t).outputs.values())
               for t in window.quick_add.types())
    window.quick_add.pick_current()
    assert window.doc.link(enc, "text") is not None


def test_a_param_is_edited_on_the_card_with_the_inspectors_widget(window):
    nid = add_from_palette(window, "vd.denoise")
    set_param(window, nid, "steps", 12)  # changed params are listed on the card first
    window.scene.clearSelection()
    row = window.scene.nodes[nid].param_row("steps")
    spot = window.view.mapFromScene(row.center())
    QTest.mouseClick(window.view.viewport(), Qt.LeftButton, Qt.NoModifier, spot)
    inline = window.scene.inline
    assert inline is not None and inline.name == "steps"
    assert type(inline.widget_) is type(window.inspector.editors["steps"]) or window.inspector.node_id != nid
    inline.widget_.box.setFocus()
    inline.widget_.box.selectAll()
    QTest.keyClicks(inline.widget_.box, "7")
    QTest.keyClick(inline.widget_.box, Qt.Key_Return)
    assert window.doc.graph.nodes[nid].params["steps"] == 7
    assert window.scene.inline is None  # closed after the edit
    window.undo.undo()
    assert window.doc.graph.nodes[nid].params["steps"] == 12


def test_param_menu_resets_to_default_and_takes_hooks(window):
    from vdnodes_gui import node_menu as nm

    nid = add_from_palette(window, "vd.denoise")
    set_param(window, nid, "steps", 12)
    seen = []
    nm.PARAM_MENU_HOOKS.append(lambda menu, win, n, name: seen.append((n, name)) or menu.addAction("Sweep..."))
    try:
        menu = param_menu(window, nid, "steps")
    finally:
        nm.PARAM_MENU_HOOKS.pop()
    assert seen == [(nid, "steps")] and _action(menu, "Sweep...")
    _action(menu, "Reset to default (50)").trigger()
    assert window.doc.graph.nodes[nid].params["steps"] == 50


def test_node_menu_rename_collapse_and_colour_are_layout_only_and_undoable(window, tmp_path, registry):
    window.open_path(GRAPHS / "hello.json")
    before_keys = window.doc.current_keys()
    rename = node_menu(window, "bigger")
    _action(rename, "Rename...").trigger()
    window.rename_box.setTextValue("Upscale 2x")
    window.rename_box.accept()
    assert window.doc.title("bigger") == "Upscale 2x" and window.inspector.node_id in (None, "bigger")
    _action(node_menu(window, "bigger"), "Collapse").trigger()
    item = window.scene.nodes["bigger"]
    assert item.height() == HEADER
    link = window.scene.links[("recolor", "image")]
    assert link.path().pointAtPercent(0).x() == window.doc.pos("bigger")[0] + WIDTH  # still attached
    colours = next(a for a in node_menu(window, "bigger").actions() if a.menu()).menu()
    _action(colours, "Purple").trigger()
    assert item.header_color().name() == "#6a4c93"
    assert window.doc.current_keys() == before_keys  # nothing that runs changed
    window.save_to(tmp_path / "styled.json")
    ui = load_graph(tmp_path / "styled.json", registry).ui["bigger"]
    assert ui["title"] == "Upscale 2x" and ui["collapsed"] is True and ui["color"] == "#6a4c93"
    for _ in range(3):
        window.undo.undo()
    assert "title" not in window.doc.graph.ui["bigger"] and item.height() > HEADER


def test_run_up_to_here_runs_only_what_that_node_needs(window, qtbot):
    window.open_path(GRAPHS / "hello.json")
    run_here = _action(node_menu(window, "bigger"), "Run up to here")
    with qtbot.waitSignal(window.runner.finished, timeout=60_000) as blocker:
        run_here.trigger()
    result = blocker.args[0]
    assert result.status == "ok" and sorted(result.executed) == ["bigger", "scene"]
    assert window.doc.status["bigger"].state is NodeState.DONE
    assert window.doc.status["save"].state is NodeState.IDLE  # not run, and not claimed to be


def test_snap_to_grid_and_the_minimap(window):
    window.open_path(GRAPHS / "hello.json")
    window.act_snap.trigger()
    item = window.scene.nodes["bigger"]
    view = window.view
    start = view.mapFromScene(item.sceneBoundingRect().topLeft() + QPointF(60, 14))
    QTest.mousePress(view.viewport(), Qt.LeftButton, Qt.NoModifier, start)
    QTest.mouseMove(view.viewport(), start + QPoint(37, 29))
    QTest.mouseRelease(view.viewport(), Qt.LeftButton, Qt.NoModifier, start + QPoint(37, 29))
    x, y = window.doc.pos("bigger")
    assert x % 24 == 0 and y % 24 == 0
    mini = window.minimap
    assert mini.isVisible() and mini.parent() is view
    target = window.scene.nodes["save"].sceneBoundingRect().center()
    QTest.mouseClick(mini.viewport(), Qt.LeftButton, Qt.NoModifier, mini.mapFromScene(target))
    assert mini.visible_area().contains(target)
    window.act_minimap.trigger()
    assert not mini.isVisible()


def test_auto_layout_lays_i2t2i_edit_out_by_depth_without_overlap(window):
    window.open_path(GRAPHS / "i2t2i_edit.json")
    window.act_layout.trigger()
    doc = window.doc
    for dst, _, link in doc.links():
        assert doc.pos(link.node)[0] < doc.pos(dst)[0]  # every link runs left to right
    rects = {n: i.sceneBoundingRect().adjusted(4, 4, -4, -4) for n, i in window.scene.nodes.items()}
    assert not [(a, b) for a in rects for b in rects if a < b and rects[a].intersects(rects[b])]
    rows = {round(doc.pos(n)[1]) for n in doc.graph.nodes}
    assert len(rows) > 3  # not one long row
    window.undo.undo()


def test_previews_on_nodes_load_image_thumbnail_and_text_outputs(window, qtbot):
    window.open_path(GRAPHS / "hello.json")
    thumb = window.scene.nodes["scene"].thumbnail()
    assert thumb is not None and thumb.width() > 0
    window.open_path(GRAPHS / "image_to_text.json")
    for nid, spec in window.doc.graph.nodes.items():
        if spec.type == "vd.denoise":
            set_param(window, nid, "steps", 2)
    assert run_and_wait(window, qtbot).status == "ok"
    makers = [n for n, s in window.doc.status.items() if s.text]
    assert makers and all(window.scene.nodes[n]._text_lines for n in makers)
    assert window.doc.status[makers[0]].text in window.viewer.text.toPlainText()


def test_run_history_restores_the_graph_and_outputs_of_an_earlier_run(window, qtbot):
    window.open_path(GRAPHS / "hello.json")
    assert run_and_wait(window, qtbot).status == "ok"
    set_param(window, "bigger", "width", 96)
    assert run_and_wait(window, qtbot).status == "ok"
    assert len(window.history.records) == 2 and window.history.count() == 2
    first = window.history.records[1]
    assert first.status == "ok" and first.images and first.seconds > 0
    rect = window.history.visualItemRect(window.history.item(1))
    QTest.mouseClick(window.history.viewport(), Qt.LeftButton, Qt.NoModifier, rect.center())
    assert window.doc.graph.nodes["bigger"].params["width"] == 256
    assert window.viewer.images[-1].caption == first.images[-1].caption
    assert window.doc.status["bigger"].state is NodeState.CACHED  # its result is still in the cache
    window.undo.undo()
    assert window.doc.graph.nodes["bigger"].params["width"] == 96


def test_seed_increments_or_randomises_after_each_run(window, qtbot):
    window.open_path(GRAPHS / "text_to_image.json")
    sampler = next(n for n, s in window.doc.graph.nodes.items() if s.type == "vd.denoise")
    set_param(window, sampler, "steps", 2)
    select(window, sampler)
    seed = window.doc.graph.nodes[sampler].params["seed"]
    ed = window.inspector.editors["seed"]
    ed.mode.setCurrentIndex(ed.mode.findData("increment"))
    assert window.doc.graph.ui[sampler]["seed_mode"] == {"seed": "increment"}
    assert run_and_wait(window, qtbot).status == "ok"
    assert window.doc.graph.nodes[sampler].params["seed"] == seed + 1
    assert window.inspector.editors["seed"].value() == seed + 1
    ed = window.inspector.editors["seed"]
    ed.mode.setCurrentIndex(ed.mode.findData("randomise"))
    assert run_and_wait(window, qtbot).status == "ok"
    assert window.doc.graph.nodes[sampler].params["seed"] not in (seed + 1, seed)


def test_bypass_passes_the_image_through_or_is_refused_with_the_reason(window, qtbot, tmp_path, registry):
    window.open_path(GRAPHS / "hello.json")
    menu = node_menu(window, "bigger")
    _action(menu, "Bypass").trigger()
    assert window.doc.graph.nodes["bigger"].bypass
    result = run_and_wait(window, qtbot)
    assert result.status == "ok" and "bigger" not in result.executed
    assert window.viewer.current_image().width() == 64  # the loaded image, not resized to 256
    window.save_to(tmp_path / "bypassed.json")
    assert load_graph(tmp_path / "bypassed.json", registry).nodes["bigger"].bypass
    window.undo.undo()
    assert not window.doc.graph.nodes["bigger"].bypass
    window.open_path(GRAPHS / "text_to_image.json")
    enc = next(n for n, s in window.doc.graph.nodes.items() if s.type == "vd.encode_text")
    _action(node_menu(window, enc), "Bypass").trigger()
    assert not window.doc.graph.nodes[enc].bypass
    assert f"cannot bypass {enc}: output 'context'" in window.last_message


def test_frames_group_nodes_move_them_and_are_saved_as_layout(window, tmp_path, registry):
    from vdnodes_gui.node_menu import frame_menu

    window.open_path(GRAPHS / "hello.json")
    keys = window.doc.current_keys()
    window.scene.select_nodes(["scene", "palette"])
    index = window.frame_selection()
    frame = window.scene.frames[index]
    for nid in ("scene", "palette"):
        assert frame.rect().contains(window.scene.nodes[nid].sceneBoundingRect())
    _action(frame_menu(window, index), "Rename frame...").trigger()
    window.rename_box.setTextValue("Inputs")
    window.rename_box.accept()
    assert window.doc.frames()[index]["title"] == "Inputs"
    view = window.view
    bar = view.mapFromScene(frame.bar().center())
    before = {n: window.doc.pos(n) for n in window.doc.graph.nodes}
    count = window.undo.count()
    QTest.mousePress(view.viewport(), Qt.LeftButton, Qt.NoModifier, bar)
    QTest.mouseMove(view.viewport(), bar + QPoint(30, 20))
    QTest.mouseMove(view.viewport(), bar + QPoint(60, 40))
    QTest.mouseRelease(view.viewport(), Qt.LeftButton, Qt.NoModifier, bar + QPoint(60, 40))
    assert window.undo.count() == count + 1  # one step for the whole drag
    dx = window.doc.pos("scene")[0] - before["scene"][0]
    assert dx > 30 and window.doc.pos("palette")[0] - before["palette"][0] == dx
    assert window.doc.pos("save") == before["save"]  # outside the frame: stays
    assert window.doc.current_keys() == keys  # layout only
    window.save_to(tmp_path / "framed.json")
    assert load_graph(tmp_path / "framed.json", registry).ui["@frames"][0]["title"] == "Inputs"
    window.undo.undo()
    assert window.doc.pos("scene") == before["scene"]


def test_reroute_points_bend_a_link_and_can_be_dragged_and_removed(window):
    from vdnodes_gui.node_menu import link_menu

    window.open_path(GRAPHS / "hello.json")
    key = ("recolor", "reference")
    link = window.scene.links[key]
    at = link.path().pointAtPercent(0.5) + QPointF(0, 80)
    _action(link_menu(window, key, at), "Add reroute point here").trigger()
    assert window.doc.graph.ui["recolor"]["reroutes"]["reference"] == [[round(at.x()), round(at.y())]]
    (handle,) = window.scene.handles[key]
    assert link.path().intersects(handle.sceneBoundingRect())  # the link passes through the point
    view = window.view
    start = view.mapFromScene(handle.scenePos())
    QTest.mousePress(view.viewport(), Qt.LeftButton, Qt.NoModifier, start)
    QTest.mouseMove(view.viewport(), start + QPoint(0, 50))
    QTest.mouseRelease(view.viewport(), Qt.LeftButton, Qt.NoModifier, start + QPoint(0, 50))
    (x, y), = window.doc.graph.ui["recolor"]["reroutes"]["reference"]
    assert y > at.y() + 30
    _action(link_menu(window, key, at), "Remove reroute points").trigger()
    assert "reroutes" not in window.doc.graph.ui["recolor"] and not window.scene.handles[key]


def test_a_param_becomes_an_input_socket_that_another_node_drives_and_back(window, qtbot, tmp_path, registry):
    window.open_path(GRAPHS / "hello.json")
    _action(param_menu(window, "bigger", "width"), "Make it an input socket").trigger()
    assert "width" in window.scene.nodes["bigger"].inputs  # a socket on the card
    size = window.add_node("value.int")
    window.editor.set_param(size, "value", 40)
    from tests.gui.actions import drag_link

    assert drag_link(window, size, "value", "bigger", "width") is None
    assert "height" not in window.scene.nodes["bigger"].inputs  # only the param asked for
    text = window.add_node("value.string")
    assert "String does not fit a Int param" in drag_link(window, text, "value", "bigger", "width")
    assert window.doc.link("bigger", "width").node == size
    result = run_and_wait(window, qtbot)
    assert result.status == "ok", result.error
    resized = next(i for i in window.viewer.images if i.node_id == "bigger")
    assert (resized.image.width(), resized.image.height()) == (40, 256)
    window.save_to(tmp_path / "linked.json")
    assert load_graph(tmp_path / "linked.json", registry).nodes["bigger"].inputs["width"].node == size
    _action(param_menu(window, "bigger", "width"), "Back to a value on the node").trigger()
    assert window.doc.link("bigger", "width") is None and "width" not in window.scene.nodes["bigger"].inputs
    _action(param_menu(window, "bigger", "mode"), "Make it an input socket").trigger()
    assert "Enum param cannot be linked" in window.last_message


def test_every_param_can_be_shown_and_edited_on_the_card(window):
    from vdnodes_gui.view.node_item import MORE

    nid = add_from_palette(window, "vd.denoise")
    window.scene.clearSelection()
    item = window.scene.nodes[nid]
    assert "eta" not in item._param_rows and MORE in item._param_rows
    view = window.view
    view.centerOn(item.param_row(MORE).center())
    QTest.mouseClick(view.viewport(), Qt.LeftButton, Qt.NoModifier, view.mapFromScene(item.param_row(MORE).center()))
    decl = window.registry.get("vd.denoise")
    assert set(decl.params) <= set(item._param_rows)  # every param has its row now
    view.centerOn(item.param_row("eta").center())
    QTest.mouseClick(view.viewport(), Qt.LeftButton, Qt.NoModifier, view.mapFromScene(item.param_row("eta").center()))
    assert window.scene.inline is not None and window.scene.inline.name == "eta"
    window.undo.undo()  # showing every param was one (layout) step
    assert "eta" not in item._param_rows
