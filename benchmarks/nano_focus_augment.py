"""vd-nano: a UNet that has seen VD's focus slider applied to its image contexts.

VD's disentanglement (``procedures.adjust_rank``) rescales the principal components of an
image context; vd-nano's UNet only ever trained on whole contexts, so a focused one is new
to it and it draws what it can from a context it never saw (docs/nano.md section 6: semantic
focus keeps about half of the shapes on every tower tried). This trains the UNet stage with,
for a share ``--p`` of the image contexts of every step (i2i, i2t and dual-guided alike), VD's
focus at a level drawn uniformly from [0, 1]. The target stays the scene itself, as with
classifier-free guidance's empty contexts: the UNet learns to draw what a focused context
still says, and nothing about what the slider ought to keep. With a fixed position code
(``nano_position_code.py``) the silhouette lies past the five components style focus keeps,
so whether shape survives each focus is a property of the tokens, not of this training.

    python benchmarks/nano_focus_augment.py --p 0.25 --patterns 8 --scale 40 \\
        --encoders-from FILE --out DIR --threads 2
    python benchmarks/nano_position_code.py --patterns 8 --scale 40 vdnodes eval-nano --weights DIR/vd-nano.safetensors

The image VAE, CLIP and Optimus come from ``--encoders-from`` (``train-nano --encoders-from``);
the UNet stage's recipe is marked (``RECIPE`` ``4+focus<p>``), so its checkpoints are never
confused with train-nano's. The focus draws use their own random streams: the rest of every
step (scenes, noise, timesteps) is the plain stage's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from nano_position_code import train_with_unet_stage  # noqa: E402

from vdnodes.model import procedures  # noqa: E402
from vdnodes.nano import train as tr  # noqa: E402

IMAGE_TOKENS = (64, 65)  # vd-nano's image contexts: patches, or class token + patches (texts: 24)


def focus_augmented_stage(p: float) -> type[tr.UNetStage]:
    """``UNetStage`` with VD's focus applied to a share ``p`` of its image contexts."""

    class FocusAugmentedUNetStage(tr.UNetStage):
        RECIPE = f"{tr.UNetStage.RECIPE}+focus{p:g}"  # type: ignore[assignment]

        def step_loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
            self._focus_rng = np.random.default_rng([tr.step_seed(self.seed, self.name, step), 77])
            return super().step_loss(step)

        def drop(self, tokens: torch.Tensor, uncond: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
            if tokens.shape[1] in IMAGE_TOKENS:
                rng = self._focus_rng
                chosen = np.flatnonzero(rng.random(tokens.shape[0]) < p)
                if len(chosen):
                    tokens = tokens.clone()
                    with torch.random.fork_rng(devices=[]):  # the PCA's draws leave the step's noise alone
                        torch.manual_seed(int(rng.integers(2**31)))
                        for i in chosen.tolist():
                            tokens[i:i + 1] = procedures.adjust_rank(
                                tokens[i:i + 1], float(rng.uniform(0.0, 1.0)),
                                keep_first_token=tokens.shape[1] == 65)
            return super().drop(tokens, uncond, keep)

    return FocusAugmentedUNetStage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--p", type=float, required=True, help="share of image contexts focused (0-1)")
    parser.add_argument("--patterns", type=int, default=0, help="position code patterns (0: no code)")
    parser.add_argument("--scale", type=float, default=0.0, help="position code scale")
    parser.add_argument("--encoders-from", required=True, help="vd-nano file whose encoders to reuse")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if not 0 < args.p <= 1 or args.patterns < 0 or (args.patterns and args.scale <= 0):
        parser.error("--p takes (0, 1], --patterns >= 0, and a code needs --scale > 0")
    return train_with_unet_stage(focus_augmented_stage(args.p), args.out, args.encoders_from, args.threads,
                                 args.patterns, args.scale)


if __name__ == "__main__":
    sys.exit(main())
