"""vd-nano image-VAE variants: which recipe keeps shapes and textures through encode -> decode?

    python benchmarks/nano_vae_variants.py [--variants shipped,factor2] [--steps 1500] [--threads 2]

Each variant trains stage 1 (``VAEStage``: batch 32, lr 1e-3, seed 0) for ``--steps`` steps
with the changes listed in ``VARIANTS``, then reconstructs (posterior mean) ``--n`` held-out
scenes and reads colour, shape, texture and size back with the checker: the same ceiling as
eval-nano's ``vae`` row. Writes ``benchmarks/results/nano_vae_variants.json`` (merged with the
variants already there) and a reconstruction grid per variant into ``--grids`` if given.
What it is not: the shipped recipe (``vdnodes/nano/train.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "nano_vae_variants.json"


@dataclasses.dataclass(frozen=True)
class Variant:
    """Stage 1 with these changes (the defaults are the shipped settings)."""

    ch: int = 16
    ch_mult: tuple[int, ...] = (1, 2, 4)  # (1, 2): downsampling 2, 16 x 16 latents
    latent_channels: int = 4
    edge_weight: float = 0.5
    fourier_weight: float = 0.0  # L1 of the difference of the 2-D Fourier transforms
    gan_weight: float = 0.0  # PatchGAN hinge loss on the reconstructions
    note: str = ""


VARIANTS: dict[str, Variant] = {
    "shipped": Variant(note="stage 1 as shipped (factor 4: 8 x 8 x 4 latents, width 16)"),
    "width32": Variant(ch=32, note="width 32 (4x the parameters)"),
    "edge2": Variant(edge_weight=2.0, note="image-gradient weight 2.0 instead of 0.5"),
    "fourier": Variant(fourier_weight=1.0, note="+ L1 of the 2-D Fourier transform (weight 1)"),
    "z8": Variant(latent_channels=8, note="8 latent channels instead of 4"),
    "patchgan": Variant(gan_weight=0.1, note="+ PatchGAN hinge loss (weight 0.1, from step 300)"),
    "factor2": Variant(ch_mult=(1, 2), note="factor 2: 16 x 16 x 4 latents"),
}
GAN_START = 300


def stage_class(variant: Variant) -> type:
    """``VAEStage`` with the variant's loss terms added."""
    import torch

    from vdnodes.nano import train as tr

    class VariantStage(tr.VAEStage):
        EDGE_WEIGHT = variant.edge_weight

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self._last: tuple[torch.Tensor, torch.Tensor, Any] | None = None
            if variant.gan_weight:
                torch.manual_seed(1)
                nn = torch.nn
                self.disc = nn.Sequential(  # 32 px -> 8 x 8 patch logits
                    nn.Conv2d(3, 32, 4, 2, 1), nn.LeakyReLU(0.2),
                    nn.Conv2d(32, 64, 4, 2, 1), nn.GroupNorm(8, 64), nn.LeakyReLU(0.2),
                    nn.Conv2d(64, 64, 3, 1, 1), nn.GroupNorm(8, 64), nn.LeakyReLU(0.2),
                    nn.Conv2d(64, 1, 3, 1, 1))
                self.disc_opt = torch.optim.AdamW(self.disc.parameters(), lr=2e-4, betas=(0.5, 0.9))

        def reconstruct(self, step: int):
            self._last = super().reconstruct(step)
            return self._last

        def step_loss(self, step: int):
            loss, metrics = super().step_loss(step)
            assert self._last is not None
            target, out, _ = self._last
            if variant.fourier_weight:
                diff = torch.fft.rfft2(out, norm="ortho") - torch.fft.rfft2(target, norm="ortho")
                loss = loss + variant.fourier_weight * diff.abs().mean()
            if variant.gan_weight and step >= GAN_START:
                for p in self.disc.parameters():
                    p.requires_grad_(True)
                d_loss = torch.relu(1 - self.disc(target)).mean() + torch.relu(1 + self.disc(out.detach())).mean()
                self.disc_opt.zero_grad()
                d_loss.backward()
                self.disc_opt.step()
                for p in self.disc.parameters():
                    p.requires_grad_(False)
                loss = loss - variant.gan_weight * self.disc(out).mean()
            return loss, metrics

    return VariantStage


def run(name: str, steps: int, n: int, grids: Path | None) -> dict[str, Any]:
    import numpy as np
    import torch

    from vdnodes.model import vd as vdm
    from vdnodes.nano import train as tr
    from vdnodes.nano.checker import check_image
    from vdnodes.nano.config import nano_config
    from vdnodes.nano.quality import Cases, _render, _scenes

    variant = VARIANTS[name]
    base = nano_config()
    z = variant.latent_channels
    config = dataclasses.replace(
        base, vae=dataclasses.replace(base.vae, ch=variant.ch, ch_mult=variant.ch_mult, z_channels=z, embed_dim=z),
        unet=dataclasses.replace(base.unet, image_channels=z))
    full = tr.BUDGETS["full"]
    plan = dataclasses.replace(full, vae=dataclasses.replace(full.vae, steps=steps))
    torch.manual_seed(0)
    model = vdm.build(config, ("vae_image.encoder", "vae_image.decoder"), device="cpu")
    stage = stage_class(variant)(model, plan, 0, torch.device("cpu"))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        tr._run_stage(stage, tr._Checkpoints(Path(folder), {"vae": {"variant": name}}), checkpoint_every=10**9,
                      progress=True, on_step=None, index=0)
    seconds = time.perf_counter() - started
    scenes = _scenes(n, 99)
    images = _render(scenes, torch.device("cpu"))
    with torch.no_grad():
        recon = model.vae_image.decode(model.vae_image.encode(images, sample=False))
    got = [check_image(x) for x in recon]
    rates = {a: float(np.mean([g[a] == getattr(s, a) for g, s in zip(got, scenes)]))
             for a in ("color", "shape", "texture", "size")}
    if grids is not None:
        from vdnodes.nano.grids import flow_grids

        grids.mkdir(parents=True, exist_ok=True)
        flow_grids({"vae": Cases(scenes, images=recon, extra={"sources": images})})["vae"].save(
            grids / f"nano_vae_{name}.png")
    return {"variant": name, **dataclasses.asdict(variant), "steps": steps, "n": n,
            "threads": torch.get_num_threads(), "seconds": round(seconds),
            "parameters": sum(p.numel() for p in model.vae_image.parameters()), **rates}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--grids", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        print(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    records = json.loads(args.out.read_text())["variants"] if args.out.is_file() else {}
    for name in names:
        records[name] = run(name, args.steps, args.n, args.grids)
        r = records[name]
        print(f"{name}: shape {r['shape']:.1%}, texture {r['texture']:.1%}, colour {r['color']:.1%} "
              f"({r['seconds']} s)", flush=True)
        from vdnodes.core.fileio import atomic_write_text

        atomic_write_text(args.out, json.dumps({"variants": records}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
