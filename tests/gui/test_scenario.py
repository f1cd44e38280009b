"""scripts/scenario.py, the scripted user scenario, runs to its end offscreen (a real process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_user_scenario_runs_through(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "scenario.py"), "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("scenario ok")
    assert "re-run: only resize, save_image ran; load_image from the cache" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "out").glob("scenario_0*.png")) == \
        ["scenario_00001.png", "scenario_00002.png", "scenario_00003.png"]
    assert "run a 3 x 3 sweep: sweep ok" in proc.stdout and "9 ok, 0 failed" in proc.stdout
    assert len(list((tmp_path / "out").glob("scenario_item00*_00001.png"))) == 9
    assert len(list((tmp_path / "out").glob("sweep_grid_*.png"))) == 1
    assert "clicked the centre cell: resize is now 48 x 48" in proc.stdout
