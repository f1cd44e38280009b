"""Stage 4, the UNet: all flows in one model, against the frozen encoders of the stages before.

One flow per step from a fixed cycle (t2i, i2i, i2t, t2t and dual-guided), epsilon-prediction
MSE on VD's schedule (min-SNR weighted, image outputs weighted towards the shape's latent
cells), 10% of contexts replaced by the unconditional one (text: CLIP of ""; image: zeros) for
guidance, and an EMA of the weights, which is what ships. The frozen image encoders would cost
more than the UNet itself, so a pool of scenes is encoded once (``ScenePool``) and batches are
drawn from it; text is encoded per batch.

Dual-guided batches teach VD's image + text editing on scenes: the image context comes from
scene A, the text names another colour (a full caption of some scene of that colour, or a
fragment), and the target is A recoloured.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from vdnodes.model import procedures, sampling
from vdnodes.model.conditioning import ContextInput
from vdnodes.model.vae import DiagonalGaussian
from vdnodes.nano import scenes as sc
from vdnodes.nano.training.budget import STAGES, step_seed
from vdnodes.nano.training.data import describe, describe_with, latent_masks, recolor, render_batch, restyle
from vdnodes.nano.training.stage import Stage


def object_weighted(error: torch.Tensor, mask: torch.Tensor, weight: float) -> torch.Tensor:
    """Per sample ``(mean(error) + weight * mean of error over mask) / (1 + weight)``: ``[B]``.

    ``error`` ``[B, C, h, w]``, ``mask`` ``[B, 1, h, w]`` (``latent_masks``). An error spread evenly
    costs its plain mean whatever the weight, so flows with and without masks stay balanced.
    """
    mean = error.flatten(1).mean(1)  # [B]
    if not weight:
        return mean
    on_object = (error * mask).sum((1, 2, 3)) / (mask.sum((1, 2, 3)) * error.shape[1])  # [B]
    return (mean + weight * on_object) / (1 + weight)


@dataclass
class ScenePool:
    """Scenes encoded once for the UNet stage: the frozen encoders would otherwise cost more than the UNet.

    ``moments``: the VAE posterior of each scene ``[N, 8, h, w]`` (a fresh latent is sampled every
    time, as VD samples it); ``recolored_moments``: the same for ``recolored`` (the dual-guided
    targets); ``tokens``: CLIP image context ``[N, 65, D]`` (fp16 to halve the memory);
    ``masks``: where the shape is on the latent grid ``[N, 1, h, w]`` (``latent_masks``; a
    recoloured or restyled twin has its scene's geometry, so its mask too); ``restyled_moments``:
    the posterior of each scene's ``restyle`` (the semantic-focus targets).
    """

    scenes: list[sc.Scene]
    recolored: list[sc.Scene]
    moments: torch.Tensor
    recolored_moments: torch.Tensor
    tokens: torch.Tensor
    masks: torch.Tensor
    restyled_moments: torch.Tensor


class UNetStage(Stage):
    name, title, prefixes = "unet", "UNet, all flows", ("unet.",)
    config_parts, settings = ("unet",), ("pool",)
    # 2: dual-guided texts describe the target; min-SNR weighting. 4: object-weighted loss.
    # 5: semantic focus -> restyled twin on some image-variation samples; a third i2i turn
    RECIPE = 5
    after = ("vae", "clip", "optimus")
    # One flow per step, in this cycle: image outputs are harder, so they come more often. Recipe 5
    # gives one of text->image's three turns to image variation, which also learns semantic focus
    # there (the twins below); text->image had the margin (shape 89% against 80%).
    CYCLE = ("t2i", "i2t", "i2i", "t2i", "dual", "t2t", "i2i", "i2t", "i2i", "dual")
    P_UNCOND = 0.1  # per sample: the context becomes the unconditional one (guidance)
    P_FRAGMENT = 0.2  # text contexts that name only some attributes
    P_PATCH_ONLY = 0.1  # per batch: image context without its CLS token (I2T2I uses patch tokens)
    EMA_DECAY = 0.999
    # Min-SNR-gamma loss weighting (Hang et al. 2023): eps-loss weight min(SNR, 5) / SNR. Steps
    # below t ~ 150 (SNR > 5) carry the largest, least learnable errors (fine detail and the VAE
    # posterior noise) and would dominate the gradient; shapes are decided at mid noise.
    MIN_SNR_GAMMA = 5.0
    # Image outputs: the loss is (mean error + OBJECT_WEIGHT * mean error over the shape's latent
    # cells, ``latent_masks``) / (1 + OBJECT_WEIGHT). A small shape covers a few of the 64 latent
    # cells, so with a plain mean the cells that decide its shape carry a small share of the gradient.
    OBJECT_WEIGHT = 1.0
    # Image variation, per sample: the context under VD's semantic focus (a level drawn from
    # [0, SEMANTIC_FOCUS_MAX], where the first principal component is zeroed), the target the
    # scene's restyled twin: its shape, size and place in a random colour, texture and background.
    # VD's UNet draws a style-less context in some style because it has seen millions of images;
    # vd-nano's, trained on contexts that always name one, drew a muddle (docs/nano-history.md).
    # Taught as the dual-guided flow is: a context and the scene it should give. The twins are
    # added to the batch (about 13 rows), so plain image variation keeps all its samples (given
    # their place, it fell from 83.0% to 74.0%; docs/nano-history.md). 0.2 on three i2i turns
    # in ten gives as many twins as the 0.3 on two that met the ordering, and half as many again
    # plain image-variation samples (with 0.3 on two turns it fell to 77.0%).
    # The focus takes a full SVD (``adjust_rank(exact=True)``): VD's components to float precision,
    # at a 30th of the randomised PCA's time on 64 x 64 token matrices (0.18 s saved per image-variation step).
    P_SEMANTIC_TWIN = 0.2
    SEMANTIC_FOCUS_MAX = 0.3

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.alphas_cumprod = sampling.vd_alphas_cumprod().to(self.device)  # [1000]
        snr = self.alphas_cumprod / (1 - self.alphas_cumprod)
        self.snr_weight = snr.clamp(max=self.MIN_SNR_GAMMA) / snr  # [1000], min-SNR-gamma for eps targets
        with torch.no_grad():
            self.uncond_text = self.model.clip_text.encode([""])  # [1, T, D]
        self.ema = {k: p.detach().clone() for k, p in self.model.unet.named_parameters()}
        self._ema_pairs = ([p for _, p in self.model.unet.named_parameters()], list(self.ema.values()))
        self.pool: ScenePool | None = None

    def parameters(self) -> list[nn.Parameter]:
        return list(self.model.unet.parameters())

    # -- frozen encoders -------------------------------------------------------------------
    @torch.no_grad()
    def encode_pool(self, n: int, chunk: int = 256) -> ScenePool:
        """Render and encode ``n`` scenes (deterministic: a resumed run rebuilds the same pool)."""
        from tqdm.auto import tqdm

        rng = np.random.default_rng([self.seed, STAGES.index(self.name), 4242])
        scenes = [sc.sample_scene(rng) for _ in range(n)]
        recolored = [recolor(s, rng) for s in scenes]
        vae, clip = self.model.vae_image, self.model.clip_image
        moments, recolored_moments, tokens = [], [], []
        for i in tqdm(range(0, n, chunk), disable=not self.progress, desc="encoding the scene pool", leave=False):
            images = render_batch(scenes[i:i + chunk], self.device)
            moments.append(vae.posterior(images).moments)  # [b, 8, h, w]
            recolored_moments.append(vae.posterior(render_batch(recolored[i:i + chunk], self.device)).moments)
            tokens.append(clip.encode(images).half())  # [b, 65, D]
        moments = torch.cat(moments)
        masks = latent_masks(scenes, moments.shape[-1], self.device)
        rng = np.random.default_rng([self.seed, STAGES.index(self.name), 4343])
        restyled = [restyle(s, rng) for s in scenes]
        restyled_moments = torch.cat([vae.posterior(render_batch(restyled[i:i + chunk], self.device)).moments
                                      for i in range(0, n, chunk)])
        return ScenePool(scenes, recolored, moments, torch.cat(recolored_moments), torch.cat(tokens), masks,
                         restyled_moments)

    def latents(self, moments: torch.Tensor) -> torch.Tensor:
        """A posterior sample, scaled: what ``ImageVAE.encode`` returns."""
        return DiagonalGaussian(moments).sample() * self.model.vae_image.config.scale_factor  # [B, 4, h, w]

    @torch.no_grad()
    def text_latents(self, texts: list[str]) -> torch.Tensor:
        return self.model.vae_text.encode(texts)  # [B, 64], mu at unit RMS

    @torch.no_grad()
    def text_context(self, texts: list[str]) -> torch.Tensor:
        return self.model.clip_text.encode(texts)  # [B, T, D]

    def drop(self, tokens: torch.Tensor, uncond: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Per sample: ``tokens`` where ``keep``, else the unconditional context."""
        return torch.where(keep[:, None, None], tokens, uncond.expand_as(tokens))

    # -- one step -----------------------------------------------------------------------------
    def prepare(self) -> None:
        if self.pool is None:  # a pool handed over (a sweep's timing probe) is kept
            self.pool = self.encode_pool(self.plan.pool)

    def step_loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        pool = self.pool
        assert pool is not None, "prepare() builds the scene pool"
        flow = self.CYCLE[step % len(self.CYCLE)]
        rng = np.random.default_rng([step_seed(self.seed, self.name, step), 0, 1])
        index = rng.integers(len(pool.scenes), size=self.budget.batch)
        scenes = [pool.scenes[i] for i in index]
        index = torch.from_numpy(index).to(self.device)
        B = len(scenes)
        keep = torch.from_numpy(rng.random(B) >= self.P_UNCOND).to(self.device)  # [B] bool
        patch_only = bool(rng.random() < self.P_PATCH_ONLY)

        def texts_of(p_fragment: float) -> list[str]:
            return [describe(s, rng, p_fragment)[0] for s in scenes]

        # Semantic-focus twins (image variation only), from their own random stream: the rest of
        # the step draws what it would without them.
        twin_rng = np.random.default_rng([step_seed(self.seed, self.name, step), 78])
        twins = np.flatnonzero(twin_rng.random(B) < self.P_SEMANTIC_TWIN) if flow == "i2i" else np.empty(0, int)

        def image_ctx() -> ContextInput:
            tokens = pool.tokens[index].float()  # [B, 65, D]
            tokens = tokens[:, 1:] if patch_only else tokens
            return ContextInput(self.drop(tokens, torch.zeros_like(tokens[:1]), keep), "image")

        def text_ctx(texts: list[str]) -> ContextInput:
            return ContextInput(self.drop(self.text_context(texts), self.uncond_text, keep), "text")

        mask = pool.masks[index]  # [B, 1, h, w], read by image outputs
        if flow in ("t2i", "i2i"):
            x0, xtype = self.latents(pool.moments[index]), "image"
            contexts = [text_ctx(texts_of(self.P_FRAGMENT)) if flow == "t2i" else image_ctx()]
        elif flow == "dual":
            x0, xtype = self.latents(pool.recolored_moments[index]), "image"
            text_share = float(rng.uniform(0.3, 0.8))
            # The text describes the target (A recoloured) and always names its colour: a text
            # naming another scene's shape would teach the shared text context layers that shape
            # words can be ignored, which is exactly what t2i must not learn.
            texts = [describe_with(pool.recolored[i], rng, ("color",)) for i in index.tolist()]
            contexts = [dataclasses.replace(image_ctx(), weight=1.0 - text_share),
                        dataclasses.replace(text_ctx(texts), weight=text_share)]
        else:  # i2t, t2t: the target is a caption of the scene in a random wording
            x0, xtype = self.text_latents(texts_of(0.0)), "text"
            contexts = [image_ctx() if flow == "i2t" else text_ctx(texts_of(self.P_FRAGMENT))]

        if len(twins):  # image variation: the chosen scenes' twins follow the batch as more samples
            chosen = index[torch.from_numpy(twins).to(self.device)]
            focused = pool.tokens[chosen].float()
            focused = focused[:, 1:] if patch_only else focused
            for i in range(len(focused)):
                level = float(twin_rng.uniform(0.0, self.SEMANTIC_FOCUS_MAX))
                focused[i:i + 1] = procedures.adjust_rank(focused[i:i + 1], level, keep_first_token=not patch_only,
                                                          exact=True)
            x0 = torch.cat([x0, self.latents(pool.restyled_moments[chosen])])
            contexts = [ContextInput(torch.cat([contexts[0].tokens, focused]), "image")]
            mask = torch.cat([mask, pool.masks[chosen]])

        t = torch.randint(0, len(self.alphas_cumprod), (len(x0),), device=self.device)  # [B (+ twins)]
        a = self.alphas_cumprod[t].view(-1, *[1] * (x0.ndim - 1))
        noise = torch.randn_like(x0)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        eps = self.model.unet(xt, t, xtype, contexts)
        error = (eps - noise).square()  # [B, C, ...]
        per_sample = error.flatten(1).mean(1)  # [B]
        weighted = object_weighted(error, mask, self.OBJECT_WEIGHT) if xtype == "image" else per_sample
        loss = (weighted * self.snr_weight[t]).mean()
        return loss, {f"loss_{flow}": per_sample[:B].mean().item()}

    # -- EMA ------------------------------------------------------------------------------------
    @torch.no_grad()
    def after_step(self, step: int) -> None:
        decay = min(self.EMA_DECAY, (1 + step) / (10 + step))
        params, ema = self._ema_pairs
        torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - decay)

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {f"ema.{k}": v for k, v in self.ema.items()}

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        for k in self.ema:
            self.ema[k].copy_(state[f"ema.{k}"])

    @torch.no_grad()
    def finish(self) -> dict[str, Any]:
        for k, p in self.model.unet.named_parameters():
            p.copy_(self.ema[k])  # what ships is the EMA
        self.pool = None
        return {}
