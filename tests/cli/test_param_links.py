"""Params linked like inputs: a value node drives a param of another node, in the CLI and the
executor; a link that does not fit the param is refused at validation with the reason."""

from __future__ import annotations

from PIL import Image

from tests.cli.test_cli import INPUTS, assert_user_error, vdnodes, write_graph


def graph_with_linked_size(path, size_node):
    return write_graph(path, {
        "size": size_node,
        "img": {"type": "vd.load_image", "params": {"path": str(INPUTS / "red_circle_on_blue.png")}},
        "small": {"type": "image.resize", "params": {"width": 300, "height": 300},
                  "inputs": {"image": ["img", "image"], "width": ["size", "value"], "height": ["size", "value"]}},
        "save": {"type": "vd.save_image", "params": {"prefix": "t"}, "inputs": {"image": ["small", "image"]}},
    })


def test_an_integer_node_drives_two_params(tmp_path):
    graph = graph_with_linked_size(tmp_path / "g.json", {"type": "value.int", "params": {"value": 24}})
    proc = vdnodes("run", str(graph), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    (png,) = (tmp_path / "out").glob("t_*.png")
    assert Image.open(png).size == (24, 24)  # the linked value, not the params' own 300
    proc = vdnodes("run", str(graph), "--out", str(tmp_path / "out"), "--set", "size.value=40")
    assert proc.returncode == 0, proc.stderr
    assert sorted(Image.open(p).size for p in (tmp_path / "out").glob("t_*.png")) == [(24, 24), (40, 40)]


def test_a_link_that_does_not_fit_the_param_is_refused(tmp_path):
    graph = graph_with_linked_size(tmp_path / "g.json", {"type": "value.string", "params": {"value": "big"}})
    assert_user_error(vdnodes("validate", str(graph)), "param 'width' from size.value",
                      "String does not fit a Int param")


def test_a_linked_value_out_of_the_params_range_fails_the_node_with_the_reason(tmp_path):
    graph = graph_with_linked_size(tmp_path / "g.json", {"type": "value.int", "params": {"value": 2}})
    proc = vdnodes("run", str(graph), "--out", str(tmp_path / "out"))
    assert_user_error(proc, "param 'width' from size.value", "below the minimum 8")
