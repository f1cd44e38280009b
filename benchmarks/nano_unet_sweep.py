"""vd-nano UNet recipe sweep: train UNet variants on finished encoders, score each with eval-nano.

    python benchmarks/nano_unet_sweep.py --encoders vd-nano-train/checkpoints --out sweep \\
        --variants ref,big,wide,t2i-overfit --seconds 540 [--device cuda]

The image VAE, CLIP and Optimus come from the ``--encoders`` folder of a finished
``vdnodes train-nano`` run (their checkpoints must be done; per-stage fingerprints check
they were made with the shipped settings). Each variant trains only the UNet, in its own
process: on a GPU they share the card, on a CPU they share the cores. Every process first
times a few steps, then sets its step count so that all of them end inside ``--seconds``
(a variant's own ``steps`` caps it), trains, saves ``<out>/<variant>/vd-nano.safetensors``
and measures every eval-nano flow on ``--n`` held-out scenes. ``t2i-overfit`` trains
text->image alone on a fixed set of scenes and is scored on those same scenes as well:
if it cannot draw the shapes of scenes it has seen hundreds of times, the UNet lacks
capacity; if it can, the full recipe lacks optimisation.

Writes ``<out>/sweep.json`` (per variant: steps, seconds per step, the rates) and prints a
markdown table. What it is not: the shipped recipe (``vdnodes/nano/train.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclasses.dataclass(frozen=True)
class Variant:
    """A UNet recipe: the shipped one with these changes."""

    batch: int = 64
    lr: float = 6e-4
    steps: int = 1_000_000  # cap; the time budget usually decides
    warmup: int = 300
    model_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)  # the shipped widths: 32 / 64 / 64 / 64
    cycle: tuple[str, ...] | None = None  # flows per step (None: UNetStage.CYCLE)
    pool: int | None = None  # scenes in the pool (None: the shipped 20,000)
    weighting: str = "min-snr"  # loss weight per timestep: the shipped min-SNR-5, or "p2" (1 / (1 + SNR))
    note: str = ""


VARIANTS: dict[str, Variant] = {
    "ref": Variant(steps=10_000, note="the shipped recipe (batch 64, lr 6e-4, 10,000 steps)"),
    "big": Variant(batch=1024, lr=1e-3, note="batch 1024, lr 1e-3: as many samples as time allows"),
    "wide-top": Variant(batch=256, channel_mult=(2, 2, 2, 2),
                        note="batch 256, the 8x8 level 64 wide instead of 32 (still fits the 40 MB file)"),
    "wide": Variant(batch=256, model_channels=64,
                    note="batch 256, every level twice as wide (4x the parameters: over the 40 MB file limit)"),
    "t2i-overfit": Variant(batch=256, cycle=("t2i",), pool=512,
                           note="text->image only on 512 fixed scenes; scored on those scenes too"),
    # A pair for one question (run with --same-steps): does weighting the noisy half of the
    # schedule (where shapes are decided) more than min-SNR does make shapes come sooner?
    "overfit-1k": Variant(batch=256, cycle=("t2i",), pool=512, steps=1000,
                          note="t2i-overfit, 1,000 steps, min-SNR-5 (control)"),
    "overfit-1k-p2": Variant(batch=256, cycle=("t2i",), pool=512, steps=1000, weighting="p2",
                             note="t2i-overfit, 1,000 steps, P2 weighting (Choi et al. 2022, k = 1, gamma = 1)"),
}
ALL_FLOWS = "t2i,i2t,i2i,t2t,dual,disentangle,i2t2i"
SUMMARY = ("t2i_color", "t2i_shape", "i2t_color_shape", "i2i_color_shape", "t2t_nouns",
           "dual_text_color_image_shape", "disentangle_semantic_shape", "disentangle_style_shape",
           "disentangle_style_texture", "disentangle_semantic_texture", "i2t2i_edit", "train_t2i_shape")


def _write(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def run_one(name: str, args: argparse.Namespace) -> None:
    """Train and score one variant (runs in its own process)."""
    import torch

    from vdnodes.model import vd as vdm
    from vdnodes.nano import quality
    from vdnodes.nano import train as tr
    from vdnodes.nano.config import nano_config
    from vdnodes.nano.tokenizers import build_tokenizers, tokenizer_info

    variant = VARIANTS[name]
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    folder = Path(args.out) / name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "checkpoints").mkdir(parents=True)
    for stage in ("vae", "clip", "optimus"):
        for suffix in (".json", ".safetensors"):
            shutil.copy2(Path(args.encoders) / f"{stage}{suffix}", folder / "checkpoints" / f"{stage}{suffix}")
    record: dict[str, Any] = {"variant": name, **dataclasses.asdict(variant), "device": str(dev),
                              "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None}
    result_path = folder / "result.json"

    base = nano_config()
    config = dataclasses.replace(base, unet=dataclasses.replace(base.unet, model_channels=variant.model_channels,
                                                                channel_mult=variant.channel_mult))
    full = tr.BUDGETS["full"]
    plan = dataclasses.replace(full, pool=variant.pool or full.pool,
                               unet=tr.StageBudget(variant.steps, variant.batch, variant.lr, variant.warmup))
    class SweepUNetStage(tr.UNetStage):
        CYCLE = variant.cycle or tr.UNetStage.CYCLE

        def __init__(self, *a: Any, **k: Any):
            super().__init__(*a, **k)
            if variant.weighting == "p2":  # eps-loss weight 1 / (1 + SNR): low noise counts far less
                snr = self.alphas_cumprod / (1 - self.alphas_cumprod)
                self.snr_weight = 1.0 / (1.0 + snr)
            elif variant.weighting != "min-snr":
                raise ValueError(f"unknown weighting {variant.weighting!r}")

    stage_class = SweepUNetStage
    info = tokenizer_info(config)
    clip_tok, optimus_tok = build_tokenizers(info)
    torch.manual_seed(0)
    model = vdm.build(config, vdm.COMPONENTS, device=dev, clip_tokenizer=clip_tok,
                      optimus_tokenizers=tuple(optimus_tok)).eval()
    record["unet_parameters"] = sum(p.numel() for p in model.unet.parameters())
    checkpoints = tr._Checkpoints(folder / "checkpoints", tr.stage_fingerprints(config, plan, 0, info))
    for index, stage_name in enumerate(("vae", "clip", "optimus")):
        if not (checkpoints.state(stage_name) or {}).get("done"):
            raise SystemExit(f"{args.encoders}: the {stage_name} checkpoint is missing or unfinished")
        tr._run_stage(tr.STAGE_CLASSES[stage_name](model, plan, 0, dev), checkpoints, checkpoint_every=10**9,
                      progress=False, on_step=None, index=index)

    # Timing probe: a few real steps on a throw-away optimiser, then the initial weights again.
    # Every variant probes at the same time (after all have built their scene pools), so the
    # probe sees the card or the cores as shared as training will.
    initial = {k: v.clone() for k, v in model.unet.state_dict().items()}
    probe = stage_class(model, plan, 0, dev)
    probe.prepare()
    (folder / "ready").touch()
    waited = time.time()
    peers = [peer for peer in args.peers.split(",") if peer] or [name]
    while time.time() - waited < 120 and not all((Path(args.out) / peer / "ready").exists() for peer in peers):
        time.sleep(0.5)
    params = probe.parameters()
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=1e-5, foreach=True)
    timings = []
    for step in range(args.probe_steps):
        started = time.perf_counter()
        loss, _ = probe.step_loss(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        timings.append(time.perf_counter() - started)
    model.unet.load_state_dict(initial)
    per_step = sorted(timings[len(timings) // 3:])[len(timings[len(timings) // 3:]) // 2]  # median after warm-up
    left = args.train_until - time.time()
    steps = int(min(variant.steps, max(args.min_steps, left * args.safety / per_step)))
    steps = steps // 100 * 100 if steps >= 1000 else steps
    if args.same_steps:  # a paired comparison: every variant takes the smallest plan
        (folder / "plan").write_text(str(steps))
        waited = time.time()
        while time.time() - waited < 60 and not all((Path(args.out) / peer / "plan").exists() for peer in peers):
            time.sleep(0.5)
        steps = min(int((Path(args.out) / peer / "plan").read_text()) for peer in peers
                    if (Path(args.out) / peer / "plan").exists())
    record.update(probe_seconds_per_step=round(per_step, 4), steps=steps)
    _write(result_path, record)
    print(f"[{name}] {per_step * 1000:.0f} ms/step -> {steps} steps", flush=True)

    plan = dataclasses.replace(plan, unet=tr.StageBudget(steps, variant.batch, variant.lr, min(variant.warmup, steps // 10)))
    checkpoints = tr._Checkpoints(folder / "checkpoints", tr.stage_fingerprints(config, plan, 0, info))
    stage = stage_class(model, plan, 0, dev)
    stage.pool = probe.pool  # kept in ``probe``: the stage drops it when it finishes
    started = time.perf_counter()
    tr._run_stage(stage, checkpoints, checkpoint_every=10**9, progress=False, on_step=None, index=3)
    record.update(train_seconds=round(time.perf_counter() - started, 1),
                  final_loss=float(sum(json.loads((folder / "checkpoints" / "unet.json").read_text())["losses"][-200:]) / 200))
    from vdnodes.nano.weights import save_nano

    save_nano(model, folder / tr.WEIGHTS_NAME, info, {"budget": f"sweep-{name}", "seed": 0, "results": {},
                                                       "steps": {"unet": steps}})
    (folder / "checkpoints" / "unet.safetensors").unlink()  # the EMA is in the weights file
    _write(result_path, record)
    print(f"[{name}] trained {steps} steps in {record['train_seconds']} s; evaluating", flush=True)

    settings = quality.Settings(batch=400 if dev.type == "cuda" else 100)
    started = time.perf_counter()
    flows = [f for f in args.flows.split(",") if f]
    if variant.cycle == ("t2i",) and variant.pool:
        flows = ["t2i"]
        seen = probe.pool.scenes[:args.n]  # the scenes it trained on (finish() dropped stage.pool)
        rates = quality.score("t2i", quality.Runner(model, settings, 2026).t2i(seen))
        record["rates_train"] = rates
        record["train_t2i_shape"] = rates["t2i_shape"]
    record["rates"], record["errors"] = {}, {}
    for flow in flows:  # one at a time: a failing flow must not cost the others' numbers
        try:
            record["rates"].update(quality.measure(model, args.n, settings=settings, flows=[flow]))
        except Exception as e:  # noqa: BLE001 (reported in the record and on stderr)
            record["errors"][flow] = f"{type(e).__name__}: {e}"
            print(f"[{name}] {flow} failed: {record['errors'][flow]}", file=sys.stderr, flush=True)
        _write(result_path, record)
    record["eval_seconds"] = round(time.perf_counter() - started, 1)
    _write(result_path, record)
    print(f"[{name}] done: " + ", ".join(f"{k} {v:.3f}" for k, v in record["rates"].items()
                                          if not k.startswith("seconds")), flush=True)


def table(records: list[dict[str, Any]]) -> str:
    """Markdown: one row per metric, one column per variant."""
    head = "| metric | " + " | ".join(r["variant"] for r in records) + " |"
    lines = [head, "|---" * (len(records) + 1) + "|"]
    lines.append("| UNet parameters | " + " | ".join(f"{r.get('unet_parameters', 0) / 1e6:.1f} M" for r in records) + " |")
    lines.append("| batch x steps | " + " | ".join(f"{r['batch']} x {r.get('steps', '?')}" for r in records) + " |")
    lines.append("| s / step | " + " | ".join(f"{r.get('probe_seconds_per_step', float('nan')):.3f}" for r in records) + " |")
    for key in SUMMARY:
        cells = []
        for r in records:
            value = r.get(key, r.get("rates", {}).get(key))
            cells.append("" if value is None else f"{value:.1%}")
        if any(cells):
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", required=True, help="checkpoints folder of a finished train-nano run")
    parser.add_argument("--out", required=True)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seconds", type=float, default=540, help="wall-clock budget of the whole sweep")
    parser.add_argument("--eval-reserve", type=float, default=110, help="seconds kept for saving and scoring")
    parser.add_argument("--safety", type=float, default=0.7,
                        help="share of the training window to plan for (probes ran 1.3-1.5x fast on a shared GPU)")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--flows", default=ALL_FLOWS)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--probe-steps", type=int, default=30)
    parser.add_argument("--min-steps", type=int, default=200, help="fewest UNet steps, whatever the time")
    parser.add_argument("--same-steps", action="store_true",
                        help="every variant trains the smallest step count any of them planned (paired comparisons)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--peers", default="", help=argparse.SUPPRESS)
    parser.add_argument("--train-until", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.one:
        run_one(args.one, args)
        return 0

    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        print(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    started = time.time()
    deadline = started + args.seconds
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = [sys.executable, __file__, "--encoders", args.encoders, "--out", args.out, "--n", str(args.n),
              "--flows", args.flows, "--threads", str(args.threads), "--safety", str(args.safety),
              "--probe-steps", str(args.probe_steps), "--min-steps", str(args.min_steps), *(["--same-steps"] if args.same_steps else []), "--train-until", str(deadline - args.eval_reserve),
              "--peers", ",".join(names)]
    if args.device:
        common += ["--device", args.device]
    for n in names:  # a previous sweep's markers must not open the barriers early
        for marker in ("ready", "plan"):
            (out / n / marker).unlink(missing_ok=True)
    procs = {n: subprocess.Popen(common + ["--one", n]) for n in names}
    while any(p.poll() is None for p in procs.values()) and time.time() < deadline - 10:
        time.sleep(2)
    for n, p in procs.items():
        if p.poll() is None:
            print(f"[{n}] still running at the deadline: stopped", file=sys.stderr)
            p.kill()
    records = []
    for n in names:
        path = out / n / "result.json"
        records.append(json.loads(path.read_text()) if path.is_file() else {"variant": n, **dataclasses.asdict(VARIANTS[n])})
    _write(out / "sweep.json", {"seconds": round(time.time() - started, 1), "variants": records})
    print(table(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
