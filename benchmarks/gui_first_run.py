"""The canvas's first run of a model graph, with and without importing the model code paused.

Each trial is a fresh process that builds what the canvas builds (registry, executor,
``Runner``) on an offscreen ``QApplication``, runs one graph and times ``Runner.start`` to
its ``finished`` signal: the run's worker imports torch and transformers there. ``paused``
is the canvas as shipped (``preload_model_code`` imports them with the garbage collector
paused); ``collector on`` replaces that call by a no-op, so the nodes import them lazily as
before. Trials alternate, so a slow spell of a shared machine hits both alike.

    python benchmarks/gui_first_run.py [--graph graphs/text_to_image.json] [--repeat 4]
    # writes benchmarks/results/gui_first_run.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vdnodes.core.fileio import atomic_write_text  # noqa: E402

TRIAL = r"""
import json, sys, time
from PySide6.QtCore import QEventLoop
from PySide6.QtWidgets import QApplication
import vdnodes_gui.run as gui_run
from vdnodes.core.graph import load_graph
from vdnodes.nodes import build_registry
from vdnodes_gui.main_window import default_executor

graph_path, out_dir, paused = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
if not paused:
    gui_run.preload_model_code = lambda *args, **kwargs: False
app = QApplication([])
registry = build_registry()
runner = gui_run.Runner(default_executor(registry, out_dir))
loop, done = QEventLoop(), {}
runner.finished.connect(lambda result, outputs: (done.update(result=result), loop.quit()))
t0 = time.perf_counter()
runner.start(load_graph(graph_path, registry))
loop.exec()
seconds = time.perf_counter() - t0
result = done["result"]
if result is None or result.error is not None:
    raise SystemExit(f"the run failed: {getattr(result, 'error', None)}")
print(json.dumps({"seconds": round(seconds, 3)}))
"""

VARIANTS = {"paused": "1", "collector on": "0"}


def trial(graph: Path, paused: str) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "QT_QPA_PLATFORM": "offscreen",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gui")])}
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", TRIAL, str(graph), tmp, paused],
                              cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"trial failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graph", type=Path, default=ROOT / "graphs" / "text_to_image.json")
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gui_first_run.json")
    args = parser.parse_args()
    if not args.graph.is_file():
        parser.error(f"no graph file at {args.graph}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    runs: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(args.repeat):
        for name, flag in VARIANTS.items():
            runs[name].append(trial(args.graph, flag))
            print(f"{name:13s} {runs[name][-1]:6.2f} s  (round {round_ + 1}/{args.repeat})")
    medians = {name: round(statistics.median(times), 2) for name, times in runs.items()}
    report = {"graph": args.graph.name, "host": platform.processor() or platform.machine(),
              "threads": os.cpu_count(), "median_s": medians, "runs_s": runs,
              "saved_s": round(medians["collector on"] - medians["paused"], 2)}
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["median_s"]), "saved", report["saved_s"], "s")


if __name__ == "__main__":
    main()
