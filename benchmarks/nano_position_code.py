"""vd-nano: the shipped vision tower plus a fixed, high-frequency position code.

VD's semantic focus removes an image context's first principal component and shrinks the
second; style focus keeps the first five. On the shipped tower the object's silhouette is
the second component, so semantic focus takes the shape away and style focus keeps it
(docs/nano.md section 6). This adds to every patch token a constant code ``scale * code``:
the ``--patterns`` highest-frequency 2-D DCT patterns of the 8 x 8 patch grid along as many
orthonormal feature directions (``vdnodes.model.clip.position_code(highest=True)``), which
gives every context that many principal components of equal weight that say nothing about
the scene. High frequencies overlap little with a silhouette, which is a low-frequency blob,
so the silhouette is not absorbed into the leading components (a low-frequency code, the
``spread_position`` tower of ``nano_clip_variants.py``, pulls it to the top); with a scale
above the silhouette's weight the silhouette falls past the fifth component, where style
focus drops it and semantic focus leaves it.

The code is a patch on ``CLIPImageContext.encode`` for the duration of one command, so every
path that encodes an image (train-nano's scene pool, eval-nano, the focus probes and sweep)
sees it; a model trained under it must be evaluated under it. The shipped model is unchanged.
A vision config can carry the same code itself (``position_code_patterns`` and
``position_code_scale``, read by ``CLIPImageContext``): its tokens equal this patch's bit for
bit (checked in stop 35), so a model trained here can be shipped with the code in its config.

    python benchmarks/nano_position_code.py --patterns 8 --scale 40 probe --n 1000 --train 800
    python benchmarks/nano_position_code.py --patterns 8 --scale 40 vdnodes train-nano \\
        --encoders-from vdnodes/nano/weights/vd-nano.safetensors --out DIR
    python benchmarks/nano_position_code.py --patterns 8 --scale 40 vdnodes eval-nano --weights DIR/vd-nano.safetensors
    python benchmarks/nano_position_code.py --patterns 8 --scale 40 sweep --weights DIR/vd-nano.safetensors

``--frequencies low`` takes the lowest patterns instead, for comparison. ``probe`` runs ``nano_focus_probe.py`` and ``sweep`` ``nano_focus_sweep.py`` with the rest of
the arguments; ``vdnodes`` runs the CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vdnodes.model.clip import CLIPImageContext, position_code  # noqa: E402


@contextlib.contextmanager
def position_coded(patterns: int, scale: float, highest: bool = True) -> Iterator[None]:
    """Within the block, ``CLIPImageContext.encode`` adds ``scale * code`` to the patch tokens
    (instead of the config's own code, if it has one)."""
    original = CLIPImageContext.encode

    def encode(self, images, masks=None, **kwargs):
        kwargs.pop("position_code", None)  # this code replaces the config's, if any
        out = original(self, images, masks, position_code=False, **kwargs)
        side = int(round((out.shape[1] - 1) ** 0.5))
        grid, directions = position_code(side, out.shape[2], patterns, highest=highest)
        code = (grid @ directions.T).to(out.device, out.dtype)
        return torch.cat([out[:, :1], out[:, 1:] + scale * code], dim=1)

    CLIPImageContext.encode = encode
    try:
        yield
    finally:
        CLIPImageContext.encode = original


def train_with_unet_stage(stage: type, out: str, encoders_from: str, threads: int | None,
                          patterns: int = 0, scale: float = 0.0) -> int:
    """``train-nano --encoders-from`` with ``stage`` as its UNet stage, under the code when ``patterns``.

    Returns the exit code (130 on Ctrl-C, after saying how to resume).
    """
    from vdnodes.nano import train as tr

    tr.STAGE_CLASSES["unet"] = stage
    try:
        with position_coded(patterns, scale) if patterns else contextlib.nullcontext():
            path = tr.train_nano(out, encoders_from=encoders_from, threads=threads)
    except KeyboardInterrupt:
        print(f"stopped; run again to resume from {Path(out) / 'checkpoints'}", file=sys.stderr)
        return 130
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patterns", type=int, required=True, help="DCT patterns in the code (1-63)")
    parser.add_argument("--scale", type=float, required=True, help="the code's singular value (context units)")
    parser.add_argument("--frequencies", choices=("high", "low"), default="high",
                        help="the highest-frequency patterns (default) or the lowest, for comparison")
    parser.add_argument("command", choices=("probe", "sweep", "vdnodes"))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of that command")
    args = parser.parse_args(argv)
    if not 1 <= args.patterns <= 63 or args.scale < 0:
        parser.error("--patterns takes 1-63 and --scale a number >= 0")
    with position_coded(args.patterns, args.scale, args.frequencies == "high"):
        if args.command == "probe":
            import nano_focus_probe

            return nano_focus_probe.main(args.args)
        if args.command == "sweep":
            import nano_focus_sweep

            return nano_focus_sweep.main(args.args)
        from vdnodes.cli import main as vdnodes_main

        return vdnodes_main(args.args)


if __name__ == "__main__":
    sys.exit(main())
