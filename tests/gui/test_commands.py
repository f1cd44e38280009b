"""Document + commands + editor without a view: every edit undoes and redoes to identical JSON."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtGui import QUndoStack

from vdnodes.core.graph import dump_graph, load_graph

from vdnodes_gui.document import GraphDocument, NodeState
from vdnodes_gui.editor import Editor

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ed(qapp, registry):
    return Editor(GraphDocument(registry), QUndoStack())


def build_small(ed: Editor) -> dict[str, str]:
    ids = {"model": ed.add_node("vd.load_model", (0, 0)),
           "text": ed.add_node("vd.text", (0, 200)),
           "enc": ed.add_node("vd.encode_text", (300, 100)),
           "den": ed.add_node("vd.denoise", (600, 100)),
           "dec": ed.add_node("vd.decode_image", (900, 100))}
    for src, out, dst, name in [("model", "model", "enc", "model"), ("text", "text", "enc", "text"),
                                ("model", "model", "den", "model"), ("enc", "context", "den", "context"),
                                ("den", "latent", "dec", "latent"), ("model", "model", "dec", "model")]:
        assert ed.connect(ids[src], out, ids[dst], name) is None
    return ids


def test_every_step_undoes_and_redoes_to_identical_json(ed):
    doc, undo = ed.doc, ed.undo
    states = [doc.to_json()]

    def step(fn, *args, **kw):
        fn(*args, **kw)
        states.append(doc.to_json())

    step(ed.add_node, "vd.load_model", (0, 0))
    step(ed.add_node, "vd.text", (0, 200))
    step(ed.add_node, "vd.encode_text", (300, 100))
    step(ed.connect, "load_model", "model", "encode_text", "model")
    step(ed.connect, "text", "text", "encode_text", "text")
    step(ed.set_param, "text", "text", "a red circle")
    step(ed.move, {"text": (10, 260)}, ed.new_gesture())
    step(ed.disconnect, "encode_text", "model")
    step(ed.remove, ["text"])
    assert undo.count() == len(states) - 1
    assert len(set(states)) == len(states)  # every step changed the file
    for i in range(len(states) - 1, 0, -1):
        undo.undo()
        assert doc.to_json() == states[i - 1], undo.text(i - 1)
    for i in range(1, len(states)):
        undo.redo()
        assert doc.to_json() == states[i]
    assert "Connect text.text -> encode_text.text" in [undo.text(i) for i in range(undo.count())]


def test_removing_nodes_takes_their_links_and_graph_io_and_undo_restores_them(ed, registry):
    graph = load_graph(ROOT / "graphs" / "dual_guided.json", registry)
    ed.doc.replace(graph, None)
    before = ed.doc.to_json()
    ed.remove(["image", "model"])
    assert "image" not in ed.doc.graph.nodes and "image" not in ed.doc.graph.inputs
    assert all(link.node not in ("image", "model") for _, _, link in ed.doc.links())
    assert ed.undo.count() == 1
    ed.undo.undo()
    assert ed.doc.to_json() == before


def test_a_drag_is_one_undo_step(ed):
    nid = ed.add_node("vd.text", (0, 0))
    g1 = ed.new_gesture()
    for x in (5, 10, 40, 80):
        ed.move({nid: (x, x / 2)}, g1)
    ed.move({nid: (200, 0)}, ed.new_gesture())
    assert ed.undo.count() == 3  # add, drag 1, drag 2
    ed.undo.undo()
    assert ed.doc.pos(nid) == (80, 40)
    ed.undo.undo()
    assert ed.doc.pos(nid) == (0, 0)


def test_typing_merges_into_one_step_but_separate_edits_do_not(ed):
    nid = ed.add_node("vd.text", (0, 0))
    for text in ("a", "a r", "a red"):
        ed.set_param(nid, "text", text, merge=True)
    ed.set_param(nid, "split_lines", True)
    assert ed.undo.count() == 3
    ed.undo.undo()
    ed.undo.undo()
    assert ed.doc.graph.nodes[nid].params["text"] == ""


def test_incompatible_links_are_refused_with_the_reason(ed):
    ids = build_small(ed)
    refused = []
    ed.refused.connect(refused.append)
    count = ed.undo.count()
    why = ed.connect(ids["text"], "text", ids["dec"], "latent")
    assert why and "Text cannot feed Latent[image]" in why
    # A text latent cannot feed the image decoder: the denoiser's type follows its 'output' param.
    ed.disconnect(ids["dec"], "latent")
    ed.set_param(ids["den"], "output", "text")
    why = ed.connect(ids["den"], "latent", ids["dec"], "latent")
    assert "Latent[text] cannot feed Latent[image]" in why and "kinds differ" in why
    why = ed.connect(ids["den"], "latent", ids["dec"], "model")
    assert why and "Latent[text] cannot feed VDModel: the types differ" in why
    assert len(refused) == 3 and refused[-1] == why
    assert ed.undo.count() == count + 2  # only the disconnect and the param change


def test_links_that_would_make_a_cycle_are_refused(ed, registry):
    a = ed.add_node("image.resize", (0, 0))
    b = ed.add_node("image.resize", (300, 0))
    assert ed.connect(a, "image", b, "image") is None
    why = ed.connect(b, "image", a, "image")
    assert why and "cycle" in why
    assert ed.connect(a, "image", a, "image") == "a node cannot feed itself"


def test_out_of_range_params_are_refused(ed):
    nid = ed.add_node("vd.denoise", (0, 0))
    why = ed.set_param(nid, "steps", 0)
    assert why and "below the minimum" in why
    assert ed.doc.graph.nodes[nid].params["steps"] == 50
    assert ed.set_param(nid, "guidance", 5) is None  # an int for a Float param is coerced
    assert ed.doc.graph.nodes[nid].params["guidance"] == 5.0


def test_paste_gives_new_ids_and_keeps_links_among_the_copies(ed):
    ids = build_small(ed)
    data = ed.copy_nodes([ids["enc"], ids["den"], ids["text"]])
    before = set(ed.doc.graph.nodes)
    new = ed.paste_nodes(data)
    assert len(new) == 3 and not set(new) & before
    spec = {nid: ed.doc.graph.nodes[nid] for nid in new}
    enc2 = next(n for n in new if spec[n].type == "vd.encode_text")
    den2 = next(n for n in new if spec[n].type == "vd.denoise")
    assert ed.doc.link(den2, "context").node == enc2  # internal link follows the copies
    assert ed.doc.link(den2, "model") is None  # the model was not copied
    assert ed.doc.pos(enc2) == (ed.doc.pos(ids["enc"])[0] + 40, ed.doc.pos(ids["enc"])[1] + 40)
    again = ed.paste_nodes(data)
    assert not set(again) & set(new)
    ed.undo.undo()
    ed.undo.undo()
    assert set(ed.doc.graph.nodes) == before


def test_edits_mark_the_node_and_its_descendants_stale(ed):
    ids = build_small(ed)
    for nid in ed.doc.graph.nodes:
        ed.doc.set_status(nid, state=NodeState.DONE)
    ed.set_param(ids["text"], "text", "a blue square")
    stale = {n for n, s in ed.doc.status.items() if s.state is NodeState.STALE}
    assert stale == {ids["text"], ids["enc"], ids["den"], ids["dec"]}
    assert ed.doc.status[ids["model"]].state is NodeState.DONE


def test_new_ids_are_stable_readable_strings(ed):
    assert ed.add_node("vd.denoise", (0, 0)) == "denoise"
    assert ed.add_node("vd.denoise", (0, 0)) == "denoise_2"
    data = dump_graph(ed.doc.graph)
    assert '"denoise_2"' in data
