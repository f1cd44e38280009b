"""Train a variant of vd-nano's UNet stage on a file's image VAE, CLIP and Optimus.

Every UNet experiment in docs/nano.md section 6 is this: the shipped encoders, the full
budget's UNet schedule and seed, one thing changed. Here the change is the UNet's attention
head count (it changes no weight's shape, so the initial weights are the shipped run's):

    python benchmarks/nano_unet_variant.py --heads 1 --out /tmp/unet-heads1
    python benchmarks/nano_unet_variant.py --heads 1 --out /tmp/unet-heads1 --stop-at 5000

It resumes like ``vdnodes train-nano`` (same checkpoints). ``--stop-at`` ends after that
many steps with a checkpoint (a paired half run); without it the stage finishes and
writes ``OUT/vd-nano.safetensors``, which ``vdnodes eval-nano --weights`` scores. The losses
and seconds of every step go to ``OUT/steps.jsonl`` (appended, so a resumed run keeps them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for checkpoints, steps.jsonl and the result")
    parser.add_argument("--heads", type=int, default=None, help="UNet attention heads (nano: 4)")
    parser.add_argument("--encoders-from", default=None, help="vd-nano file whose encoders to reuse "
                        "(default: the shipped one)")
    parser.add_argument("--stop-at", type=int, default=None, help="stop after this many UNet steps")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    from vdnodes.nano.config import nano_config
    from vdnodes.nano.train import NANO_WEIGHTS, train_nano

    config = nano_config()
    if args.heads is not None:
        unet = config.unet
        widths = {unet.model_channels * m for m in unet.channel_mult}
        if args.heads < 1 or any(w % args.heads for w in widths):
            print(f"error: --heads must divide every UNet width {sorted(widths)}", file=sys.stderr)
            return 2
        config = dataclasses.replace(config, unet=dataclasses.replace(unet, heads=args.heads))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "steps.jsonl").open("a")
    last = [time.perf_counter()]

    def on_step(stage: str, step: int, metrics: dict[str, float]) -> None:
        now = time.perf_counter()
        if stage == "unet":
            log.write(json.dumps({"step": step, "seconds": round(now - last[0], 4), **metrics}) + "\n")
            log.flush()
            if args.stop_at is not None and step >= args.stop_at:
                raise KeyboardInterrupt
        last[0] = now

    try:
        path = train_nano(out, config=config, encoders_from=args.encoders_from or NANO_WEIGHTS,
                          on_step=on_step, threads=args.threads)
    except KeyboardInterrupt:
        print(f"stopped; checkpoints in {out / 'checkpoints'}")
        return 0
    finally:
        log.close()
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
