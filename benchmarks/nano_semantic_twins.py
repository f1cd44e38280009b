"""vd-nano: a UNet taught what VD's semantic focus keeps, with restyled twins.

VD's semantic focus (``procedures.adjust_rank`` below 0.5) removes the leading principal
component of an image context; on photographs that is the style every CLIP patch token shares,
and VD's UNet, trained on millions of images, draws the layout it still reads in some style.
vd-nano's UNet never saw a context without its appearance and draws a muddle (docs/nano.md
section 6). This trains the UNet stage the way its dual-guided flow is already trained (a
context, and as target the scene it should produce): for a share ``--p`` of the image
variation samples, the context is VD's semantic focus of the scene's context at a level drawn
from [0, ``--max-level``] (0.3: the first component is zeroed there), and the target is a
*restyled twin*: the same shape, size and place, in a random colour, texture and background.
Style focus is not trained: with the fixed position code (``nano_position_code.py``) it loses
the shape on its own, the silhouette lying past the five components it keeps.

    python benchmarks/nano_semantic_twins.py --p 0.3 --patterns 8 --scale 40 \\
        --encoders-from FILE --out DIR --threads 2
    python benchmarks/nano_position_code.py --patterns 8 --scale 40 vdnodes eval-nano --weights DIR/vd-nano.safetensors

``--extra`` adds the twins to the image-variation batch (about 19 more rows on those steps)
instead of giving them the place of plain samples, which otherwise train on 30% fewer.

The image VAE, CLIP and Optimus come from ``--encoders-from``; the stage's recipe is marked
(``4+twins<p>``) so its checkpoints are never confused with train-nano's. The twins and focus
draws use their own random streams: the rest of every step (scenes, noise, timesteps) is the
plain stage's.
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
from vdnodes.model.conditioning import ContextInput  # noqa: E402
from vdnodes.nano import train as tr  # noqa: E402


def semantic_twins_stage(p: float, max_level: float, extra: bool = False) -> type[tr.UNetStage]:
    """``UNetStage`` whose image-variation samples are, at share ``p``, semantic focus -> restyled twin.

    ``extra``: the twins are added to the image-variation batch instead of taking the place of
    its samples, so plain image variation trains on as many samples as without them.
    """

    class SemanticTwinsUNetStage(tr.UNetStage):
        RECIPE = f"{tr.UNetStage.RECIPE}+twins{p:g}{'extra' if extra else ''}"  # type: ignore[assignment]
        _plan: tuple[np.ndarray, np.ndarray, np.random.Generator] | None = None

        @torch.no_grad()
        def encode_pool(self, n: int, chunk: int = 256) -> tr.ScenePool:
            pool = super().encode_pool(n, chunk)
            rng = np.random.default_rng([self.seed, tr.STAGES.index(self.name), 4343])
            twins = [tr.restyle(s, rng) for s in pool.scenes]
            vae = self.model.vae_image
            self.twin_moments = torch.cat([vae.posterior(tr.render_batch(twins[i:i + chunk], self.device)).moments
                                           for i in range(0, n, chunk)])
            return pool

        def step_loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
            self._plan = None
            if extra and self.CYCLE[step % len(self.CYCLE)] == "i2i":
                return self.i2i_with_extra_twins(step)
            if self.CYCLE[step % len(self.CYCLE)] == "i2i":
                # the plain stage's first draw: which scenes this step takes
                index = np.random.default_rng([tr.step_seed(self.seed, self.name, step), 0, 1]).integers(
                    len(self.pool.scenes), size=self.budget.batch)
                rng = np.random.default_rng([tr.step_seed(self.seed, self.name, step), 78])
                chosen = np.flatnonzero(rng.random(len(index)) < p)
                self._plan = (index, chosen, rng)
            return super().step_loss(step)

        def i2i_with_extra_twins(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
            """The plain stage's image-variation step, its batch followed by the chosen scenes' twins."""
            pool = self.pool
            rng = np.random.default_rng([tr.step_seed(self.seed, self.name, step), 0, 1])  # the plain draws
            index = rng.integers(len(pool.scenes), size=self.budget.batch)
            B = len(index)
            keep = torch.from_numpy(rng.random(B) >= self.P_UNCOND).to(self.device)
            patch_only = bool(rng.random() < self.P_PATCH_ONLY)
            twin_rng = np.random.default_rng([tr.step_seed(self.seed, self.name, step), 78])
            chosen = np.flatnonzero(twin_rng.random(B) < p)
            idx = torch.from_numpy(index).to(self.device)
            tokens = pool.tokens[idx].float()
            tokens = tokens[:, 1:] if patch_only else tokens
            focused = tokens[torch.from_numpy(chosen).to(self.device)].clone()
            for i in range(len(chosen)):
                focused[i:i + 1] = procedures.adjust_rank(focused[i:i + 1], float(twin_rng.uniform(0.0, max_level)),
                                                          keep_first_token=not patch_only)
            tokens = torch.cat([super().drop(tokens, torch.zeros_like(tokens[:1]), keep), focused])
            twin_idx = idx[torch.from_numpy(chosen).to(self.device)]
            moments = torch.cat([pool.moments[idx], self.twin_moments[twin_idx].to(pool.moments)])
            mask = torch.cat([pool.masks[idx], pool.masks[twin_idx]])
            x0 = super().latents(moments)
            t = torch.randint(0, len(self.alphas_cumprod), (len(x0),), device=self.device)
            a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
            noise = torch.randn_like(x0)
            eps = self.model.unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, "image", [ContextInput(tokens, "image")])
            error = (eps - noise).square()
            weighted = tr.object_weighted(error, mask, self.OBJECT_WEIGHT)
            loss = (weighted * self.snr_weight[t]).mean()
            return loss, {"loss_i2i": error[:B].flatten(1).mean(1).mean().item()}

        def latents(self, moments: torch.Tensor) -> torch.Tensor:
            if self._plan is not None and len(self._plan[1]):
                index, chosen, _ = self._plan
                moments = moments.clone()
                moments[chosen] = self.twin_moments[index[chosen]].to(moments)
            return super().latents(moments)

        def drop(self, tokens: torch.Tensor, uncond: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
            if self._plan is not None and len(self._plan[1]):
                _, chosen, rng = self._plan
                tokens = tokens.clone()
                with torch.random.fork_rng(devices=[]):  # the PCA's draws leave the step's noise alone
                    for i in chosen.tolist():
                        tokens[i:i + 1] = procedures.adjust_rank(tokens[i:i + 1], float(rng.uniform(0.0, max_level)),
                                                                 keep_first_token=tokens.shape[1] == 65)
            return super().drop(tokens, uncond, keep)

    return SemanticTwinsUNetStage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--p", type=float, required=True, help="share of image-variation samples (0-1)")
    parser.add_argument("--max-level", type=float, default=0.3, help="semantic focus drawn from [0, this]")
    parser.add_argument("--extra", action="store_true",
                        help="add the twins to the image-variation batch instead of replacing its samples")
    parser.add_argument("--patterns", type=int, default=0, help="position code patterns (0: no code)")
    parser.add_argument("--scale", type=float, default=0.0, help="position code scale")
    parser.add_argument("--encoders-from", required=True, help="vd-nano file whose encoders to reuse")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if not 0 < args.p <= 1 or not 0 <= args.max_level < 0.5 or args.patterns < 0 or (args.patterns and args.scale <= 0):
        parser.error("--p takes (0, 1], --max-level [0, 0.5), --patterns >= 0, and a code needs --scale > 0")
    return train_with_unet_stage(semantic_twins_stage(args.p, args.max_level, args.extra), args.out, args.encoders_from, args.threads,
                                 args.patterns, args.scale)


if __name__ == "__main__":
    sys.exit(main())
