"""Sweep specs: the SPEC syntax, products and zips, items files, and every item checked before a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vdnodes.batch.manifest import Manifest
from vdnodes.batch.spec import build_sweep
from vdnodes.core.errors import GraphError, UserInputError
from vdnodes.core.graph import dump_graph, load_graph
from vdnodes.nodes import build_registry

ROOT = Path(__file__).resolve().parents[2]
DUAL = ROOT / "graphs" / "dual_guided.json"


@pytest.fixture(scope="module")
def registry():
    return build_registry()


@pytest.fixture()
def dual(registry):
    return load_graph(DUAL, registry)


def values(sweep, name):
    return [it.overrides[name] for it in sweep.items]


def test_spec_forms(dual, registry, tmp_path):
    (tmp_path / "prompts.txt").write_text("a red cat\n\na blue dog, sitting\n")
    for name in ("b.png", "a.png"):
        (tmp_path / name).write_bytes(b"x")
    s = build_sweep(dual, registry, sweeps=["seed=1,5,9"])
    assert values(s, "seed") == [1, 5, 9]
    assert values(build_sweep(dual, registry, sweeps=["seed=0:6:2"]), "seed") == [0, 2, 4, 6]
    assert values(build_sweep(dual, registry, sweeps=["sample.mix=0:1:0.25"]), "sample.mix") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert values(build_sweep(dual, registry, sweeps=[f"prompt=@{tmp_path}/prompts.txt"]), "prompt") == [
        "a red cat", "a blue dog, sitting"]
    files = values(build_sweep(dual, registry, sweeps=[f"image=@'{tmp_path}/*.png'"]), "image")
    assert [Path(f).name for f in files] == ["a.png", "b.png"] and all(Path(f).is_absolute() for f in files)


def test_several_sweeps_combine_as_a_product_or_zip(dual, registry):
    s = build_sweep(dual, registry, sweeps=["seed=1,2", "mix=0,0.5,1"])
    assert [tuple(it.overrides.values()) for it in s.items] == [(1, 0.0), (1, 0.5), (1, 1.0), (2, 0.0), (2, 0.5), (2, 1.0)]
    assert s.grid_shape() is not None and len(s.grid_shape()) == 2
    z = build_sweep(dual, registry, sweeps=["seed=1,2,3", "mix=0,0.5,1"], zip_axes=True)
    assert [tuple(it.overrides.values()) for it in z.items] == [(1, 0.0), (2, 0.5), (3, 1.0)]
    with pytest.raises(UserInputError, match="as many values each"):
        build_sweep(dual, registry, sweeps=["seed=1,2", "mix=0,1,0.5"], zip_axes=True)


def test_item_ids_are_stable_and_distinct(dual, registry):
    a = build_sweep(dual, registry, sweeps=["seed=1:4"])
    b = build_sweep(load_graph(DUAL, registry), registry, sweeps=["sample.seed=1:4"])  # same param, other name
    assert [i.id for i in a.items] == [i.id for i in b.items]
    assert len({i.id for i in a.items}) == 4
    assert build_sweep(dual, registry, sweeps=["seed=1:4"], seed=7).items[0].id != a.items[0].id


def test_graph_sweep_block_and_cli_override(registry, tmp_path):
    data = json.loads(DUAL.read_text())
    data["version"] = 2
    data["sweep"] = {"params": {"seed": [1, 2, 3], "mix": "0,1"}}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(data))
    g = load_graph(path, registry)
    assert len(build_sweep(g, registry).items) == 6
    s = build_sweep(g, registry, sweeps=["seed=7"])  # the CLI replaces the block's seed values
    assert values(s, "seed") == [7, 7]
    assert '"sweep"' in dump_graph(g)  # kept when the graph is saved


def test_sweep_block_is_schema_checked(registry, tmp_path):
    data = json.loads(DUAL.read_text())
    data["sweep"] = {"params": {"seed": {"from": 1}}}
    with pytest.raises(GraphError, match="sweep"):
        load_graph(data, registry)


def test_version_1_files_migrate_to_2(registry):
    g = load_graph(DUAL, registry)  # a version 1 file
    assert json.loads(dump_graph(g))["version"] == 2 and g.sweep == {}


def test_items_file_and_a_bad_item_is_named_before_anything_runs(dual, registry, tmp_path):
    lines = [json.dumps({"seed": i, "prompt": f"prompt {i}"}) for i in range(60)]
    lines[57] = json.dumps({"seed": 3, "mix": 1.5})
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserInputError) as e:
        build_sweep(dual, registry, items_file=str(items))
    msg = str(e.value)
    assert "item 57" in msg and "line 58" in msg and "mix=1.5" in msg and "above the maximum 1" in msg
    lines[57] = json.dumps({"seed": 3})
    items.write_text("\n".join(lines) + "\n")
    s = build_sweep(dual, registry, items_file=str(items), sweeps=["mix=0,1"])
    assert len(s.items) == 120 and s.items[3].overrides == {"seed": 1, "prompt": "prompt 1", "mix": 1.0}


@pytest.mark.parametrize(("spec", "needle"), [
    ("seed=a,b", "'a' is not a whole number"),
    ("nosuch.param=1", "no node 'nosuch'"),
    ("sample.nope=1", "has no param 'nope'"),
    ("mix=0:2:0.5", "above the maximum"),
    ("seed=5:1:1", "never goes from 5 to 1"),
    ("image=@'/nonexistent/*.jpg'", "no file matches"),
    ("prompt=@/nonexistent/values.txt", "cannot read the values file"),
])
def test_bad_specs_are_user_errors(dual, registry, spec, needle):
    with pytest.raises(UserInputError, match=needle):
        build_sweep(dual, registry, sweeps=[spec])


def test_cli_bad_item_is_exit_2_without_running(tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text('{"seed": 1}\n{"seed": 2}\n{"seed": -4}\n')
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "vdnodes", "run", str(DUAL), "--items", str(items),
                           "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "item 2" in proc.stderr and "seed=-4" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_manifest_skips_a_torn_line_and_needs_the_files(tmp_path):
    m = Manifest(tmp_path)
    (tmp_path / "a.png").write_bytes(b"a")
    m.append({"id": "a", "index": 0, "status": "ok", "files": ["a.png"]})
    m.append({"id": "b", "index": 1, "status": "ok", "files": ["b.png"]})  # its file is gone
    with open(m.path, "a") as f:
        f.write('{"id": "c", "status": "o')  # a crash mid-append
    m.append({"id": "d", "index": 3, "status": "failed", "files": [], "error": "boom"})
    assert [r["id"] for r in m.records()] == ["a", "b", "d"]
    assert m.done_ids() == {"a"}
    assert all(json.loads(line)["id"] for line in m.path.read_text().splitlines()[:2])


def test_grid_needs_one_or_two_swept_params(dual, registry, tmp_path):
    from vdnodes.batch.grid import grid_problem

    assert grid_problem(build_sweep(dual, registry, sweeps=["seed=1,2", "mix=0,1"])) is None
    three = build_sweep(dual, registry, sweeps=["seed=1,2", "mix=0,1", "prompt=a,b"])
    assert "one or two params" in grid_problem(three) and "3 swept params" in grid_problem(three)
    items = tmp_path / "items.jsonl"
    items.write_text('{"seed": 1}\n')
    assert "items list" in grid_problem(build_sweep(dual, registry, items_file=str(items)))
