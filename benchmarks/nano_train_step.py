"""vd-nano training: seconds per step of each train-nano stage on this host, and the full run it implies.

Runs a few steps of every stage exactly as ``vdnodes train-nano`` does (its stage classes, its
``full`` budget's batch sizes, its optimiser), on randomly initialised weights (a step costs the
same whatever the weights), and times each step in three parts: data + forward
(``step_loss``), backward, and optimiser (gradient clipping, AdamW, the UNet's EMA). The first
step of each stage (of each flow, for the UNet) is a warm-up and is dropped; the rest give
medians. The UNet's per-step figure is the mean over train-nano's flow cycle of each flow's
median, since image-output steps cost 3-4x text-output ones. Multiplied by the ``full``
budget's step counts this estimates a full run in minutes, without the three hours it takes;
the UNet's scene pool (about a minute at 20,000 scenes) and the closing evaluation are not in
it. It also times one AdamW update of each stage's parameters with ``foreach`` and with
``fused`` (the kernel train-nano uses where torch has it), on the same gradients.

    python benchmarks/nano_train_step.py [--stages vae,clip,optimus,unet] [--steps 30] [--threads 2]
    # writes benchmarks/results/nano_train_step.json
    python benchmarks/nano_train_step.py --device cuda --steps 60
    # writes benchmarks/results/nano_train_step_cuda.json (each part timed after a synchronize)
    python benchmarks/nano_train_step.py --stages unet --unet-heads 1 --out FILE
    # prices a UNet with fewer attention heads (same weights' shapes, wider heads)
    python benchmarks/nano_train_step.py --stages unet --autocast bf16 --out FILE
    # prices the forward pass under bfloat16 autocast (train-nano trains in fp32)

Run it on an otherwise idle machine: a second job on 2 cores doubles every number.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from graph_runs import cpu_name  # this folder is on sys.path when the script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "nano_train_step.json"


def _median_ms(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1000, 1)


def _clock(device: Any) -> Any:
    """``time.perf_counter`` that first waits for ``device``'s queued work (GPU kernels run async)."""
    import torch

    if device.type != "cuda":
        return time.perf_counter

    def now() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()

    return now


def time_optimizers(params: list[Any], repeats: int = 10) -> dict[str, float]:
    """Median ms of one AdamW update of ``params`` (their current gradients), foreach vs fused."""
    import torch

    clock = _clock(params[0].device)
    saved = [p.detach().clone() for p in params]
    out = {}
    for kind in ("foreach", "fused"):
        try:
            opt = torch.optim.AdamW(params, lr=1e-6, betas=(0.9, 0.99), weight_decay=0.01, **{kind: True})
        except RuntimeError:  # no fused AdamW for this device in this torch
            continue
        seconds = []
        for _ in range(repeats + 1):
            t0 = clock()
            opt.step()
            seconds.append(clock() - t0)
        out[kind] = _median_ms(seconds[1:])
    with torch.no_grad():
        for p, s in zip(params, saved):
            p.copy_(s)
    return out


def time_stage(name: str, model: Any, plan: Any, steps: int, autocast: str = "none") -> dict[str, Any]:
    """Per-part step times of one stage, ``steps`` steps after its ``prepare``.

    ``autocast="bf16"`` runs each step's data + forward under ``torch.autocast`` in bfloat16.
    """
    import contextlib

    import torch

    from vdnodes.nano.training.budget import BUDGETS, step_seed
    from vdnodes.nano.training.stage import stage_optimizer
    from vdnodes.nano.training.stages import STAGE_CLASSES

    device = next(model.parameters()).device
    clock = _clock(device)
    stage = STAGE_CLASSES[name](model, plan, 0, device, progress=False)
    params, optimizer = stage_optimizer(stage)
    t0 = clock()
    stage.prepare()
    prepare_s = clock() - t0
    cycle = getattr(stage, "CYCLE", (name,))
    parts: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for step in range(steps):
        torch.manual_seed(step_seed(0, name, step))
        t0 = clock()
        with (torch.autocast(device.type, dtype=torch.bfloat16) if autocast == "bf16" else contextlib.nullcontext()):
            loss, _ = stage.step_loss(step)
        t1 = clock()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t2 = clock()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        stage.after_step(step)
        t3 = clock()
        flow = cycle[step % len(cycle)]
        for part, seconds in (("data_forward", t1 - t0), ("backward", t2 - t1), ("optimizer", t3 - t2),
                              ("step", t3 - t0)):
            parts[flow][part].append(seconds)
    adamw_ms = time_optimizers(params)
    for p in params:
        p.requires_grad_(False)
    per_flow = {flow: {part: _median_ms(s[1:]) for part, s in by_part.items()}  # first: warm-up
                for flow, by_part in parts.items() if len(by_part["step"]) > 1}
    if set(per_flow) != set(cycle):
        raise SystemExit(f"--steps {steps} is too few: every flow of {name}'s cycle needs two steps")
    step_ms = {part: round(statistics.fmean(per_flow[f][part] for f in cycle), 1)
               for part in ("data_forward", "backward", "optimizer", "step")}
    full = BUDGETS["full"].stage(name)
    return {"batch": stage.budget.batch, "steps_timed": steps, "prepare_seconds": round(prepare_s, 1),
            "ms_per_step": step_ms, "per_flow_ms": per_flow if len(cycle) > 1 else None,
            "parameters": sum(p.numel() for p in params), "parameter_tensors": len(params),
            "adamw_update_ms": adamw_ms, "full_budget_steps": full.steps,
            "full_budget_minutes": round(step_ms["step"] * full.steps / 60_000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="vae,clip,optimus,unet")
    parser.add_argument("--steps", type=int, default=30, help="steps timed per stage (default 30)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pool", type=int, default=1024, help="UNet scene pool (train-nano: 20,000)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--unet-heads", type=int, default=None,
                        help="price another UNet attention head count (weights keep their shapes)")
    parser.add_argument("--autocast", choices=("none", "bf16"), default="none",
                        help="run data + forward under bfloat16 autocast (default: none, as train-nano)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default: benchmarks/results/nano_train_step[_cuda].json)")
    args = parser.parse_args()

    import torch

    from vdnodes.model import vd as vdm
    from vdnodes.nano.config import nano_config
    from vdnodes.nano.tokenizers import build_tokenizers, tokenizer_info
    from vdnodes.nano.training.budget import BUDGETS, STAGES

    stages = args.stages.split(",")
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r} is not a torch device (cpu, cuda, cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this torch sees no CUDA device")
    config = nano_config()
    if args.unet_heads is not None:
        widths = {config.unet.model_channels * m for m in config.unet.channel_mult}
        if args.unet_heads < 1 or any(w % args.unet_heads for w in widths):
            parser.error(f"--unet-heads {args.unet_heads} must divide every UNet width {sorted(widths)}")
        config = dataclasses.replace(config, unet=dataclasses.replace(config.unet, heads=args.unet_heads))
    info = tokenizer_info(config)
    clip_tok, optimus_tok = build_tokenizers(info)
    torch.manual_seed(0)
    model = vdm.build(config, vdm.COMPONENTS, device=device, clip_tokenizer=clip_tok,
                      optimus_tokenizers=tuple(optimus_tok)).eval()
    plan = dataclasses.replace(BUDGETS["full"], pool=args.pool)
    results: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                               "cpu": cpu_name(), "kernels": torch.backends.cpu.get_cpu_capability(),
                               "cpu_count": os.cpu_count(), "threads": args.threads,
                               "device": str(device), "unet_heads": config.unet.heads, "autocast": args.autocast,
                               "stages": {}}
    if device.type == "cuda":
        results["gpu"] = torch.cuda.get_device_name(device)
    for name in stages:
        r = time_stage(name, model, plan, args.steps, args.autocast)
        results["stages"][name] = r
        ms = r["ms_per_step"]
        print(f"{name:8s} {ms['step']:6.0f} ms/step (data+forward {ms['data_forward']:.0f}, backward "
              f"{ms['backward']:.0f}, optimizer {ms['optimizer']:.0f}) x {r['full_budget_steps']:,} steps = "
              f"{r['full_budget_minutes']:.1f} min; AdamW update {r['adamw_update_ms']}", flush=True)
    total = sum(r["full_budget_minutes"] for r in results["stages"].values())
    results["full_budget_minutes_timed_stages"] = round(total, 1)
    print(f"full budget, stages timed: {total:.0f} min (+ scene pool and evaluation, a few minutes)")
    from vdnodes.core.fileio import atomic_write_text

    out = args.out or (RESULTS if device.type == "cpu" else RESULTS.with_name(f"{RESULTS.stem}_{device.type}.json"))
    atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
