"""Bad input gives a clear message naming the node and exit code 2, before weights load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "vdnodes", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def graph_with(tmp_path: Path, name: str, **changes) -> Path:
    data = json.loads((ROOT / "graphs" / f"{name}.json").read_text())
    for ref, value in changes.items():
        nid, param = ref.split("__")
        data["nodes"][nid].setdefault("params", {})[param] = value
    for spec in data["nodes"].values():  # keep it quick
        if spec["type"] == "vd.denoise":
            spec["params"]["steps"] = 2
    out = tmp_path / f"{name}.json"
    out.write_text(json.dumps(data))
    return out


def events(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_missing_image_fails_before_any_node_runs(tmp_path):
    g = graph_with(tmp_path, "image_variation", image__path="no/such.png")
    p = run("run", str(g), "--json-events", "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "node 'image'" in p.stderr and "not found" in p.stderr
    assert not [e for e in events(p) if e["event"] == "node_started"]
    v = run("validate", str(g))
    assert v.returncode == 2 and "not found" in v.stderr


def test_corrupt_and_non_image_files(tmp_path):
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes((ROOT / "graphs/inputs/red_circle_on_blue.png").read_bytes()[:40])
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    for bad in (corrupt, text):
        p = run("run", str(graph_with(tmp_path, "image_to_text", image__path=str(bad))))
        assert p.returncode == 2 and "node 'image'" in p.stderr, p.stderr
        assert "not an image file" in p.stderr or "cannot read image" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr


def test_empty_prompt_is_refused_naming_the_node(tmp_path):
    p = run("run", str(graph_with(tmp_path, "text_to_image", prompt__text="   ")), "--out", str(tmp_path / "o"))
    assert p.returncode == 2, p.stderr
    assert "node 'context'" in p.stderr and "prompt is empty" in p.stderr


def test_over_long_prompt_is_truncated_with_a_warning(tmp_path):
    long = " ".join(["a red circle on a blue background"] * 20)
    p = run("run", str(graph_with(tmp_path, "text_to_image", prompt__text=long)), "--out", str(tmp_path / "o"))
    assert p.returncode == 0, p.stderr
    assert "warning: node 'context'" in p.stderr and "truncated" in p.stderr


def test_context_of_the_wrong_modality_is_refused(tmp_path):
    data = json.loads((ROOT / "graphs" / "disentangle.json").read_text())
    data["nodes"]["prompt"] = {"type": "vd.text", "params": {"text": "a red circle"}}
    data["nodes"]["text_context"] = {"type": "vd.encode_text",
                                     "inputs": {"model": ["model", "model"], "text": ["prompt", "text"]}}
    data["nodes"]["semantic_focus"]["inputs"]["context"] = ["text_context", "context"]
    g = tmp_path / "g.json"
    g.write_text(json.dumps(data))
    p = run("validate", str(g))
    assert p.returncode == 2
    assert "node 'semantic_focus'" in p.stderr
    assert "Context[text] cannot feed Context[image]" in p.stderr


def test_missing_model_file_is_refused(tmp_path):
    p = run("validate", str(graph_with(tmp_path, "text_to_image", model__source="weights/none.safetensors")))
    assert p.returncode == 2 and "node 'model'" in p.stderr and "not found" in p.stderr
