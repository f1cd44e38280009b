"""``vdnodes train-nano``: the command line of ``runner.train_nano``, with the run report."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from vdnodes.nano.training.budget import BUDGETS
from vdnodes.nano.training.report import host_report, report_hosts, write_report
from vdnodes.nano.training.runner import train_nano
from vdnodes.nano.training.stages import ENCODER_STAGES
from vdnodes.nano.weights import NANO_WEIGHTS, compare_weights


def main(argv: Sequence[str] | None = None) -> int:
    """``vdnodes train-nano``: train vd-nano, resumable; ``--install`` copies it into the package."""
    parser = argparse.ArgumentParser(
        prog="vdnodes train-nano",
        description="Train the embedded vd-nano model from scratch (image VAE, CLIP, Optimus, UNet). "
                    "Interrupt at any time; the same command resumes from the last checkpoint.")
    parser.add_argument("--out", default="vd-nano-train", help="folder for checkpoints, the result and train-report.json (stage times, hosts, comparison)")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="full",
                        help="'full' reproduces the shipped weights; 'smoke' checks the pipeline in seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: all cores; use 1 on a machine other jobs share)")
    parser.add_argument("--no-resume", action="store_true", help="delete the checkpoints and start over")
    parser.add_argument("--install", action="store_true", help=f"copy the result to {NANO_WEIGHTS}")
    parser.add_argument("--encoders-from", metavar="FILE", default=None,
                        help="take the image VAE, CLIP and Optimus from this vd-nano file (e.g. the "
                             "shipped one) and train only the UNet; the file must come from the same "
                             "seed, budget and encoder configs")
    parser.add_argument("--reuse", metavar="STAGES", default=",".join(ENCODER_STAGES),
                        help="with --encoders-from: the encoder stages to take from the file, comma-separated "
                             "(default: vae,clip,optimus); the others train")
    parser.add_argument("--compare-to", metavar="FILE", default=None,
                        help="compare each finished stage, and the result, tensor by tensor with this "
                             "vd-nano file (default with --budget full: the shipped weights)")
    args = parser.parse_args(argv)
    if args.reuse != parser.get_default("reuse") and not args.encoders_from:
        print("error: --reuse names the encoder stages taken from --encoders-from FILE; pass that too",
              file=sys.stderr)
        return 2
    reference = Path(args.compare_to) if args.compare_to else (NANO_WEIGHTS if args.budget == "full" else None)
    if args.compare_to and not reference.is_file():  # say so now, not after hours of training
        print(f"error: --compare-to: no such file {str(reference)!r}", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    try:
        path = train_nano(args.out, budget=args.budget, resume=not args.no_resume, seed=args.seed,
                          device=args.device, threads=args.threads, encoders_from=args.encoders_from,
                          reuse=[name.strip() for name in args.reuse.split(",") if name.strip()],
                          compare_to=reference if reference is not None and reference.is_file() else None)
    except KeyboardInterrupt:
        print(f"\ninterrupted; run the same command again to resume from {Path(args.out) / 'checkpoints'}",
              file=sys.stderr)
        return 130
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    minutes = (time.perf_counter() - started) / 60
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) in {minutes:.1f} min")
    comparison = None
    if reference is not None and reference.is_file() and reference.resolve() != path.resolve():
        comparison = compare_weights(path, reference)
    report = write_report(Path(args.out), path, minutes, sys.argv[1:] if argv is None else argv,
                          comparison, reference if comparison is not None else None)
    if comparison is not None:
        print(f"compared with {reference}: {comparison.summary()}")
        if not comparison.identical:
            print(host_report(report_hosts(path), report_hosts(reference)))
    print(f"run report (stage times, hosts, comparison): {report}")
    if args.install:
        NANO_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, NANO_WEIGHTS)
        print(f"installed as {NANO_WEIGHTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
