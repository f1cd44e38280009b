"""benchmarks/gpu.py runs every section in --smoke mode (tiny configs, CPU): the GPU run is one command.

Speed figures are not asserted here (RULES: speed lives in benchmarks/); what is asserted is that each
section runs and that the numbers a GPU run reports are the right kind: ours and diffusers agree on
the same weights, the options do not change results, the flows produce an image and a sentence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_benchmark_smoke_runs_every_section(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    sections = report["sections"]
    assert set(sections) == {"matmul_peak", "image_unet", "text_unet", "channels_last", "compile", "pipelines",
                             "offload", "vae"}
    assert not [name for name, s in sections.items() if "error" in s]
    for kind in ("image_unet", "text_unet"):
        rows = sections[kind]["result"]
        fp32 = [r for r in rows if r["dtype"] == "float32"]
        assert fp32 and all(r["max_abs_diff"] < 1e-4 for r in fp32)  # same weights, same function
        assert all(r["gflop_counted"] > 0 and r["ours"]["step_ms"] > 0 for r in rows)
    assert sections["channels_last"]["result"]["max_abs_diff"] < 1e-5
    assert sections["compile"]["result"]["max_abs_diff"] < 1e-5
    for part in ("pipelines", "offload"):
        flows = sections[part]["result"]
        assert flows["t2i_decode"]["output"] == flows["dual_guided_decode"]["output"] == [1, 3, 16, 16]
        (sentence,) = flows["i2t_optimus"]["output"]
        assert isinstance(sentence, str)
    moves = sections["offload"]["result"]["moves"]
    assert "unet.data.text" in moves["ever_resident"] and moves["moves"] > len(moves["ever_resident"])
    assert all("s" in row["tiled"] and "s" in row["untiled"] for row in sections["vae"]["result"])
