"""``vdnodes run`` over many items: the sweep options, the progress display and the exit code.

The engine is ``vdnodes.batch``; this module only turns options into a ``Sweep`` and a
backend, shows progress, and says what failed. Exit codes: 0 all items ok, 1 some failed,
2 a bad spec or value (before anything runs), 130 interrupted (the next run resumes).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def add_sweep_args(run: argparse.ArgumentParser) -> None:
    g = run.add_argument_group("sweeps (docs/sweeps.md)")
    g.add_argument("--sweep", dest="sweeps", action="append", default=[], metavar="NODE.PARAM=SPEC",
                   help="run over values: a,b,c | start:stop:step | @values.txt | @'photos/*.jpg'; "
                        "several combine as a grid (cartesian product); repeatable")
    g.add_argument("--zip", dest="zip_axes", action="store_const", const=True, default=None,
                   help="pair the --sweep values instead of combining them")
    g.add_argument("--items", metavar="FILE.jsonl", default=None,
                   help="one JSON object of overrides per line, one item each")
    g.add_argument("--grid", action="store_true", help="also write a labelled contact sheet (1 or 2 swept params)")
    g.add_argument("--force", action="store_true", help="rerun items already done (default: resume)")
    g.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray: a local Ray, or join the cluster at ADDRESS (or RAY_ADDRESS)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="Ray CPU workers (default: one per GPU on CUDA, else 2)")


def is_sweep(args: argparse.Namespace, graph: Any) -> bool:
    from vdnodes.batch.spec import has_sweep

    return has_sweep(graph, args.sweeps, args.items) or args.ray is not None


def cmd_sweep(args: argparse.Namespace, registry: Any, graph: Any, device: str) -> int:
    from vdnodes.batch.grid import grid_problem, write_grid
    from vdnodes.batch.local import LocalBackend, failed_summary, run_sweep
    from vdnodes.batch.manifest import Manifest
    from vdnodes.batch.spec import build_sweep
    from vdnodes.console import SweepJsonWriter, SweepProgress
    from vdnodes.core.errors import UserInputError
    from vdnodes.core.executor import CancelToken

    if args.workers is not None and args.workers < 1:
        raise UserInputError("--workers: give a number of workers, 1 or more")
    sweep = build_sweep(graph, registry, sweeps=args.sweeps, zip_axes=args.zip_axes, items_file=args.items,
                        seed=args.seed)
    if args.grid and grid_problem(sweep):
        raise UserInputError(grid_problem(sweep))
    targets = tuple(args.targets) if args.targets else None
    if args.ray is not None:
        from vdnodes.batch.ray_backend import RayBackend, WorkerConfig, import_ray

        import_ray()
        config = WorkerConfig(device=device, dtype=args.dtype, seed=args.seed, targets=targets,
                              plugins_enabled=False if args.no_plugins else None,
                              plugins_allow=tuple(args.plugins.split(",")) if args.plugins else None)
        backend: Any = RayBackend(config, address=None if args.ray == "local" else args.ray, workers=args.workers)
    else:
        from vdnodes.nodes.models import preload_model_code
        from vdnodes.nodes.runtime import build_executor

        preload_model_code(graph, registry)
        backend = LocalBackend(build_executor(registry, device=device, dtype=args.dtype, out_dir=args.out),
                               seed=args.seed, targets=targets)
    sink = SweepJsonWriter() if args.json_events else SweepProgress()
    cancel = CancelToken()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        if cancel.cancelled:
            raise KeyboardInterrupt
        cancel.cancel()
        print("\nvdnodes: stopping: the current item is dropped, finished items are kept "
              "(run the same command again to resume; Ctrl-C again to quit now)", file=sys.stderr)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        summary = run_sweep(sweep, backend, args.out, force=args.force, on_event=sink, cancel=cancel)
    finally:
        signal.signal(signal.SIGINT, previous)
    grid = None
    if args.grid and summary.status != "cancelled":
        grid = write_grid(sweep, Manifest(args.out).latest(), args.out, registry)
    out = sys.stderr
    print(f"sweep {summary.status}: {len(summary.done)} ok, {len(summary.failed)} failed, "
          f"{len(summary.skipped)} done before, of {summary.total} items, in {summary.seconds:.1f}s; "
          f"results in {os.path.join(args.out, 'sweep.jsonl')}", file=out)
    for line in failed_summary(summary):
        print(f"  {line}", file=out)
    if grid is not None:
        print(f"contact sheet: {grid}", file=out)
    if summary.status == "cancelled":
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed else EXIT_OK
