"""Stage 3, the Optimus text VAE, on captions and fragments.

Teacher-forced cross-entropy + beta * KL (beta ramped up), and an edit loss that teaches the
decoder to read VD's I2T2I latent edit of a caption (swap the latent direction of one word's
phrase for another's) as the edited caption. At the end mu is rescaled to unit RMS by folding
the scale into the bias-free ``encoder.linear`` (mu half) and the decoder's latent adapters
(``fold_latent_scale``), so the model code needs no scale field and VD's "the latent is mu"
stays true.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vdnodes.model import procedures
from vdnodes.nano import scenes as sc
from vdnodes.nano.training.budget import step_seed
from vdnodes.nano.training.data import EditCases, describe, edit_cases
from vdnodes.nano.training.stage import Stage, round_to_fp16


class OptimusStage(Stage):
    name, title, prefixes = "optimus", "Optimus text VAE", ("vae_text.",)
    config_parts, settings = ("optimus",), ("calibration",)
    BETA = 0.05  # KL weight after the ramp
    FREE_BITS = 0.05  # nats per latent dimension below which KL is not penalised
    RAMP = 0.3  # share of the steps over which the posterior noise and beta ramp up from 0
    P_FRAGMENT = 0.25
    # 2: + edit loss; rounded to fp16 at the end. VD's I2T2I edits a caption latent z with
    # phrase latents, z - (z . n^) n^ + p (``procedures.edit_text_latent``); a text VAE trained
    # only to reconstruct decodes that edit as the new caption for 0% of colour edits
    # (benchmarks/nano_optimus_edit.py), so the decoder is also taught to read it so.
    RECIPE = 2
    EDIT_WEIGHT = 0.5
    EDIT_SHARE = 0.25  # edits per step, as a share of the batch

    def parameters(self) -> list[nn.Parameter]:
        return list(self.model.vae_text.parameters())

    def edited_latents(self, cases: EditCases) -> torch.Tensor:
        """VD's latent edit of each case's caption mean ``[B, Z]``."""
        opt = self.model.vae_text
        return procedures.edit_text_latent(opt.encode(cases.captions), opt.encode(cases.removed),
                                           opt.encode(cases.added))

    def edit_loss(self, step: int) -> torch.Tensor:
        """Cross-entropy of decoding the edited latent of a caption as the caption of the edited scene."""
        rng = np.random.default_rng([step_seed(self.seed, self.name, step), 0, 2])  # not the batch's stream
        cases = edit_cases(rng, max(1, int(self.budget.batch * self.EDIT_SHARE)))
        opt = self.model.vae_text
        dec = self.decoder_ids(cases.targets)
        logits, _ = opt.decoder_logits(dec[:, :-1], self.edited_latents(cases))
        target = dec[:, 1:].masked_fill(dec[:, 1:] == opt.config.pad_token_id, -100)
        return F.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100)

    def decoder_ids(self, texts: Sequence[str]) -> torch.Tensor:
        """``<BOS> words <EOS>``, right-padded with ``<PAD>``: ``[B, L]``."""
        opt = self.model.vae_text
        cfg = opt.config
        rows = [[cfg.bos_token_id, *opt.decoder_tokenizer(t, add_special_tokens=False)["input_ids"], cfg.eos_token_id]
                for t in texts]
        width = max(len(r) for r in rows)
        return torch.tensor([r + [cfg.pad_token_id] * (width - len(r)) for r in rows], device=self.device)

    def step_loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        rng, scenes = self.batch(step)
        texts = [describe(s, rng, self.P_FRAGMENT)[0] for s in scenes]
        opt = self.model.vae_text
        ids = opt.tokenize(texts).to(self.device)  # [B, L]
        pooled = opt.encoder(input_ids=ids, attention_mask=(ids > 0).long()).pooler_output  # [B, C]
        mu, logvar = opt.encoder.linear(pooled).chunk(2, dim=-1)  # [B, Z] each
        # A text VAE's decoder learns to ignore a noisy latent before the encoder has made it
        # informative ("posterior collapse"); so it starts as a plain autoencoder and the
        # posterior noise and the KL weight ramp up together.
        ramp = min(1.0, step / max(1.0, self.RAMP * self.budget.steps))
        z = mu + ramp * torch.randn_like(mu) * (0.5 * logvar).exp()
        dec = self.decoder_ids(texts)  # [B, L]
        logits, _ = opt.decoder_logits(dec[:, :-1], z)  # [B, L-1, V]
        target = dec[:, 1:].masked_fill(dec[:, 1:] == opt.config.pad_token_id, -100)
        n_tokens = (target >= 0).sum()
        rec = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100, reduction="sum")
        kl_dims = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).mean(0)  # [Z], per sample
        kl = kl_dims.clamp(min=self.FREE_BITS).sum() * len(texts)
        loss = (rec + self.BETA * ramp * kl) / n_tokens
        edit = self.edit_loss(step)
        return loss + self.EDIT_WEIGHT * edit, {"ce": (rec / n_tokens).item(), "kl": kl_dims.sum().item(),
                                                "edit_ce": edit.item()}

    @torch.no_grad()
    def finish(self) -> dict[str, Any]:
        opt = self.model.vae_text
        rng, scenes = self.held_out(self.calibration)
        texts = [s.caption(int(rng.integers(len(sc.TEMPLATES)))) for s in scenes]
        mu = torch.cat([opt.encode(texts[i:i + 128]) for i in range(0, len(texts), 128)])
        scale = float(1.0 / mu.square().mean().sqrt())  # mu -> unit RMS
        fold_latent_scale(opt, scale)
        round_to_fp16(opt)
        decoded = opt.decode(opt.encode(texts[:64]), greedy=True)
        exact = np.mean([a == b for a, b in zip(decoded, texts[:64])])
        named = np.mean([sc.score_caption(s, d)["color"] and sc.score_caption(s, d)["shape"]
                         for s, d in zip(scenes[:64], decoded)])
        cases = edit_cases(rng, 64)
        edited = opt.decode(self.edited_latents(cases), greedy=True)
        edit_exact = np.mean([a == b for a, b in zip(edited, cases.targets)])
        return {"latent_scale": scale, "recon_exact": float(exact), "recon_color_shape": float(named),
                "edit_exact": float(edit_exact)}


def fold_latent_scale(optimus: nn.Module, scale: float) -> None:
    """Make Optimus' mu ``scale`` times larger without changing any decoded text.

    mu is the first half of the bias-free ``encoder.linear``; the decoder reads z only through
    the bias-free ``transformer.linear`` and ``linear_emb``, which are divided by the same scale.
    """
    z = optimus.config.latent_dim
    with torch.no_grad():
        optimus.encoder.linear.weight[:z].mul_(scale)
        optimus.decoder.transformer.linear.weight.div_(scale)
        optimus.decoder.transformer.linear_emb.weight.div_(scale)
