"""The example plugin as users get it: pip-installed (`make install-dev`), found by its entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRAPH = ROOT / "graphs" / "plugin_minimal.json"

pytestmark = pytest.mark.skipif(
    "minimal" not in {ep.name for ep in entry_points(group="vdnodes.plugins")},
    reason="the example plugin is not installed (make install-dev: pip install --no-deps -e plugins/minimal)")


def vdnodes(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDNODES_")}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "vdnodes", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_installed_plugin_is_found_by_its_entry_point():
    proc = vdnodes("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    (minimal,) = [p for p in json.loads(proc.stdout)["plugins"] if p["name"] == "minimal"]
    assert minimal["status"] == "loaded", minimal["reason"]
    assert minimal["origin"].startswith("entry point minimal = vdnodes_minimal (vdnodes-minimal ")
    assert minimal["adds"]["nodes"] == ["minimal.invert_image"]


def test_its_example_graph_runs_from_the_command_line(tmp_path):
    from PIL import Image, ImageChops

    proc = vdnodes("run", str(GRAPH), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    (png,) = tmp_path.glob("inverted_*.png")
    with Image.open(ROOT / "graphs" / "inputs" / "red_circle_on_blue.png") as src, Image.open(png) as out:
        want = ImageChops.invert(src.convert("RGB"))
        diff = ImageChops.difference(want, out.convert("RGB")).getextrema()
    assert max(hi for _, hi in diff) <= 1  # 255 - v, up to rounding
    # Safe mode: the same graph is refused, and the message says plugins are off.
    off = vdnodes("validate", str(GRAPH), "--no-plugins")
    assert off.returncode == 2 and "unknown node type 'minimal.invert_image'" in off.stderr
    assert "plugins are off" in off.stderr
