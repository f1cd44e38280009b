"""The command line as a user meets it: exit codes, one-paragraph errors, outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INPUTS = ROOT / "graphs" / "inputs"


def vdnodes(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "vdnodes", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def write_graph(path: Path, nodes: dict, **extra) -> Path:
    path.write_text(json.dumps({"format": "vdnodes.graph", "version": 1, "nodes": nodes, **extra}))
    return path


def image_graph(path: Path, **overrides) -> Path:
    nodes = {
        "img": {"type": "vd.load_image", "params": {"path": str(INPUTS / "red_circle_on_blue.png")}},
        "small": {"type": "image.resize", "params": {"width": 32, "height": 16},
                  "inputs": {"image": ["img", "image"]}},
        "save": {"type": "vd.save_image", "params": {"prefix": "t"}, "inputs": {"image": ["small", "image"]}},
    }
    nodes.update(overrides)
    return write_graph(path, nodes)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert n in proc.stderr, proc.stderr


def test_help_does_not_import_torch():
    code = "import sys, vdnodes.cli, vdnodes.nodes; vdnodes.nodes.build_registry(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
    assert vdnodes("--help").returncode == 0


def test_validate_checks_a_nano_graph_without_importing_torch():
    # validate computes the model node's fingerprint (the weights file's path, size, mtime):
    # that must not import torch and transformers (6-7 s on a 2-core CPU).
    code = ("import sys; from vdnodes.cli import main; rc = main(['validate', 'graphs/i2t2i_edit.json']); "
            "print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "0 False", out.stdout + out.stderr


def test_run_preloads_model_code_only_for_model_graphs_and_leaves_gc_on():
    # Graphs without a VDModel socket are left to import what they need, lazily.
    code = ("import sys, gc; from vdnodes.nodes.models import preload_model_code; "
            "from vdnodes.nodes import build_registry; "
            "from vdnodes.core.graph import load_graph; reg = build_registry(); "
            "print(preload_model_code(load_graph('graphs/hello.json', reg), reg), "
            "'transformers' in sys.modules, gc.isenabled())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "False False True", out.stdout + out.stderr

    import gc

    from vdnodes.core.graph import load_graph
    from vdnodes.nodes import build_registry
    from vdnodes.nodes.models import preload_model_code

    registry = build_registry()
    graph = load_graph(ROOT / "graphs" / "text_to_image.json", registry)
    frozen = gc.get_freeze_count()
    assert preload_model_code(graph, registry)  # in-process: the collector is left as it was
    assert "transformers" in sys.modules and gc.isenabled() and gc.get_freeze_count() == frozen
    try:
        # The console command's own process (``vdnodes run``) freezes what the imports allocated.
        assert preload_model_code(graph, registry, freeze=True)
        assert gc.isenabled()
        assert gc.get_freeze_count() > frozen  # what the imports allocated sits outside the scans
    finally:
        gc.unfreeze()


def test_run_writes_png_that_reproduces_itself(tmp_path):
    g = image_graph(tmp_path / "g.json")
    p = vdnodes("run", str(g), "--out", str(tmp_path / "o"))
    assert p.returncode == 0, p.stderr
    png = tmp_path / "o" / "t_00001.png"
    from PIL import Image

    assert Image.open(png).size == (32, 16)
    # The PNG carries its graph: running it again writes an identical image next to it.
    p2 = vdnodes("run", str(png), "--out", str(tmp_path / "o2"))
    assert p2.returncode == 0, p2.stderr
    assert (tmp_path / "o2" / "t_00001.png").exists()
    a = Image.open(png).tobytes()
    assert a == Image.open(tmp_path / "o2" / "t_00001.png").tobytes()
    shown = vdnodes("graph-from-png", str(png))
    assert json.loads(shown.stdout)["nodes"]["small"]["params"]["width"] == 32


def test_saving_never_overwrites(tmp_path):
    g = image_graph(tmp_path / "g.json")
    for _ in range(2):
        assert vdnodes("run", str(g), "--out", str(tmp_path / "o")).returncode == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["t_00001.png", "t_00002.png"]


def test_set_overrides_a_param_and_bad_values_are_exit_2(tmp_path):
    g = image_graph(tmp_path / "g.json")
    ok = vdnodes("run", str(g), "--out", str(tmp_path / "o"), "--set", "small.width=20")
    assert ok.returncode == 0, ok.stderr
    from PIL import Image

    assert Image.open(tmp_path / "o" / "t_00001.png").size == (20, 16)
    assert_user_error(vdnodes("run", str(g), "--set", "small.width=2"), "below the minimum 8")
    assert_user_error(vdnodes("run", str(g), "--set", "small.widht=20"), "did you mean 'width'")
    assert_user_error(vdnodes("run", str(g), "--set", "small.width=abc"), "not a whole number")
    assert_user_error(vdnodes("run", str(g), "--set", "nowhere"), "expected NODE.PARAM=VALUE")
    assert_user_error(vdnodes("run", str(g), "--set", "nowhere.x=1"), "no node 'nowhere'")


def test_json_events_are_one_object_per_line(tmp_path):
    g = image_graph(tmp_path / "g.json")
    p = vdnodes("run", str(g), "--out", str(tmp_path / "o"), "--json-events")
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_started" and "run_finished" in kinds and kinds[-1] == "outputs"
    assert kinds.count("node_finished") == 3


def test_a_model_run_exits_fast_with_every_line_and_file_out(tmp_path):
    # With torch loaded the command skips Python's slow finalisation (cli.entry): nothing
    # buffered may be lost (the error exit codes after torch: test_unavailable_device_...).
    graph = str(ROOT / "graphs" / "text_variation.json")
    p = vdnodes("run", graph, "--out", str(tmp_path / "o"), "--set", "sample.steps=2", "--json-events")
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    assert events[-1]["event"] == "outputs" and [e["event"] for e in events].count("node_finished") == 6
    assert (tmp_path / "o" / "text_variation_00001.txt").read_text().strip()


@pytest.mark.parametrize("case,needles", [
    ("cycle", ["cycle", "'a'"]),
    ("unknown_type", ["small", "unknown node type 'image.resise'", "did you mean 'image.resize'"]),
    ("bad_link", ["small", "missing node 'imgg'", "did you mean 'img'"]),
    ("out_of_range", ["small", "'width'", "above the maximum 4096"]),
])
def test_invalid_graphs_exit_2_naming_the_node(tmp_path, case, needles):
    nodes = {
        "cycle": {"a": {"type": "image.resize", "inputs": {"image": ["b", "image"]}},
                  "b": {"type": "image.resize", "inputs": {"image": ["a", "image"]}}},
        "unknown_type": {"small": {"type": "image.resise"}},
        "bad_link": {"small": {"type": "image.resize", "inputs": {"image": ["imgg", "image"]}}},
        "out_of_range": {"small": {"type": "image.resize", "params": {"width": 10**6},
                                   "inputs": {"image": ["img", "image"]}}},
    }[case]
    g = image_graph(tmp_path / "g.json", **nodes)
    for cmd in ("run", "validate"):
        assert_user_error(vdnodes(cmd, str(g)), *needles)


def test_type_mismatch_is_exit_2(tmp_path):
    g = write_graph(tmp_path / "g.json", {
        "t": {"type": "vd.text", "params": {"text": "hi"}},
        "r": {"type": "image.resize", "inputs": {"image": ["t", "text"]}},
    })
    assert_user_error(vdnodes("validate", str(g)), "'r'", "Text cannot feed Image")


def test_malformed_json_and_missing_file_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    assert_user_error(vdnodes("run", str(bad)), "not valid JSON", "line 1")
    assert_user_error(vdnodes("run", str(tmp_path / "missing.json")), "not found")
    assert_user_error(vdnodes("validate", str(tmp_path)), "is a folder")


def test_missing_and_corrupt_image_files_exit_2_naming_the_node(tmp_path):
    g = image_graph(tmp_path / "g.json", img={"type": "vd.load_image", "params": {"path": "nope.png"}})
    assert_user_error(vdnodes("run", str(g), "--out", str(tmp_path / "o")), "'img'", "not found")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    g = image_graph(tmp_path / "g2.json", img={"type": "vd.load_image", "params": {"path": str(junk)}})
    assert_user_error(vdnodes("run", str(g), "--out", str(tmp_path / "o")), "'img'")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    g = image_graph(tmp_path / "g3.json", img={"type": "vd.load_image", "params": {"path": str(text)}})
    assert_user_error(vdnodes("run", str(g), "--out", str(tmp_path / "o")), "not an image file")


def test_unavailable_device_is_a_user_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    g = image_graph(tmp_path / "g.json")
    assert_user_error(vdnodes("run", str(g), "--device", "cuda"), "CUDA is not available")


def test_nodes_listing_formats():
    plain = vdnodes("nodes")
    assert plain.returncode == 0 and "vd.load_image" in plain.stdout
    listed = json.loads(vdnodes("nodes", "--json").stdout)
    ids = {d["id"] for d in listed}
    assert {"vd.load_image", "vd.save_image", "image.resize"} <= ids
    md = vdnodes("nodes", "--markdown").stdout
    assert md.startswith("# Node reference") and "`vd.save_image`" in md


def test_validate_reports_output_types():
    p = vdnodes("validate", "graphs/hello.json")
    assert p.returncode == 0, p.stderr
    assert "output files: List[Path]" in p.stdout
