"""Running from the canvas: build a graph by hand, run it in the worker, see states, previews, outputs."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QTimer

from vdnodes.core import events as ev
from vdnodes.core.graph import load_graph, to_dict

from vdnodes_gui.document import NodeState

from tests.gui.actions import GRAPHS, add_from_palette, drag_link, set_param

RUN_TIMEOUT_MS = 120_000


def run_and_wait(window, qtbot):
    with qtbot.waitSignal(window.runner.finished, timeout=RUN_TIMEOUT_MS) as blocker:
        assert window.run_graph()
    result, _ = blocker.args
    return result


def build_dual_guided(window) -> dict[str, str]:
    """graphs/dual_guided.json, made from the palette; returns file id -> canvas id."""
    ids = {
        "model": add_from_palette(window, "vd.load_model"),
        "image": add_from_palette(window, "vd.load_image"),
        "prompt": add_from_palette(window, "vd.text"),
        "image_context": add_from_palette(window, "vd.encode_image"),
        "text_context": add_from_palette(window, "vd.encode_text"),
        "sample": add_from_palette(window, "vd.denoise"),
        "decode": add_from_palette(window, "vd.decode_image"),
        "save": add_from_palette(window, "vd.save_image"),
    }
    for src, out, dst, name in [
        ("model", "model", "image_context", "model"), ("image", "image", "image_context", "image"),
        ("model", "model", "text_context", "model"), ("prompt", "text", "text_context", "text"),
        ("model", "model", "sample", "model"), ("image_context", "context", "sample", "context"),
        ("text_context", "context", "sample", "context2"), ("model", "model", "decode", "model"),
        ("sample", "latent", "decode", "latent"), ("decode", "image", "save", "image"),
    ]:
        assert drag_link(window, ids[src], out, ids[dst], name) is None
    set_param(window, ids["image"], "path", str(GRAPHS / "inputs" / "yellow_striped_triangle_on_green.png"))
    set_param(window, ids["prompt"], "text", "a red triangle")
    set_param(window, ids["sample"], "seed", 1)
    set_param(window, ids["sample"], "steps", 3)
    set_param(window, ids["save"], "prefix", "dual_guided")
    return ids


def test_build_dual_guided_from_the_palette_run_it_and_see_the_image(window, qtbot, registry, tmp_path):
    ids = build_dual_guided(window)
    # The same computation as the example file (ids, positions and the image path aside).
    ours = to_dict(window.doc.graph)["nodes"]
    theirs = to_dict(load_graph(GRAPHS / "dual_guided.json", registry))["nodes"]
    theirs["sample"]["params"]["steps"] = 3
    back = {v: k for k, v in ids.items()}
    for file_id, node in theirs.items():
        mine = ours[ids[file_id]]
        assert mine["type"] == node["type"] and mine["version"] == node["version"]
        assert {k: v for k, v in mine["params"].items() if k != "path"} == \
            {k: v for k, v in node["params"].items() if k != "path"}
        assert {k: [back[v[0]], v[1]] for k, v in mine.get("inputs", {}).items()} == node.get("inputs", {})

    result = run_and_wait(window, qtbot)
    assert result.status == "ok", result.error
    assert {window.doc.status[n].state for n in ids.values()} == {NodeState.DONE}
    image = window.viewer.current_image()
    assert image is not None and (image.width(), image.height()) == (32, 32)
    assert window.viewer.images[-1].caption == "dual_guided_00001.png"
    assert (tmp_path / "out" / "dual_guided_00001.png").exists()
    sample = window.doc.status[ids["sample"]]
    assert sample.preview is not None and not sample.preview.isNull()  # the live preview stays on the card
    assert window.doc.status[ids["decode"]].preview.size() == image.size()

    # An edit marks the node and its descendants stale; the re-run recomputes only those.
    set_param(window, ids["sample"], "guidance", 5.0)
    stale = {k for k, n in ids.items() if window.doc.status[n].state is NodeState.STALE}
    assert stale == {"sample", "decode", "save"}
    again = run_and_wait(window, qtbot)
    assert again.status == "ok"
    assert {back[n] for n in again.executed} == {"sample", "decode", "save"}
    assert {back[n] for n in again.cached} == {"model", "image_context", "text_context"}
    assert window.doc.status[ids["image_context"]].state is NodeState.CACHED
    assert window.viewer.images[-1].caption == "dual_guided_00002.png"


def test_cancel_stops_a_long_run_and_the_ui_keeps_running(window, qtbot):
    window.open_path(GRAPHS / "text_to_image.json")
    sampler = next(n for n, s in window.doc.graph.nodes.items() if s.type == "vd.denoise")
    set_param(window, sampler, "steps", 400)  # minutes of sampling; cancelled after the first step
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(window.runner.is_running()))
    timer.start(10)
    progress = []
    window.runner.event.connect(lambda e: isinstance(e, ev.NodeProgress) and progress.append(e))
    with qtbot.waitSignal(window.runner.finished, timeout=RUN_TIMEOUT_MS) as blocker:
        assert window.run_graph()
        assert not window.act_run.isEnabled() and window.act_cancel.isEnabled()
        qtbot.waitUntil(lambda: bool(progress) or not window.runner.is_running(), timeout=RUN_TIMEOUT_MS)
        assert progress and progress[0].node_id == sampler, window.last_message
        seen = len(ticks)
        qtbot.waitUntil(lambda: len(ticks) >= seen + 5, timeout=RUN_TIMEOUT_MS)
        assert window.runner.is_running()  # the timer kept firing while the worker sampled
        assert window.doc.status[sampler].state is NodeState.RUNNING
        preview = window.doc.status[sampler].preview
        assert preview is not None and preview.width() > 0  # the live latent preview
        assert "live preview" in window.viewer.caption.text()
        window.act_cancel.trigger()
    timer.stop()
    result, _ = blocker.args
    assert result.status == "cancelled"
    assert window.statusBar().currentMessage() == "Run cancelled"
    assert all(s.state not in (NodeState.RUNNING, NodeState.QUEUED) for s in window.doc.status.values())
    assert window.doc.status[sampler].message == "cancelled"
    assert window.act_run.isEnabled() and not window.act_cancel.isEnabled()
    assert not any(p.fraction >= 1.0 for p in progress if p.node_id == sampler)


def test_a_failing_node_shows_its_error(window, qtbot):
    model = add_from_palette(window, "vd.load_model")
    text = add_from_palette(window, "vd.text")  # an empty prompt
    enc = add_from_palette(window, "vd.encode_text")
    drag_link(window, model, "model", enc, "model")
    drag_link(window, text, "text", enc, "text")
    result = run_and_wait(window, qtbot)
    assert result.status == "failed"
    status = window.doc.status[enc]
    assert status.state is NodeState.FAILED and "the prompt is empty" in status.error
    assert "the prompt is empty" in window.scene.nodes[enc].toolTip()
    assert window.scene.nodes[enc]._error_lines  # drawn on the card
    assert "the prompt is empty" in window.statusBar().currentMessage()


def test_an_invalid_graph_is_not_run_and_the_problem_is_on_the_node(window, qtbot):
    enc = add_from_palette(window, "vd.encode_text")
    assert window.run_graph() is False
    assert not window.runner.is_running()
    status = window.doc.status[enc]
    assert status.state is NodeState.FAILED and "required input 'model'" in status.error
    assert window.statusBar().currentMessage().startswith("Cannot run: 2 problems")


def test_a_missing_input_file_fails_before_anything_loads(window, qtbot, tmp_path):
    load = add_from_palette(window, "vd.load_image")
    set_param(window, load, "path", str(tmp_path / "nope.png"))
    result = run_and_wait(window, qtbot)
    assert result.status == "failed" and result.executed == []
    assert "image file not found" in window.doc.status[load].error


def test_text_outputs_appear_in_the_text_viewer(window, qtbot):
    window.open_path(GRAPHS / "image_to_text.json")
    for nid, spec in window.doc.graph.nodes.items():
        if spec.type == "vd.denoise":
            set_param(window, nid, "steps", 2)
    result = run_and_wait(window, qtbot)
    assert result.status == "ok", result.error
    text = window.viewer.text.toPlainText()
    assert text.startswith("# ") and len(text.splitlines()) >= 2
    assert Path(window.runner.executor.out_dir).exists()
