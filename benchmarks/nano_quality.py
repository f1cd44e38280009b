"""vd-nano quality: every flow on held-out scenes, scored by the rule-based checker.

The same measurement as ``vdnodes eval-nano`` (``vdnodes/nano/quality.py``) with the paths
this repository keeps its results in:

    python benchmarks/nano_quality.py [--n 200] [extra eval-nano options]

writes benchmarks/results/nano_quality.json, the sample grids docs/img/nano_*.png and the
results section of docs/nano.md. Exit status 0 even when a target is missed: the file and
the docs say which ones are.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vdnodes.nano.quality import main  # noqa: E402

if __name__ == "__main__":
    defaults = ["--out", str(ROOT / "benchmarks" / "results" / "nano_quality.json"),
                "--grids", str(ROOT / "docs" / "img"), "--docs", str(ROOT / "docs" / "nano.md")]
    sys.exit(main(defaults + sys.argv[1:]))
