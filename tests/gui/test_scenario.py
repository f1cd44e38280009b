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
    assert sorted(p.name for p in (tmp_path / "out").glob("scenario_*.png")) == \
        ["scenario_00001.png", "scenario_00002.png", "scenario_00003.png"]
