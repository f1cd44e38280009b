"""vd-nano: do its flows improve with more UNet steps?

    python benchmarks/nano_flow_steps.py [--cycle text|all] [--steps 4000] [--every 1000]

Continues the UNet of a vd-nano file (default: the shipped one) through train-nano's own
stage loop (``UNetStage``; batch 64, peak lr 3e-4 with 50 warm-up steps and cosine decay, a
4,000-scene pool, seed 1) on the flows of ``--cycle``: ``text`` trains i2t and t2t only and
measures them; ``all`` trains train-nano's whole flow cycle and measures t2i, i2i, t2t and
i2t. eval-nano's runner (``--n`` held-out scenes, its default settings: DDIM 20 steps since
stop 19, 50 before; guidance 7.5, image variation 3.0) scores the EMA
weights before the first step and every ``--every`` steps. Writes
``benchmarks/results/nano_flow_steps_<cycle>.json``. What it is not: a recipe (train-nano's
budget is what ships); with ``text`` the image flows are not trained and the context layers
they share drift, so such a result is never shipped.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
CYCLES = {"text": (("i2t", "t2t"), ("i2t", "t2t")),  # name: (flows trained, flows measured)
          "all": (None, ("t2i", "i2i", "t2t", "i2t"))}  # None: train-nano's own cycle


def run(weights: Path | None, cycle: str, steps: int, every: int, n: int, seed: int = 1) -> dict[str, Any]:
    import torch

    from vdnodes.nano import quality
    from vdnodes.nano import train as tr
    from vdnodes.nano.weights import load_nano

    model = load_nano("cpu", torch.float32, path=weights).eval()
    plan = dataclasses.replace(tr.BUDGETS["full"], pool=4000,
                               unet=tr.StageBudget(steps=steps, batch=64, lr=3e-4, warmup=50))

    trained, measured = CYCLES[cycle]

    class Continued(tr.UNetStage):
        CYCLE = trained or tr.UNetStage.CYCLE

    stage = Continued(model, plan, seed, torch.device("cpu"), progress=True)
    rates: dict[int, dict[str, float]] = {}

    def measure(step: int) -> None:
        scored = copy.deepcopy(model).requires_grad_(False)
        with torch.no_grad():
            for name, p in scored.unet.named_parameters():
                p.copy_(stage.ema[name])
        with torch.inference_mode():
            rates[step] = quality.measure(scored, n, flows=measured)
        shown = ", ".join(f"{k} {v:.1%}" for k, v in rates[step].items() if not k.startswith("seconds"))
        print(f"step {step}: {shown}", flush=True)

    def on_step(_stage: str, step: int, _metrics: dict[str, float]) -> None:
        if step % every == 0:
            measure(step)

    measure(0)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tr._run_stage(stage, tr._Checkpoints(Path(tmp), {"unet": {cycle: seed}}), checkpoint_every=10**9,
                      progress=True, on_step=on_step, index=tr.STAGES.index("unet"))
    return {"weights": str(weights or "shipped"), "cycle": list(Continued.CYCLE), "steps": steps, "n": n, "seed": seed,
            "budget": dataclasses.asdict(plan.unet), "pool": plan.pool, "threads": torch.get_num_threads(),
            "train_seconds_with_evaluation": round(time.perf_counter() - started), "rates": rates}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=None, help="a vd-nano .safetensors (default: shipped)")
    parser.add_argument("--cycle", choices=sorted(CYCLES), default="text",
                        help="text: continue and measure i2t + t2t; all: train-nano's whole cycle")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/nano_flow_steps_<cycle>.json")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.every < 1:
        print("--steps and --every must be positive", file=sys.stderr)
        return 2
    if args.weights is not None and not args.weights.is_file():
        print(f"no such weights file: {args.weights}", file=sys.stderr)
        return 2
    import torch

    from vdnodes.core.fileio import atomic_write_text

    torch.set_num_threads(args.threads)
    record = run(args.weights, args.cycle, args.steps, args.every, args.n)
    out = args.out or RESULTS / f"nano_flow_steps_{args.cycle}.json"
    atomic_write_text(out, json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
