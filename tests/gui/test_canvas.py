"""Editing on the canvas as a user does it: palette, links, refusals, keys, mouse, zoom and pan."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QToolTip

from vdnodes_gui.view.node_item import NodeItem

from tests.gui.actions import GRAPHS, add_from_palette, drag_link, set_param


def test_palette_double_click_adds_a_selected_node_with_defaults(window):
    nid = add_from_palette(window, "vd.denoise")
    assert nid == "denoise"
    assert window.doc.graph.nodes[nid].params["steps"] == 50
    assert window.scene.selected_node_ids() == [nid]
    assert window.inspector.node_id == nid and "steps" in window.inspector.editors
    assert isinstance(window.scene.nodes[nid], NodeItem)
    assert add_from_palette(window, "vd.denoise") == "denoise_2"
    assert window.doc.pos("denoise_2") != window.doc.pos("denoise")  # not stacked on top


def test_palette_search_filters_and_entries_carry_the_node_doc(window, registry):
    window.palette.search.setText("decode image")
    assert window.palette.visible_types()[0] == "vd.decode_image"  # title matches lead
    window.palette.search.setText("decode")
    shown = set(window.palette.visible_types())
    assert {"vd.decode_image", "vd.decode_text"} <= shown and "vd.load_model" not in shown
    window.palette.search.setText("decode image")
    QTest.keyClick(window.palette.search, Qt.Key_Return)  # Enter adds the first hit
    assert [s.type for s in window.doc.graph.nodes.values()] == ["vd.decode_image"]
    window.palette.search.setText("")
    assert len(window.palette.visible_types()) == len(registry)
    tip = window.palette.items["vd.denoise"].toolTip(0)
    assert registry.get("vd.denoise").doc in tip
    assert registry.get("vd.decode_image").doc in window.scene.nodes["decode_image"].toolTip()


def test_an_incompatible_link_is_refused_and_the_reason_shown(window):
    text = add_from_palette(window, "vd.text")
    enc = add_from_palette(window, "vd.encode_image")
    why = drag_link(window, text, "text", enc, "image")
    assert why == f"{text}.text -> {enc}.image: Text cannot feed Image: the types differ"
    assert window.doc.link(enc, "image") is None and window.undo.count() == 2
    assert window.statusBar().currentMessage() == why
    assert QToolTip.text() == why  # shown next to the cursor too
    assert not window.scene.links


def test_drawing_a_link_with_the_mouse(window, qtbot):
    load = add_from_palette(window, "vd.load_image")
    resize = add_from_palette(window, "image.resize")
    window.editor.move({resize: (400, 0)}, window.editor.new_gesture())
    window.editor.move({load: (0, 0)}, window.editor.new_gesture())
    window.view.centerOn(300, 50)
    view, scene = window.view, window.scene
    a = view.mapFromScene(scene.socket(load, "image", False).scenePos())
    b = view.mapFromScene(scene.socket(resize, "image", True).scenePos())
    QTest.mousePress(view.viewport(), Qt.LeftButton, Qt.NoModifier, a)
    QTest.mouseMove(view.viewport(), (a + b) / 2)
    QTest.mouseMove(view.viewport(), b)
    QTest.mouseRelease(view.viewport(), Qt.LeftButton, Qt.NoModifier, b)
    link = window.doc.link(resize, "image")
    assert link is not None and (link.node, link.output) == (load, "image")
    assert (resize, "image") in scene.links
    # Dragging the link's input end into empty canvas removes it (one undo step).
    QTest.mousePress(view.viewport(), Qt.LeftButton, Qt.NoModifier, b)
    QTest.mouseMove(view.viewport(), b + QPoint(0, 150))
    QTest.mouseRelease(view.viewport(), Qt.LeftButton, Qt.NoModifier, b + QPoint(0, 150))
    assert window.doc.link(resize, "image") is None and not scene.links
    window.undo.undo()
    assert window.doc.link(resize, "image") is not None


def test_dragging_a_node_moves_it_in_one_undo_step(window):
    nid = add_from_palette(window, "vd.text")
    window.editor.move({nid: (0, 0)}, window.editor.new_gesture())
    window.view.centerOn(0, 0)
    count = window.undo.count()
    view = window.view
    start = view.mapFromScene(QPointF(100, 15))  # on the header
    QTest.mousePress(view.viewport(), Qt.LeftButton, Qt.NoModifier, start)
    for step in (10, 30, 60):
        QTest.mouseMove(view.viewport(), start + QPoint(step, step // 2))
    QTest.mouseRelease(view.viewport(), Qt.LeftButton, Qt.NoModifier, start + QPoint(60, 30))
    x, y = window.doc.pos(nid)
    assert (x, y) == (round(60 / view.zoom()), round(30 / view.zoom()))
    assert window.scene.nodes[nid].pos() == QPointF(x, y)
    assert window.undo.count() == count + 1
    window.undo.undo()
    assert window.doc.pos(nid) == (0, 0)


def test_delete_copy_paste_and_undo_redo_with_keys(window, qtbot):
    window.open_path(GRAPHS / "dual_guided.json")
    original = window.doc.to_json()
    view = window.view
    view.setFocus()
    window.scene.select_nodes(["prompt", "text_context"])
    QTest.keyClick(view, Qt.Key_C, Qt.ControlModifier)
    QTest.keyClick(view, Qt.Key_V, Qt.ControlModifier)
    pasted = sorted(set(window.doc.graph.nodes) - {"model", "image", "prompt", "image_context", "text_context",
                                                    "sample", "decode", "save"})
    assert pasted == ["prompt_2", "text_context_2"]
    assert window.doc.link("text_context_2", "text").node == "prompt_2"
    assert window.scene.selected_node_ids() == ["prompt_2", "text_context_2"] or \
        set(window.scene.selected_node_ids()) == set(pasted)
    after_paste = window.doc.to_json()
    window.scene.select_nodes(["sample"])
    QTest.keyClick(view, Qt.Key_Delete)
    assert "sample" not in window.doc.graph.nodes and window.doc.link("decode", "latent") is None
    QTest.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert window.doc.to_json() == after_paste
    QTest.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert window.doc.to_json() == original  # the paste was one step
    QTest.keyClick(view, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    QTest.keyClick(view, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert "sample" not in window.doc.graph.nodes and "prompt_2" in window.doc.graph.nodes
    assert window.windowTitle().startswith("dual_guided.json *")


def test_param_widgets_edit_the_document_and_follow_undo(window):
    nid = add_from_palette(window, "vd.denoise")
    set_param(window, nid, "steps", 7)
    set_param(window, nid, "sampler", "dpmpp_2m")
    set_param(window, nid, "guidance", 3.5)
    set_param(window, nid, "seed", 12345)
    ed = window.inspector.editors
    assert ed["steps"].box.minimum() == 1 and ed["steps"].box.maximum() == 999  # vd.denoise declares steps in [1, 999]
    assert [ed["output"].box.itemText(i) for i in range(ed["output"].box.count())] == ["image", "text"]
    ed["seed"].dice.click()
    assert window.doc.graph.nodes[nid].params["seed"] == int(ed["seed"].line.text())
    window.undo.undo()  # the random seed
    window.undo.undo()  # the typed seed
    assert ed["seed"].line.text() == "0"
    window.undo.undo()
    assert ed["guidance"].box.value() == 7.5
    text = add_from_palette(window, "vd.text")
    set_param(window, text, "text", "a red circle")
    assert window.scene.nodes[text].toolTip()  # the card shows its doc
    window.undo.undo()  # typing a prompt is one step
    assert window.doc.graph.nodes[text].params["text"] == ""
    load = add_from_palette(window, "vd.load_model")
    assert window.inspector.editors["source"].browse.toolTip() == "Choose a file"
    assert window.inspector.editors["seed"].box.maximum() == 2**31 - 1


def test_zoom_pan_and_fit(window):
    window.open_path(GRAPHS / "dual_guided.json")
    view = window.view
    view.resetTransform()
    centre = view.viewport().rect().center()
    for delta in (120, 120):
        event_zoom = view.zoom()
        QTest.mouseMove(view.viewport(), centre)
        view.wheelEvent(_wheel(view, centre, delta))
        assert view.zoom() > event_zoom
    before = view.mapToScene(centre)
    QTest.mousePress(view.viewport(), Qt.MiddleButton, Qt.NoModifier, centre)
    QTest.mouseMove(view.viewport(), centre + QPoint(80, 40))
    QTest.mouseRelease(view.viewport(), Qt.MiddleButton, Qt.NoModifier, centre + QPoint(80, 40))
    moved = view.mapToScene(centre) - before
    assert moved.x() < -20 and moved.y() < -10  # content followed the hand
    view.setFocus()
    QTest.keyClick(view, Qt.Key_F)
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    assert visible.contains(window.scene.itemsBoundingRect())


def _wheel(view, pos, delta):
    from PySide6.QtGui import QWheelEvent

    p = QPointF(pos)
    return QWheelEvent(p, QPointF(view.viewport().mapToGlobal(pos)), QPoint(0, 0), QPoint(0, delta),
                       Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)


def _drop(view, mime, pos):
    from PySide6.QtGui import QDropEvent

    event = QDropEvent(QPointF(pos), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    view.dropEvent(event)


def test_dropping_a_palette_entry_adds_the_node_where_it_lands(window):
    from vdnodes_gui.view.canvas import NODE_MIME

    tree = window.palette.tree
    mime = tree.mimeData([window.palette.items["vd.decode_image"]])  # what dragging the entry carries
    assert mime.hasFormat(NODE_MIME)
    where = window.view.viewport().rect().center() + QPoint(50, 30)
    _drop(window.view, mime, where)
    (nid,) = window.doc.graph.nodes
    assert window.doc.graph.nodes[nid].type == "vd.decode_image"
    scene_pos = window.view.mapToScene(where)
    assert window.scene.node_at(scene_pos + QPointF(0, 25)) == nid  # the card sits under the drop point


def test_dropping_a_graph_file_opens_it(window):
    from PySide6.QtCore import QMimeData, QUrl

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(GRAPHS / "hello.json"))])
    _drop(window.view, mime, window.view.viewport().rect().center())
    assert sorted(window.doc.graph.nodes) == ["bigger", "palette", "recolor", "save", "scene"]


def test_space_drag_pans(window):
    window.open_path(GRAPHS / "hello.json")
    view = window.view
    view.setFocus()
    centre = view.viewport().rect().center()
    before = view.mapToScene(centre)
    QTest.keyPress(view, Qt.Key_Space)
    QTest.mousePress(view.viewport(), Qt.LeftButton, Qt.NoModifier, centre)
    QTest.mouseMove(view.viewport(), centre + QPoint(-60, 0))
    QTest.mouseRelease(view.viewport(), Qt.LeftButton, Qt.NoModifier, centre + QPoint(-60, 0))
    QTest.keyRelease(view, Qt.Key_Space)
    assert (view.mapToScene(centre) - before).x() > 20
    assert not window.scene.selectedItems() and window.undo.count() == 0  # panning edits nothing
