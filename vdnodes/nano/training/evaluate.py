"""Checking a trained model with the rule-based checker: a quick self-check of every flow."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from vdnodes.model import sampling
from vdnodes.model import vd as vdm
from vdnodes.model.conditioning import ContextInput
from vdnodes.nano import scenes as sc
from vdnodes.nano.config import IMAGE_SIZE
from vdnodes.nano.training.data import recolor, render_batch


def image_accuracy(scenes: Sequence[sc.Scene], images: torch.Tensor, prefix: str = "",
                    color_of: Sequence[str] | None = None) -> dict[str, float]:
    """Share of ``images`` whose checked colour and shape are the scenes' (``color_of`` overrides colours)."""
    from vdnodes.nano.checker import check_image

    got = [check_image(img) for img in images.float().cpu()]
    colors = color_of or [s.color for s in scenes]
    color = np.mean([g["color"] == c for g, c in zip(got, colors)])
    shape = np.mean([g["shape"] == s.shape for g, s in zip(got, scenes)])
    both = np.mean([g["color"] == c and g["shape"] == s.shape for g, c, s in zip(got, colors, scenes)])
    return {f"{prefix}color": float(color), f"{prefix}shape": float(shape), f"{prefix}color_shape": float(both)}


@torch.no_grad()
def evaluate(model: vdm.VersatileDiffusion, n: int = 32, steps: int = 25, guidance: float = 7.5,
             seed: int = 12345) -> dict[str, float]:
    """Quick self-check of every flow on ``n`` held-out scenes (DDIM, guidance as VD's 7.5).

    t2i / i2i / dual: colour and shape read back by the checker (dual: the text's colour,
    the image's shape, text share 0.5); i2t / t2t: colour and shape words of greedy captions.
    The zeros image context and CLIP("") are the unconditionals, as in training.
    """
    device = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    scenes = [sc.sample_scene(rng) for _ in range(n)]
    images = render_batch(scenes, device)
    captions = [s.caption() for s in scenes]
    g = torch.Generator().manual_seed(seed)
    image_ctx = model.clip_image.encode(images)
    text_ctx = model.clip_text.encode(captions)
    uncond_text = model.clip_text.unconditional(n)

    def run(xtype: str, conds: list[ContextInput], unconds: list[ContextInput]) -> torch.Tensor:
        side = IMAGE_SIZE // model.config.vae.downsample_factor
        shape = (n, model.config.vae.embed_dim, side, side) if xtype == "image" else (n, model.config.unet.text_dim)
        x = sampling.initial_noise(shape, g, device=device)
        denoise = sampling.cfg_denoiser(model.unet, xtype, conds, unconds, guidance)
        return sampling.sample("ddim", denoise, x, steps)

    def words(latent: torch.Tensor, expected: Sequence[sc.Scene]) -> float:
        texts = model.vae_text.decode(latent, greedy=True)
        return float(np.mean([all(sc.score_caption(s, t)[k] for k in ("color", "shape"))
                              for s, t in zip(expected, texts)]))

    img, txt = ContextInput(image_ctx, "image"), ContextInput(text_ctx, "text")
    zeros, empty = ContextInput(torch.zeros_like(image_ctx), "image"), ContextInput(uncond_text, "text")
    out: dict[str, float] = {}
    out.update(image_accuracy(scenes, model.vae_image.decode(run("image", [txt], [empty])), "t2i_"))
    out.update(image_accuracy(scenes, model.vae_image.decode(run("image", [img], [zeros])), "i2i_"))
    out["i2t_color_shape"] = words(run("text", [img], [zeros]), scenes)
    out["t2t_color_shape"] = words(run("text", [txt], [empty]), scenes)
    targets = [recolor(s, rng) for s in scenes]
    dual_text = model.clip_text.encode([t.color for t in targets])  # the colour word, as in eval-nano
    dual = run("image", [dataclasses.replace(img, weight=0.5), ContextInput(dual_text, "text", 0.5)],
               [dataclasses.replace(zeros, weight=0.5), dataclasses.replace(empty, weight=0.5)])
    out.update(image_accuracy(scenes, model.vae_image.decode(dual), "dual_", color_of=[t.color for t in targets]))
    return out
