"""Bypassed nodes (``"bypass": true``): the CLI and the executor pass a fitting input through,
refuse a node that has none with the reason, and keep the flag in saved graphs and PNGs."""

from __future__ import annotations

import json

from PIL import Image

from vdnodes.core.graph import dump_graph, load_graph
from vdnodes.core.pngmeta import GRAPH_KEY, read_png_text
from vdnodes.nodes import build_registry

from tests.cli.test_cli import INPUTS, assert_user_error, image_graph, vdnodes, write_graph


def test_a_bypassed_resize_passes_its_image_through(tmp_path):
    graph = image_graph(tmp_path / "g.json")
    data = json.loads(graph.read_text())
    data["nodes"]["small"]["bypass"] = True
    graph.write_text(json.dumps(data))
    proc = vdnodes("run", str(graph), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    (png,) = (tmp_path / "out").glob("t_*.png")
    assert Image.open(png).size == Image.open(INPUTS / "red_circle_on_blue.png").size  # not 32x16
    embedded = json.loads(read_png_text(png)[GRAPH_KEY])
    assert embedded["nodes"]["small"]["bypass"] is True  # the PNG keeps the graph as written
    data["nodes"]["small"]["bypass"] = False
    graph.write_text(json.dumps(data))
    assert vdnodes("run", str(graph), "--out", str(tmp_path / "out2")).returncode == 0
    (png,) = (tmp_path / "out2").glob("t_*.png")
    assert Image.open(png).size == (32, 16)


def test_two_bypassed_nodes_in_a_row_and_a_graph_output_through_them(tmp_path):
    registry = build_registry()
    nodes = {
        "img": {"type": "vd.load_image", "params": {"path": str(INPUTS / "red_circle_on_blue.png")}},
        "a": {"type": "image.resize", "params": {"width": 8, "height": 8}, "inputs": {"image": ["img", "image"]},
              "bypass": True},
        "b": {"type": "image.resize", "params": {"width": 16, "height": 16}, "inputs": {"image": ["a", "image"]},
              "bypass": True},
    }
    graph = load_graph(json.loads(write_graph(tmp_path / "g.json", nodes, outputs={"out": "b.image"})
                                  .read_text()), registry)
    from vdnodes.core.executor import Executor

    result = Executor(registry, out_dir=str(tmp_path)).run(graph)
    assert result.executed == ["img"]
    assert tuple(result.outputs["out"].shape[-2:]) == Image.open(INPUTS / "red_circle_on_blue.png").size[::-1]
    assert '"bypass": true' in dump_graph(graph)


def test_a_node_with_nothing_to_pass_through_is_refused_with_the_reason(tmp_path):
    graph = write_graph(tmp_path / "g.json", {
        "prompt": {"type": "vd.text", "params": {"text": "a red circle"}},
        "model": {"type": "vd.load_model"},
        "enc": {"type": "vd.encode_text", "inputs": {"model": ["model", "model"], "text": ["prompt", "text"]},
                "bypass": True},
    })
    proc = vdnodes("validate", str(graph))
    assert_user_error(proc, "cannot bypass enc", "output 'context'")


def test_bypass_must_be_a_boolean(tmp_path):
    graph = image_graph(tmp_path / "g.json")
    data = json.loads(graph.read_text())
    data["nodes"]["small"]["bypass"] = "yes"
    graph.write_text(json.dumps(data))
    assert_user_error(vdnodes("validate", str(graph)), "small", "bypass")
