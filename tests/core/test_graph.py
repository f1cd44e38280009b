"""Graph files: validation reports every problem by node; migration; canonical, atomic save."""

from __future__ import annotations

import json

import pytest

from tests.core.toy import chain_graph, graph_dict, toy_registry
from vdnodes.core.errors import GraphError, UserInputError
from vdnodes.core.graph import dump_graph, load_graph, save_graph, to_digraph


@pytest.fixture()
def reg():
    return toy_registry()


def problems_of(data, reg):
    with pytest.raises(GraphError) as info:
        load_graph(data, reg)
    return info.value.problems


def test_valid_graph_loads_with_defaults_filled(reg):
    g = load_graph(chain_graph(), reg)
    assert g.nodes["rnd"].params == {"seed": 7, "high": 1000}
    assert g.nodes["a"].version == "1.0.0"
    dig = to_digraph(g)
    assert set(dig.predecessors("sum")) == {"a", "b"}


def test_every_problem_is_reported_at_once_with_its_node(reg):
    data = graph_dict({
        "a": {"type": "toy.const", "params": {"value": 500}},  # out of range
        "b": {"type": "toy.cnost"},  # typo
        "s": {"type": "toy.add", "inputs": {"a": ["a", "valeu"]}},  # bad output, missing b
        "t": {"type": "toy.scale", "params": {"tims": 2}, "inputs": {"x": ["nowhere", "y"]}},
        "u": {"type": "toy.scale", "inputs": {"x": ["txt", "text"]}},  # type mismatch
        "txt": {"type": "toy.text"},
    }, outputs={"r": "zz.y"})
    probs = problems_of(data, reg)
    by_node = {}
    for p in probs:
        by_node.setdefault(p.where, []).append(p.message + " " + p.hint)
    assert "above the maximum 100" in by_node["a"][0] and "[-100, 100]" in by_node["a"][0]
    assert "unknown node type 'toy.cnost'" in by_node["b"][0] and "did you mean 'toy.const'" in by_node["b"][0]
    s = " ".join(by_node["s"])
    assert "no output 'valeu'" in s and "did you mean 'value'" in s and "required input 'b'" in s
    t = " ".join(by_node["t"])
    assert "unknown param 'tims'" in t and "'times'" in t and "missing node 'nowhere'" in t
    assert "Text cannot feed Int" in " ".join(by_node["u"])
    assert "missing node 'zz'" in " ".join(by_node["graph.outputs.r"])


def test_cycle_is_reported_naming_nodes(reg):
    data = graph_dict({
        "x": {"type": "toy.scale", "inputs": {"x": ["y", "y"]}},
        "y": {"type": "toy.scale", "inputs": {"x": ["x", "y"]}},
    })
    (p,) = problems_of(data, reg)
    assert "cycle" in p.message and "x" in p.message and "y" in p.message


def test_schema_problems_name_the_node(reg):
    data = graph_dict({"a": {"type": "toy.const", "inputs": {"q": ["only-one"]}, "colour": 1}})
    probs = problems_of(data, reg)
    assert all(p.where == "a" for p in probs)
    text = " ".join(p.message for p in probs)
    assert "colour" in text and "too short" in text


def test_wrong_format_and_newer_version_are_rejected(reg):
    with pytest.raises(GraphError, match="'format' must be"):
        load_graph({"nodes": {}}, reg)
    with pytest.raises(GraphError, match="newer than this vdnodes"):
        load_graph({"format": "vdnodes.graph", "version": 99, "nodes": {}}, reg)


def test_old_node_version_migrates_and_runs(reg):
    from vdnodes.core.executor import Executor

    data = chain_graph()
    data["nodes"]["double"] = {"type": "toy.scale", "version": "1.0.0", "params": {"factor": 3},
                               "inputs": {"x": ["sum", "sum"]}}
    g = load_graph(data, reg)
    assert g.nodes["double"].version == "2.0.0" and g.nodes["double"].params == {"times": 3}
    assert Executor(reg).run(g).outputs["result"] == 15


def test_old_file_format_migrates(reg):
    # Format 0 (a hypothetical earlier layout) stored links as "node.output" strings.
    def from_0(data):
        for spec in data["nodes"].values():
            spec["inputs"] = {k: v.split(".") for k, v in spec.get("inputs", {}).items()}
        return data

    reg.add_file_migration(0, from_0)
    data = chain_graph()
    data["version"] = 0
    for spec in data["nodes"].values():
        if "inputs" in spec:
            spec["inputs"] = {k: ".".join(v) for k, v in spec["inputs"].items()}
    g = load_graph(data, reg)
    assert g.nodes["sum"].inputs["a"].node == "a"


def test_node_saved_by_newer_version_is_an_error(reg):
    data = graph_dict({"a": {"type": "toy.const", "version": "3.0.0"}})
    (p,) = problems_of(data, reg)
    assert p.where == "a" and "newer than the installed" in p.message


def test_save_open_save_is_byte_identical_and_canonical(reg, tmp_path):
    g = load_graph(chain_graph(), reg)
    first = tmp_path / "g.json"
    save_graph(g, first)
    g2 = load_graph(first, reg)
    second = tmp_path / "g2.json"
    save_graph(g2, second)
    assert first.read_bytes() == second.read_bytes()
    text = first.read_text()
    assert text == dump_graph(g2) and text.endswith("\n")
    data = json.loads(text)
    assert list(data) == sorted(data)  # sorted keys
    assert data["ui"] == {"a": {"pos": [0, 0]}}  # the editor block is kept untouched
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


def test_atomic_save_keeps_old_file_when_writing_fails(reg, tmp_path, monkeypatch):
    import os

    target = tmp_path / "g.json"
    target.write_text("old")
    g = load_graph(chain_graph(), reg)

    def broken_replace(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_graph(g, target)
    assert target.read_text() == "old"
    assert not list(tmp_path.glob(".*.tmp"))


def test_file_errors_are_user_errors(reg, tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        load_graph(tmp_path / "nope.json", reg)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "vdnodes.graph",\n "nodes": {,}}')
    with pytest.raises(UserInputError, match="not valid JSON.*line 2"):
        load_graph(bad, reg)
    binary = tmp_path / "x.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserInputError, match="not a text file"):
        load_graph(binary, reg)


def test_png_without_graph_is_explained(reg, tmp_path):
    from PIL import Image

    p = tmp_path / "plain.png"
    Image.new("RGB", (4, 4)).save(p)
    with pytest.raises(UserInputError, match="without an embedded vdnodes graph"):
        load_graph(p, reg)


def test_png_with_embedded_graph_loads(reg, tmp_path):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("vdnodes.graph", json.dumps(chain_graph()), zip=True)
    p = tmp_path / "made.png"
    Image.new("RGB", (4, 4)).save(p, pnginfo=info)
    g = load_graph(p, reg)
    assert set(g.nodes) == {"a", "b", "sum", "double", "rnd"}
