"""The local runner on vd-nano: one shared cache, outputs named by item, resume, failures, Ctrl-C, grid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vdnodes.batch import events as bev
from vdnodes.batch.grid import LAYOUT_KEY, cell_at, write_grid
from vdnodes.batch.local import LocalBackend, run_sweep
from vdnodes.batch.manifest import Manifest
from vdnodes.batch.spec import build_sweep
from vdnodes.core import events as ev
from vdnodes.core.graph import load_graph, read_graph_data
from vdnodes.core.pngmeta import GRAPH_KEY, read_png_text
from vdnodes.nodes import build_registry_with_plugins
from vdnodes.nodes.runtime import build_executor

ROOT = Path(__file__).resolve().parents[2]
GRAPHS = ROOT / "graphs"
INPUTS = GRAPHS / "inputs"


@pytest.fixture(scope="module")
def registry():
    return build_registry_with_plugins()[0]


def vdnodes(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "vdnodes", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, **kw)


def outputs_in(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.suffix in (".png", ".txt") and not p.name.startswith("sweep"))


def test_32_seeds_encode_the_image_and_the_text_once(registry, tmp_path):
    graph = load_graph(GRAPHS / "dual_guided.json", registry)
    graph.nodes["sample"].params["steps"] = 2
    sweep = build_sweep(graph, registry, sweeps=["seed=0:31"])
    events: list = []
    summary = run_sweep(sweep, LocalBackend(build_executor(registry, out_dir=str(tmp_path))), str(tmp_path),
                        on_event=events.append)
    assert summary.status == "ok" and len(summary.done) == 32
    started = Counter(e.event.node_id for e in events
                      if isinstance(e, bev.ItemEvent) and isinstance(e.event, ev.NodeStarted))
    assert started["image_context"] == 1 and started["text_context"] == 1 and started["model"] == 1
    assert started["sample"] == started["decode"] == started["save"] == 32
    files = outputs_in(tmp_path)
    assert files == [f"dual_guided_item{i:04d}_00001.png" for i in range(32)]
    records = Manifest(tmp_path).records()
    assert [r["index"] for r in records] == list(range(32)) and {r["status"] for r in records} == {"ok"}
    assert len({r["id"] for r in records}) == 32
    r = records[5]
    assert r["overrides"] == {"seed": 5} and r["files"] == ["dual_guided_item0005_00001.png"]
    assert r["outputs"] == {"image": r["files"]} and r["seconds"] > 0 and r["error"] is None
    # Each PNG re-runs its own item: the embedded graph has the item's seed and no sweep.
    embedded = json.loads(read_png_text(tmp_path / r["files"][0])[GRAPH_KEY])
    assert embedded["nodes"]["sample"]["params"]["seed"] == 5 and "sweep" not in embedded
    # Seeds really differ, and item events carry the item's index and id.
    a, b = (np.asarray(Image.open(tmp_path / f)) for f in files[:2])
    assert not np.array_equal(a, b)
    item_event = next(e for e in events if isinstance(e, bev.ItemEvent) and e.index == 3)
    assert json.loads(item_event.to_json())["item_id"] == records[3]["id"]


def test_resume_force_and_a_failed_item(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("red_circle_on_blue.png", "white_square_on_black.png"):
        (photos / name).write_bytes((INPUTS / name).read_bytes())
    good = (INPUTS / "yellow_striped_triangle_on_green.png").read_bytes()
    (photos / "c_corrupt.png").write_bytes(good[:len(good) // 2])  # a truncated photo: valid header
    out = tmp_path / "out"
    args = ["run", str(GRAPHS / "sweep_photos.json"), "--sweep", f"image=@{photos}/*.png",
            "--set", "sample.steps=2", "--out", str(out)]
    first = vdnodes(*args)
    assert first.returncode == 1, first.stderr
    assert "1 failed" in first.stderr and "item 0:" in first.stderr and "c_corrupt.png" in first.stderr
    records = Manifest(out).records()
    assert [(r["index"], r["status"]) for r in records] == [(0, "failed"), (1, "ok"), (2, "ok")]
    assert "c_corrupt.png" in records[0]["error"] and records[0]["files"] == []
    assert len(outputs_in(out)) == 2
    # Fixed photo: the next run runs only that item; the others are done.
    (photos / "c_corrupt.png").write_bytes(good)
    second = vdnodes(*args)
    assert second.returncode == 0, second.stderr
    assert "1 ok, 0 failed, 2 done before" in second.stderr
    # A deleted output is not done any more.
    (out / Manifest(out).latest()[records[1]["id"]]["files"][0]).unlink()
    third = vdnodes(*args)
    assert "1 ok, 0 failed, 2 done before" in third.stderr, third.stderr
    forced = vdnodes(*args, "--force")
    assert "3 ok, 0 failed, 0 done before" in forced.stderr
    latest = Manifest(out).latest()
    assert len(latest) == 3 and all(r["status"] == "ok" and (out / r["files"][0]).is_file() for r in latest.values())
    table = (out / "sweep.csv").read_text().splitlines()
    assert table[0].startswith("index,id,status,image") and len(table) == 4


def test_ctrl_c_leaves_a_consistent_manifest_and_the_next_run_resumes(tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "vdnodes", "run", str(GRAPHS / "dual_guided.json"), "--sweep", "seed=1:8",
            "--set", "sample.steps=30", "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = out / "sweep.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (manifest.exists() and manifest.read_text().count("\n") >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "resume" in err
    records = Manifest(out).records()
    assert 2 <= len(records) < 8 and manifest.read_text().count("\n") == len(records)
    recorded = sorted(f for r in records for f in r["files"])
    assert outputs_in(out) == recorded  # no file of a half item
    assert not (out / ".sweep-staging").exists()
    again = vdnodes(*args[3:])
    assert again.returncode == 0, again.stderr
    assert f"{8 - len(records)} ok, 0 failed, {len(records)} done before" in again.stderr
    latest = Manifest(out).latest()
    assert len(Manifest(out).records()) == 8 and len(latest) == 8
    assert len(outputs_in(out)) == 8


def test_grid_sheet_is_labelled_and_reruns_the_sweep(registry, tmp_path):
    graph = load_graph(GRAPHS / "sweep_mix_focus.json", registry)
    graph.nodes["sample"].params["steps"] = 2
    sweep = build_sweep(graph, registry, sweeps=["focus=0,1", "mix=0,0.5,1"])
    run_sweep(sweep, LocalBackend(build_executor(registry, out_dir=str(tmp_path))), str(tmp_path))
    sheet = write_grid(sweep, Manifest(tmp_path).latest(), str(tmp_path), registry)
    cell = Image.open(next(tmp_path.glob("mix_focus_item0000_*.png")))
    with Image.open(sheet) as im:
        scale = max(1, -(-128 // max(cell.size)))
        assert im.width >= 3 * cell.width * scale and im.height >= 2 * cell.height * scale
        pixels = np.asarray(im.convert("RGB"))
    # The last cell holds the last item's image (enlarged): rows are focus, columns are mix.
    last = np.asarray(cell.convert("RGB"))
    assert pixels.std() > 10 and last.std() > 0
    data = read_graph_data(sheet)
    assert data["sweep"] == {"params": {"focus": [0.0, 1.0], "mix": [0.0, 0.5, 1.0]}}
    again = build_sweep(load_graph(sheet, registry), registry)
    assert [i.id for i in again.items] == [i.id for i in sweep.items]
    # The sheet records where its cells are: item 5 (row 1, column 2) is exactly there, and a click
    # at its centre maps to it (the canvas restores items this way); the gap between cells is no cell.
    layout = json.loads(read_png_text(sheet)[LAYOUT_KEY])
    assert (layout["rows"], layout["cols"]) == (2, 3)
    (w, h), pad = layout["cell"], layout["pad"]
    x0, y0 = layout["left"] + 2 * (w + pad), layout["top"] + 1 * (h + pad)
    item5 = Image.open(next(tmp_path.glob("mix_focus_item0005_*.png"))).convert("RGB")
    expected = np.asarray(item5.resize((w, h), Image.Resampling.NEAREST))
    assert np.array_equal(pixels[y0:y0 + h, x0:x0 + w], expected)
    assert cell_at(layout, x0 + w / 2, y0 + h / 2) == 5 and cell_at(layout, x0 - pad / 2, y0 + 1) is None


def test_text_outputs_go_into_the_manifest_and_the_table(tmp_path):
    out = tmp_path / "out"
    proc = vdnodes("run", str(GRAPHS / "image_to_text.json"), "--sweep",
                   f"image=@'{INPUTS}/*.png'", "--set", "sample.steps=2", "--out", str(out), "--json-events")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    n = len(list(INPUTS.glob("*.png")))  # one item per example input
    assert {e["item"] for e in events if e["event"] == "node_started"} == set(range(n))
    finished = [e for e in events if e["event"] == "item_finished"]
    assert len(finished) == n and all(e["item_id"] for e in finished)
    records = Manifest(out).records()
    texts = [r["texts"] for r in records]
    assert all(t and all(isinstance(s, str) for v in t.values() for s in v) for t in texts), texts
    table = (out / "sweep.csv").read_text()
    first_text = next(iter(texts[0].values()))[0]
    assert first_text in table


def test_example_sweep_graphs_run(tmp_path):
    grid = vdnodes("run", str(GRAPHS / "sweep_mix_focus.json"), "--set", "sample.steps=1", "--grid",
                   "--out", str(tmp_path / "grid"))
    assert grid.returncode == 0, grid.stderr
    assert len(Manifest(tmp_path / "grid").records()) == 25 and list((tmp_path / "grid").glob("sweep_grid_*.png"))
    photos = vdnodes("run", str(GRAPHS / "sweep_photos.json"), "--set", "sample.steps=1", "--out", str(tmp_path / "p"))
    assert photos.returncode == 0, photos.stderr
    assert len(outputs_in(tmp_path / "p")) == len(list(INPUTS.glob("*.png")))
