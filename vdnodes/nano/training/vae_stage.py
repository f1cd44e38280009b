"""Stage 1, the image VAE: L1 + L2 + image-gradient reconstruction and a small KL.

At the end the weights are rounded to fp16 and the latent scale is measured (1 / RMS of
posterior samples) and written into ``VAEConfig.scale_factor``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from vdnodes.model.vae import DiagonalGaussian
from vdnodes.nano.training.data import render_batch
from vdnodes.nano.training.evaluate import image_accuracy
from vdnodes.nano.training.stage import Stage, round_to_fp16


class VAEStage(Stage):
    name, title, prefixes = "vae", "image VAE", ("vae_image.",)
    config_parts, settings = ("vae",), ("calibration",)
    RECIPE = 2  # 2: rounded to fp16 before calibrating (``round_to_fp16``)
    KL_WEIGHT = 1e-5  # per latent element, against per-pixel reconstruction terms
    EDGE_WEIGHT = 0.5

    def parameters(self) -> list[nn.Parameter]:
        return list(self.model.vae_image.parameters())

    def reconstruct(self, step: int) -> tuple[torch.Tensor, torch.Tensor, DiagonalGaussian]:
        """(target, reconstruction, posterior) of step ``step``'s batch; images ``[B, 3, 32, 32]`` in [-1, 1]."""
        _, scenes = self.batch(step)
        images = render_batch(scenes, self.device)  # [B, 3, 32, 32]
        vae = self.model.vae_image
        post = vae.posterior(images)
        out = vae.decoder(vae.post_quant_conv(post.sample()))  # about [-1, 1]
        return images * 2 - 1, out, post

    def step_loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        target, out, post = self.reconstruct(step)
        err = out - target
        l1, l2 = err.abs().mean(), err.square().mean()
        edge = (err.diff(dim=-1).abs().mean() + err.diff(dim=-2).abs().mean())  # image-gradient L1
        kl = 0.5 * (post.mean.square() + post.std.square() - 1.0 - post.logvar).mean()
        loss = l1 + l2 + self.EDGE_WEIGHT * edge + self.KL_WEIGHT * kl
        return loss, {"l1": l1.item(), "kl": kl.item()}

    @torch.no_grad()
    def finish(self) -> dict[str, Any]:
        vae = self.model.vae_image
        round_to_fp16(vae)
        _, scenes = self.held_out(self.calibration)
        z = torch.cat([vae.posterior(render_batch(scenes[i:i + 64], self.device)).sample()
                       for i in range(0, len(scenes), 64)])
        scale = float(1.0 / z.square().mean().sqrt())  # unit RMS, like LDM's 1 / std
        self.apply({"scale_factor": scale})
        checked = scenes[:64]
        recon = vae.decode(vae.encode(render_batch(checked, self.device), sample=False))
        return {"scale_factor": scale, **image_accuracy(checked, recon, prefix="recon_")}

    def apply(self, result: dict[str, Any]) -> None:
        vae_config = dataclasses.replace(self.model.config.vae, scale_factor=float(result["scale_factor"]))
        self.model.config.vae = vae_config
        self.model.vae_image.config = vae_config
