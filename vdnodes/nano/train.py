"""Training vd-nano from scratch: image VAE, CLIP, Optimus, then the four-flow UNet.

Read top to bottom:
- budgets (steps, batch sizes, learning rates per stage; ``"full"`` and ``"smoke"``);
- text helpers: captions with a random template, *fragments* ("red", "a large circle",
  "on a blue background") and which scenes a text describes;
- the four stages. Each is a small class with ``parameters()`` and ``step_loss(step)``:
  1. ``vae``: the image VAE, L1 + L2 + image-gradient reconstruction + a small KL; at the
     end the latent scale is measured (1 / RMS of posterior samples) and written into
     ``VAEConfig.scale_factor``;
  2. ``clip``: CLIP text and vision towers, symmetric InfoNCE between pooled projections,
     with soft targets because one text can describe several scenes of a batch;
  3. ``optimus``: the text VAE on captions and fragments (teacher-forced cross-entropy +
     beta * KL, beta ramped up). At the end mu is rescaled to unit RMS by folding the scale
     into the bias-free ``encoder.linear`` (mu half) and the decoder's latent adapters, so
     the model code needs no scale field and VD's "the latent is mu" stays true. An edit
     loss teaches the decoder to read VD's I2T2I latent edit of a caption (swap the latent
     direction of one word's phrase for another's) as the edited caption;
  4. ``unet``: all flows in one model, one flow per step from a fixed cycle (t2i, i2i,
     i2t, t2t and dual-guided), epsilon-prediction MSE on VD's schedule, 10% of contexts
     replaced by the unconditional one (text: CLIP of ""; image: zeros) for guidance, and
     an EMA of the weights, which is what ships. The frozen image encoders would cost more
     than the UNet itself, so a pool of scenes is encoded once (VAE posterior moments, CLIP
     image tokens) and batches are drawn from it; text is encoded per batch;
- each encoder stage ends by rounding its weights to fp16 (as the file ships them), so the
  stages after it train against exactly the shipped encoders;
- the loop: deterministic (the data and every random draw of step ``k`` come from
  ``(seed, stage, k)``), resumable (safetensors weights + ``torch.save``'d optimizer state
  + a JSON state per stage, written every ``checkpoint_every`` steps, at the end of a stage
  and on Ctrl-C), tqdm progress;
- ``evaluate``: a quick self-check of every flow with the rule-based checker;
- ``train_nano`` (the entry point) and ``main`` (CLI); loading and saving the shipped file is
  ``weights.py`` (``load_nano``, ``save_nano``).

Dual-guided batches teach VD's image + text editing on scenes: the image context comes from
scene A, the text names another colour (a full caption of some scene of that colour, or a
fragment), and the target is A recoloured. Every module stays in eval mode (no dropout: the
data is unlimited, and draws stay deterministic).

What it is not: no model code (``vdnodes.model``), no scene drawing (``scenes.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vdnodes.core.fileio import new_file_mode
from vdnodes.model import checkpoints as ck
from vdnodes.model import procedures, sampling
from vdnodes.model import vd as vdm
from vdnodes.model.conditioning import ContextInput
from vdnodes.model.configs import VDConfig
from vdnodes.model.vae import DiagonalGaussian
from vdnodes.nano import scenes as sc
from vdnodes.nano import host as hs
from vdnodes.nano.config import IMAGE_SIZE, nano_config
from vdnodes.nano.tokenizers import build_tokenizers, tokenizer_info
from vdnodes.nano.weights import (  # noqa: F401 (load_nano re-exported)
    NANO_WEIGHTS, WEIGHTS_NAME, WeightsComparison, compare_tensors, compare_weights, load_nano, save_nano,
    training_record)

STAGES = ("vae", "clip", "optimus", "unet")

# ---------------------------------------------------------------------------------------------
# Budgets


@dataclass(frozen=True)
class StageBudget:
    """Optimiser steps, batch size and peak learning rate of one stage (linear warm-up, cosine decay)."""

    steps: int
    batch: int
    lr: float
    warmup: int = 100


@dataclass(frozen=True)
class Budget:
    name: str
    vae: StageBudget
    clip: StageBudget
    optimus: StageBudget
    unet: StageBudget
    checkpoint_every: int = 250
    calibration: int = 512  # samples used to measure the latent scales
    pool: int = 20_000  # scenes encoded once for the UNet stage (VAE posterior + CLIP image tokens)
    eval_samples: int = 32  # per flow in ``evaluate`` (0: no evaluation)
    eval_steps: int = 25  # DDIM steps in ``evaluate``

    def stage(self, name: str) -> StageBudget:
        return getattr(self, name)


BUDGETS: dict[str, Budget] = {
    # About 2 hours on 2 idle CPU cores (docs/nano.md section 4 has the measured throughput):
    # VAE 15, CLIP 18, Optimus with the edit loss 9, UNet 72-76, pool + calibration + evaluation 2.
    # The UNet's 11,500 steps (10,000 until stop 38) buy back what the twins cost the other flows.
    "full": Budget(
        "full",
        vae=StageBudget(steps=6000, batch=32, lr=1e-3, warmup=100),
        clip=StageBudget(steps=3000, batch=128, lr=1e-3, warmup=100),
        optimus=StageBudget(steps=5000, batch=128, lr=1e-3, warmup=100),
        unet=StageBudget(steps=11_500, batch=64, lr=6e-4, warmup=300),
    ),
    # Seconds: checks the pipeline end to end; the model it makes is not useful.
    "smoke": Budget(
        "smoke",
        vae=StageBudget(steps=20, batch=8, lr=1e-3, warmup=2),
        clip=StageBudget(steps=20, batch=16, lr=1e-3, warmup=2),
        optimus=StageBudget(steps=20, batch=16, lr=1e-3, warmup=2),
        unet=StageBudget(steps=20, batch=8, lr=5e-4, warmup=2),
        checkpoint_every=10, calibration=32, pool=64, eval_samples=0,
    ),
}


def learning_rate(budget: StageBudget, step: int) -> float:
    """Linear warm-up to ``lr``, then cosine decay to 10% of it at the last step."""
    if step < budget.warmup:
        return budget.lr * (step + 1) / budget.warmup
    progress = (step - budget.warmup) / max(1, budget.steps - budget.warmup)
    return budget.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def step_seed(seed: int, stage: str, step: int) -> int:
    """The seed of everything random in step ``step`` of ``stage`` (data, noise, dropout of contexts)."""
    return (seed * 1_000_003 + STAGES.index(stage) * 100_000_007 + step) % (2**62)


# ---------------------------------------------------------------------------------------------
# Texts: captions, fragments, and which scenes a text describes

ATTRIBUTES = ("color", "shape", "texture", "background", "size")
Constraints = dict[str, str]


def caption_constraints(scene: sc.Scene, template: int) -> Constraints:
    """What a full caption says: colour, shape, background, texture (no word = solid), size if named."""
    named = {"color": scene.color, "shape": scene.shape, "background": scene.background, "texture": scene.texture}
    if "{size}" in sc.TEMPLATES[template]:
        named["size"] = scene.size
    return named


def _articles(text: str) -> str:
    words = text.split()
    return " ".join("an" if w == "a" and i + 1 < len(words) and words[i + 1][0] in "aeiou" else w
                    for i, w in enumerate(words))


def fragment(scene: sc.Scene, rng: np.random.Generator, require: Sequence[str] = ()) -> tuple[str, Constraints]:
    """A partial description of ``scene``: a random subset of its attributes, always with ``require``.

    E.g. "red", "a large striped circle", "a green background", "a blue square on a red background".
    """
    keep = {a for a in ATTRIBUTES if rng.random() < 0.5} | set(require)
    if scene.texture == "solid":
        keep.discard("texture")  # captions never name "solid"
    if not keep:
        keep = {"color" if rng.random() < 0.5 else "shape"}
    words = [w for a, w in (("size", scene.size), ("texture", sc.TEXTURE_ADJECTIVE[scene.texture]),
                            ("color", scene.color), ("shape", scene.shape)) if a in keep]
    text = ("a " if "shape" in keep else "") + " ".join(words)
    if "background" in keep:
        text = (text + " on a " if text else "a ") + f"{scene.background} background"
    return _articles(text), {a: getattr(scene, a) for a in keep}


def describe_with(scene: sc.Scene, rng: np.random.Generator, require: Sequence[str]) -> str:
    """A full caption (half the time) or a fragment of ``scene`` naming at least ``require``."""
    if rng.random() < 0.5:
        return scene.caption(int(rng.integers(len(sc.TEMPLATES))))
    return fragment(scene, rng, require=require)[0]


def describe(scene: sc.Scene, rng: np.random.Generator, p_fragment: float) -> tuple[str, Constraints]:
    """A fragment with probability ``p_fragment``, else the full caption with a random template."""
    if rng.random() < p_fragment:
        return fragment(scene, rng)
    template = int(rng.integers(len(sc.TEMPLATES)))
    return scene.caption(template), caption_constraints(scene, template)


def matches(constraints: Sequence[Constraints], scenes: Sequence[sc.Scene]) -> torch.Tensor:
    """``[T, S]`` float: 1 where scene s has every attribute text t names."""
    return torch.tensor([[float(all(getattr(s, a) == v for a, v in c.items())) for s in scenes]
                         for c in constraints])


def recolor(scene: sc.Scene, rng: np.random.Generator) -> sc.Scene:
    """``scene`` in another colour (not its own, not its background's): the dual-guided target."""
    choices = [c for c in sc.COLORS if c not in (scene.color, scene.background)]
    return dataclasses.replace(scene, color=choices[int(rng.integers(len(choices)))])


def restyle(scene: sc.Scene, rng: np.random.Generator) -> sc.Scene:
    """``scene``'s shape, size and place in a random colour, texture and background.

    What VD's semantic focus should draw from a scene's context: the UNet stage's restyled twin.
    """
    background = list(sc.COLORS)[int(rng.integers(len(sc.COLORS)))]
    colors = [c for c in sc.COLORS if c != background]
    return dataclasses.replace(scene, background=background, color=colors[int(rng.integers(len(colors)))],
                               texture=sc.TEXTURES[int(rng.integers(len(sc.TEXTURES)))],
                               seed=int(rng.integers(2**31)))


EDITED = ("color", "shape")  # what an I2T2I edit changes in the Optimus stage's edit loss


def change_attribute(scene: sc.Scene, attribute: str, rng: np.random.Generator) -> sc.Scene:
    """``scene`` with ``attribute`` (``"color"`` or ``"shape"``) set to another value (a colour never the background's)."""
    if attribute == "color":
        return recolor(scene, rng)
    choices = [s for s in sc.SHAPES if s != scene.shape]
    return dataclasses.replace(scene, shape=choices[int(rng.integers(len(choices)))])


@dataclass
class EditCases:
    """I2T2I text edits: ``captions[i]`` must become ``targets[i]`` by swapping ``removed[i]`` for ``added[i]``."""

    captions: list[str]
    removed: list[str]
    added: list[str]
    targets: list[str]
    edited: list[sc.Scene]  # the scene each target describes


def edit_cases(rng: np.random.Generator, n: int, attributes: Sequence[str] = EDITED) -> EditCases:
    """``n`` random scenes, each with one of ``attributes`` changed; one caption template per pair."""
    scenes = [sc.sample_scene(rng) for _ in range(n)]
    changed = [attributes[int(rng.integers(len(attributes)))] for _ in scenes]
    edited = [change_attribute(s, a, rng) for s, a in zip(scenes, changed)]
    templates = [int(rng.integers(len(sc.TEMPLATES))) for _ in scenes]
    return EditCases([s.caption(t) for s, t in zip(scenes, templates)],
                     [getattr(s, a) for s, a in zip(scenes, changed)],
                     [getattr(e, a) for e, a in zip(edited, changed)],
                     [e.caption(t) for e, t in zip(edited, templates)], edited)


def round_to_fp16(module: nn.Module) -> None:
    """Round ``module``'s floating-point weights to fp16 in place (values as vd-nano ships them).

    A finished encoder stage does this before calibrating, so every later stage trains
    against exactly the weights the file will hold.
    """
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            if t.is_floating_point():
                t.copy_(t.half().float())


# Which attribute a hard-negative twin changes (shape most often: it is the hardest to see).
TWIN_ATTRIBUTES = ("shape",) * 4 + ("texture",) * 2 + ("size",) * 2 + ("color", "background")


def twin(scene: sc.Scene, rng: np.random.Generator) -> sc.Scene:
    """``scene`` with exactly one attribute changed (a hard negative for the contrastive loss).

    Position, noise seed and wording stay, so the two images differ only in what the changed
    word names; a size change that would leave the image picks the nearest valid centre.
    """
    attribute = TWIN_ATTRIBUTES[int(rng.integers(len(TWIN_ATTRIBUTES)))]
    values = {"shape": sc.SHAPES, "texture": sc.TEXTURES, "size": tuple(sc.SIZES), "color": tuple(sc.COLORS),
              "background": tuple(sc.COLORS)}[attribute]
    taken = {getattr(scene, attribute), scene.background if attribute == "color" else scene.color}
    choices = [v for v in values if v not in taken]
    value = choices[int(rng.integers(len(choices)))]
    if attribute != "size":
        return dataclasses.replace(scene, **{attribute: value})
    lo, hi = sc.position_range(value)
    return dataclasses.replace(scene, size=value, x=min(max(scene.x, lo), hi), y=min(max(scene.y, lo), hi))


def shape_covers(scenes: Sequence[sc.Scene]) -> np.ndarray:
    """``[B, 32, 32]``: how much of each pixel the scene's shape covers, as ``render`` draws it."""
    return np.stack([sc.shape_coverage(s.shape, s.x, s.y, s.half, IMAGE_SIZE) for s in scenes])


def latent_masks(scenes: Sequence[sc.Scene], side: int, device: torch.device, grow_px: int = 3) -> torch.Tensor:
    """Where each scene's shape is, on a ``side`` x ``side`` latent grid: ``[N, 1, side, side]`` in [0, 1].

    The shape's coverage grown by ``grow_px`` pixels (so a cross's notches, where it differs from
    a square or a diamond, count as its own), averaged over each latent cell's pixels.
    """
    cover = torch.from_numpy(shape_covers(scenes)).float()[:, None]  # [N, 1, H, W]
    cover = F.max_pool2d(cover, 2 * grow_px + 1, stride=1, padding=grow_px)
    return F.adaptive_avg_pool2d(cover, side).to(device)


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


def render_batch(scenes: Sequence[sc.Scene], device: torch.device) -> torch.Tensor:
    """Scenes -> images ``[B, 3, 32, 32]`` in [0, 1] on ``device``."""
    images = np.stack([sc.render(s, IMAGE_SIZE).transpose(2, 0, 1) for s in scenes]).astype(np.float32) / 255.0
    return torch.from_numpy(images).to(device)


# ---------------------------------------------------------------------------------------------
# Stages


def patch_coverage(scenes: Sequence[sc.Scene], patch: int) -> np.ndarray:
    """``[B, (32 / patch)^2]``: the share of each image patch the scene's shape covers, row-major."""
    side = IMAGE_SIZE // patch
    cover = shape_covers(scenes)  # [B, 32, 32]
    return cover.reshape(len(scenes), side, patch, side, patch).mean(axis=(2, 4)).reshape(len(scenes), -1)


class Stage:
    """One training stage: what it trains (``prefixes`` of the model's state dict) and its loss."""

    name = ""
    title = ""
    prefixes: tuple[str, ...] = ()
    # Bumped whenever what the stage trains on, or how, changes: checkpoints of an older recipe
    # (and of every stage built on it) are then refused instead of silently resumed.
    RECIPE = 1
    after: tuple[str, ...] = ()  # stages whose frozen weights this one trains against
    config_parts: tuple[str, ...] = ()  # ``VDConfig.to_dict()`` sections of what it trains
    settings: tuple[str, ...] = ()  # ``Budget`` fields besides its own ``StageBudget`` that it reads

    def __init__(self, model: vdm.VersatileDiffusion, plan: Budget, seed: int, device: torch.device,
                 progress: bool = False):
        self.model, self.plan, self.seed, self.device, self.progress = model, plan, seed, device, progress
        self.budget = plan.stage(self.name)
        self.calibration = plan.calibration

    def parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Called once before the first step of a run (also after resuming)."""

    def step_loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """Called after each optimiser step (the UNet's EMA)."""

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Tensors besides the model's to checkpoint (the EMA)."""
        return {}

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        pass

    def finish(self) -> dict[str, Any]:
        """After the last step: calibrate, evaluate; the result is stored and re-applied on resume."""
        return {}

    def apply(self, result: dict[str, Any]) -> None:
        """Re-apply a finished stage's result (e.g. a scale factor) when resuming past it."""

    # helpers
    def batch(self, step: int) -> tuple[np.random.Generator, list[sc.Scene]]:
        """The random generator of step ``step`` and the batch of scenes it drew first."""
        rng = np.random.default_rng([step_seed(self.seed, self.name, step), 0, 1])
        return rng, [sc.sample_scene(rng) for _ in range(self.budget.batch)]

    def held_out(self, n: int) -> tuple[np.random.Generator, list[sc.Scene]]:
        """Scenes the stage never trains on (a separate seed stream)."""
        rng = np.random.default_rng([self.seed, STAGES.index(self.name), 7_777])
        return rng, [sc.sample_scene(rng) for _ in range(n)]


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
        return {"scale_factor": scale, **_image_accuracy(checked, recon, prefix="recon_")}

    def apply(self, result: dict[str, Any]) -> None:
        vae_config = dataclasses.replace(self.model.config.vae, scale_factor=float(result["scale_factor"]))
        self.model.config.vae = vae_config
        self.model.vae_image.config = vae_config


class CLIPStage(Stage):
    name, title, prefixes = "clip", "CLIP text + image", ("clip_text.", "clip_image.")
    config_parts, settings = ("clip_text", "clip_vision"), ()
    # 2: hard-negative twins; 3: + per-token word loss on the text context tokens;
    # 4: + per-token attribute loss on the image context tokens; 5: rounded to fp16 at the end;
    # 6: every patch token also names the scene's appearance (colour, texture, background)
    RECIPE = 6
    LOGIT_SCALE = 1.0 / 0.07
    P_FRAGMENT = 0.3
    WORD_WEIGHT = 0.5  # weight of the per-token word loss against the contrastive loss
    PART_WEIGHT = 0.5  # weight of the image side's attribute loss (a sum of cross-entropies)
    # What the image head names: the scene's class token all five, a patch token what lies under it.
    PART_VALUES = {"shape": sc.SHAPES, "color": tuple(sc.COLORS), "texture": sc.TEXTURES,
                   "background": tuple(sc.COLORS), "size": tuple(sc.SIZES)}
    OBJECT_PARTS = ("shape", "color", "texture")  # named by a patch the object covers (>= half)
    APPEARANCE = ("color", "texture", "background")  # the scene's, named by every patch (recipe 6)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Training-only heads, checkpointed for resuming but never shipped. The contrastive loss
        # only shapes the pooled tokens, and the UNet reads all of them (docs/nano.md section 6):
        # - ``word_head`` reads each text context token's own word back from it; without it a
        #   changed shape word barely moved the tokens;
        # - ``part_head`` names, from each image context token, what lies under its patch (the
        #   object's shape, colour and texture, or the background colour; the class token: all
        #   of the scene's attributes); without it shape was linearly readable from the image
        #   tokens for 39% of scenes (chance 20%) against 100% for colour.
        text, vision = self.model.clip_text.model.config, self.model.clip_image.model.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(self.seed, self.name, -1))
            self.word_head = nn.Linear(text.projection_dim, text.vocab_size)
            self.part_head = nn.Linear(vision.projection_dim, sum(map(len, self.PART_VALUES.values())))
        self.word_head.to(self.device)
        self.part_head.to(self.device)

    def heads(self) -> dict[str, nn.Module]:
        return {"word_head": self.word_head, "part_head": self.part_head}

    def parameters(self) -> list[nn.Parameter]:
        return [*self.model.clip_text.parameters(), *self.model.clip_image.parameters(),
                *(p for head in self.heads().values() for p in head.parameters())]

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v for name, head in self.heads().items() for k, v in head.state_dict().items()}

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        for name, head in self.heads().items():
            head.load_state_dict({k.removeprefix(f"{name}."): v for k, v in state.items() if k.startswith(f"{name}.")})

    def part_loss(self, context: torch.Tensor, scenes: Sequence[sc.Scene]) -> torch.Tensor:
        """Cross-entropy of ``part_head`` naming what lies under each image context token ``[B, T, D]``."""
        logits = self.part_head(context).split([len(v) for v in self.PART_VALUES.values()], dim=-1)
        logits = dict(zip(self.PART_VALUES, logits))  # attribute -> [B, T, values]
        target = {a: torch.tensor([values.index(getattr(s, a)) for s in scenes], device=self.device)
                  for a, values in self.PART_VALUES.items()}  # attribute -> [B]
        # Summed over attributes, not averaged: colour and background are learned in a few
        # hundred steps and then cost nothing, and shape, the slow one, keeps its full weight.
        scene_loss = sum(F.cross_entropy(logits[a][:, 0], target[a]) for a in self.PART_VALUES)
        covered = torch.from_numpy(patch_coverage(scenes, self.model.clip_image.patch_size) >= 0.5).to(self.device)
        on_object = sum(F.cross_entropy(logits[a][:, 1:][covered], target[a][:, None].expand_as(covered)[covered])
                        for a in self.OBJECT_PARTS)
        off = ~covered
        on_background = F.cross_entropy(logits["background"][:, 1:][off],
                                        target["background"][:, None].expand_as(off)[off])
        # Every patch also names the scene's appearance, so all of an image's tokens share it: it
        # becomes their first principal component and a shift of all of them, which is what VD's
        # semantic focus removes on photographs (docs/nano.md section 6, stop 33).
        b, t = covered.shape
        appearance = sum(F.cross_entropy(logits[a][:, 1:].flatten(0, 1), target[a][:, None].expand(b, t).flatten())
                         for a in self.APPEARANCE)
        return scene_loss + on_object + on_background + appearance

    def embeddings(self, texts: list[str], images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised pooled projections: texts ``[T, D]``, images ``[B, D]``."""
        ct, ci = self.model.clip_text, self.model.clip_image
        ids, _ = ct.tokenize(texts)
        t = ct.model(input_ids=ids.to(self.device)).text_embeds  # [T, D]
        i = ci.model(pixel_values=ci.preprocess(images)).image_embeds  # [B, D]
        return F.normalize(t, dim=-1), F.normalize(i, dim=-1)

    def step_loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        rng, scenes = self.batch(step)
        # The second half of the batch are twins of the first (one attribute changed, shape most
        # often): in a random batch the scenes already differ in colour or background, so
        # nothing would push the towers to see shape, the attribute the UNet needs most.
        half = len(scenes) // 2
        scenes = scenes[:half] + [twin(s, rng) for s in scenes[:half]] + scenes[2 * half:]
        texts, named = zip(*(describe(s, rng, self.P_FRAGMENT) for s in scenes))
        ct, ci = self.model.clip_text, self.model.clip_image
        ids = ct.tokenize(list(texts))[0].to(self.device)  # [B, 77]
        out = ct.model.text_model(input_ids=ids)
        pooled = ct.model.text_projection(out.pooler_output)  # [B, D], the EOS token
        t = F.normalize(pooled, dim=-1)
        # [B, T, D], as the UNet reads it, less vd-nano's fixed position code (a constant the
        # part head would only have to learn to ignore)
        image_context = ci.encode(render_batch(scenes, self.device), position_code=False)
        i = image_context[:, 0]  # the class token over its own norm: the normalised image embedding
        logits = self.LOGIT_SCALE * t @ i.T  # [B texts, B images]
        target = matches(named, scenes).to(self.device)  # diagonal is 1: every text describes its scene
        loss_t = -(F.log_softmax(logits, dim=1) * target / target.sum(1, keepdim=True)).sum(1).mean()
        loss_i = -(F.log_softmax(logits.T, dim=1) * target.T / target.T.sum(1, keepdim=True)).sum(1).mean()
        contrastive = 0.5 * (loss_t + loss_i)
        # Word loss on exactly the context the UNet reads (``encode_ids``: tokens over the
        # pooled norm), over the tokens up to the first EOS (the rest are padding copies).
        context = ct.model.text_projection(out.last_hidden_state) / pooled.norm(dim=-1)[:, None, None]
        first_eos = (ids == ct.model.config.eos_token_id).int().argmax(1)  # [B]
        words = torch.arange(ids.shape[1], device=self.device)[None] <= first_eos[:, None]  # [B, 77]
        word = F.cross_entropy(self.word_head(context[words]), ids[words])
        part = self.part_loss(image_context, scenes)
        loss = contrastive + self.WORD_WEIGHT * word + self.PART_WEIGHT * part
        return loss, {"contrastive": contrastive.item(), "word": word.item(), "part": part.item()}

    @torch.no_grad()
    def finish(self) -> dict[str, Any]:
        round_to_fp16(self.model.clip_text)
        round_to_fp16(self.model.clip_image)
        rng, scenes = self.held_out(64)
        templates = rng.integers(len(sc.TEMPLATES), size=len(scenes))
        texts = [s.caption(int(k)) for s, k in zip(scenes, templates)]
        named = [caption_constraints(s, int(k)) for s, k in zip(scenes, templates)]
        t, i = self.embeddings(texts, render_batch(scenes, self.device))
        ok = matches(named, scenes)
        sim = (t @ i.T).cpu()
        text_to_image = ok[torch.arange(len(texts)), sim.argmax(1)].mean()
        image_to_text = ok[sim.argmax(0), torch.arange(len(scenes))].mean()
        return {"retrieval_text_to_image": float(text_to_image), "retrieval_image_to_text": float(image_to_text)}


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
    # vd-nano's, trained on contexts that always name one, drew a muddle (docs/nano.md section 6).
    # Taught as the dual-guided flow is: a context and the scene it should give. The twins are
    # added to the batch (about 13 rows), so plain image variation keeps all its samples (given
    # their place, it fell from 83.0% to 74.0%; docs/nano.md section 6). 0.2 on three i2i turns
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


STAGE_CLASSES: dict[str, type[Stage]] = {"vae": VAEStage, "clip": CLIPStage, "optimus": OptimusStage,
                                         "unet": UNetStage}

# ---------------------------------------------------------------------------------------------
# Checking results with the rule-based checker


def _image_accuracy(scenes: Sequence[sc.Scene], images: torch.Tensor, prefix: str = "",
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
    out.update(_image_accuracy(scenes, model.vae_image.decode(run("image", [txt], [empty])), "t2i_"))
    out.update(_image_accuracy(scenes, model.vae_image.decode(run("image", [img], [zeros])), "i2i_"))
    out["i2t_color_shape"] = words(run("text", [img], [zeros]), scenes)
    out["t2t_color_shape"] = words(run("text", [txt], [empty]), scenes)
    targets = [recolor(s, rng) for s in scenes]
    dual_text = model.clip_text.encode([t.color for t in targets])  # the colour word, as in eval-nano
    dual = run("image", [dataclasses.replace(img, weight=0.5), ContextInput(dual_text, "text", 0.5)],
               [dataclasses.replace(zeros, weight=0.5), dataclasses.replace(empty, weight=0.5)])
    out.update(_image_accuracy(scenes, model.vae_image.decode(dual), "dual_", color_of=[t.color for t in targets]))
    return out


# ---------------------------------------------------------------------------------------------
# The loop: checkpoints, resume, progress


def stage_fingerprints(config: VDConfig, plan: Budget, seed: int, tokenizers: dict[str, Any]) -> dict[str, Any]:
    """Per stage, everything its checkpoint depends on (JSON-normalised).

    The config sections of the components it trains (``config_parts``), the seed and
    tokenizers, the budget settings it reads (``settings``), its own budget and ``RECIPE``,
    and the digests of the stages it trains against. So a longer or wider UNet keeps the
    finished image VAE, CLIP and Optimus checkpoints, while changing CLIP's recipe refuses
    CLIP's and the UNet's.
    """
    # transformers writes its own version into CLIP's config dicts: not a setting, so left out
    # (upgrading transformers must not invalidate finished checkpoints).
    sections = {part: {k: v for k, v in section.items() if k != "transformers_version"}
                if isinstance(section, dict) else section for part, section in config.to_dict().items()}
    settings = {"calibration": plan.calibration, "pool": plan.pool}
    out: dict[str, Any] = {}
    for name in STAGES:
        cls = STAGE_CLASSES[name]
        after = {dep: hashlib.sha256(json.dumps(out[dep], sort_keys=True).encode()).hexdigest()[:16]
                 for dep in cls.after}
        out[name] = json.loads(json.dumps({
            "config": {part: sections[part] for part in cls.config_parts}, "seed": seed, "tokenizers": tokenizers,
            **{k: v for k, v in settings.items() if k in cls.settings}, "stage": name, "recipe": cls.RECIPE,
            "budget": dataclasses.asdict(plan.stage(name)), "after": after}))
    return out


class _Checkpoints:
    """Per stage: ``<stage>.safetensors`` (weights + extra state), ``<stage>.optim.pt``, ``<stage>.json``."""

    def __init__(self, folder: Path, fingerprints: dict[str, Any]):
        self.folder = folder
        self.fingerprints = fingerprints

    def state(self, stage: str) -> dict[str, Any] | None:
        path = self.folder / f"{stage}.json"
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        if state.get("fingerprint") != self.fingerprints[stage]:
            raise ValueError(
                f"the checkpoint {path} was made with other settings (config, budget, seed or the "
                f"training recipe of the {stage} stage or of one it builds on); train into another "
                "folder, or start over with resume=False (--no-resume)")
        return state

    def save(self, stage: Stage, model: nn.Module, optimizer: torch.optim.Optimizer | None,
             state: dict[str, Any], *, extra: bool = True) -> None:
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().clone().contiguous().cpu()  # clone: tied weights are saved twice
                   for k, v in model.state_dict().items() if k.startswith(stage.prefixes)}
        if extra:
            tensors.update({k: v.detach().contiguous().cpu() for k, v in stage.extra_state().items()})
        _atomic(self.folder / f"{stage.name}.safetensors", lambda p: save_file(tensors, str(p)))
        if optimizer is not None:
            _atomic(self.folder / f"{stage.name}.optim.pt", lambda p: torch.save(optimizer.state_dict(), p))
        payload = {**state, "fingerprint": self.fingerprints[stage.name]}
        _atomic(self.folder / f"{stage.name}.json", lambda p: p.write_text(json.dumps(payload, indent=1)))

    def load(self, stage: Stage, model: nn.Module, optimizer: torch.optim.Optimizer | None,
             device: torch.device) -> None:
        from safetensors.torch import load_file

        tensors = load_file(str(self.folder / f"{stage.name}.safetensors"), device=str(device))
        extra = {k: tensors.pop(k) for k in list(tensors) if not k.startswith(stage.prefixes)}
        result = model.load_state_dict(tensors, strict=False)
        missing = [k for k in result.missing_keys if k.startswith(stage.prefixes)]
        if missing or result.unexpected_keys:
            raise ck.CheckpointError(f"checkpoint {stage.name}.safetensors does not fit the model: missing "
                                     f"{missing[:3]}, unexpected {result.unexpected_keys[:3]}")
        if extra:
            stage.load_extra_state(extra)
        if optimizer is not None:
            optimizer.load_state_dict(torch.load(self.folder / f"{stage.name}.optim.pt",
                                                 map_location=device, weights_only=True))


ENCODER_STAGES = ("vae", "clip", "optimus")


def reuse_encoders(checkpoints: _Checkpoints, weights: str | os.PathLike, config: VDConfig, plan: Budget,
                   seed: int, tokenizers: dict[str, Any], device: torch.device,
                   stages: Sequence[str] = ENCODER_STAGES) -> list[str]:
    """Write finished checkpoints of encoder ``stages`` (image VAE, CLIP, Optimus) taken from a vd-nano file.

    So a UNet variant trains on exactly the encoders a file ships, without their 70 minutes
    of CPU training. The file must have been trained with the same seed, budget and tokenizers
    as this run, and each stage taken with the same configs and (where the file records
    them: files written since stop 35) the same ``RECIPE``: its encoders are then what these
    stages would make, and the checkpoints carry the same fingerprints. Stages not in
    ``stages`` train as usual. Stages that already have a checkpoint are left alone. Returns
    the stages written.
    """
    from vdnodes.nano.weights import file_metadata, training_record

    unknown = [name for name in stages if name not in ENCODER_STAGES]
    if unknown or not stages:
        raise ValueError(f"--reuse takes encoder stages among {', '.join(ENCODER_STAGES)}, got "
                         f"{', '.join(stages) if stages else 'none'}")
    path = Path(weights)
    if not path.is_file():
        raise ValueError(f"--encoders-from: no such file {str(path)!r}")
    meta, record = file_metadata(path), training_record(path)
    problems = []
    if json.loads(meta.get("tokenizers", "null")) != tokenizers:
        problems.append("its tokenizer words differ")
    if record.get("seed") != seed or record.get("budget") != plan.name:
        problems.append(f"it was trained with seed {record.get('seed')} and budget {record.get('budget')!r}, "
                        f"this run uses seed {seed} and budget {plan.name!r}")
    file_config = VDConfig.from_dict(json.loads(meta["config"])).to_dict() if "config" in meta else {}
    ours = config.to_dict()
    recipes = record.get("recipes", {})
    for name in stages:
        for part in STAGE_CLASSES[name].config_parts:
            theirs = dict(file_config.get(part) or {})
            mine = dict(ours[part])
            for section in (theirs, mine):  # the trained scale is the VAE stage's result, not a setting
                section.pop("scale_factor", None)
                section.pop("transformers_version", None)
            if theirs != mine:
                problems.append(f"its {part} config differs")
        if name in recipes and recipes[name] != STAGE_CLASSES[name].RECIPE:
            problems.append(f"its {name} stage was trained with recipe {recipes[name]}, this version's is "
                            f"{STAGE_CLASSES[name].RECIPE}")
    missing = [name for name in stages if name not in record.get("results", {})]
    if missing:
        problems.append(f"its training record has no results for {missing}")
    if problems:
        raise ValueError(f"cannot reuse the encoders of {str(path)!r}: " + "; ".join(problems) +
                         (" (--reuse names the encoder stages to take from it)" if len(stages) > 1 else ""))
    todo = [name for name in stages if checkpoints.state(name) is None]
    if not todo:
        return []
    components = {"vae": ["vae_image.encoder", "vae_image.decoder"], "clip": ["clip_text", "clip_image"],
                  "optimus": ["vae_text.encoder", "vae_text.decoder"]}
    model = load_nano(device, path=path, components=[c for name in todo for c in components[name]])
    for name in todo:
        stage = STAGE_CLASSES[name](model, plan, seed, device)
        steps = plan.stage(name).steps
        checkpoints.save(stage, model, None, {
            "stage": name, "step": steps, "steps": steps, "done": True, "losses": [], "seconds": 0.0,
            "result": record["results"][name], "hosts": report_hosts(path).get(name, []),
            "reused_from": str(path)}, extra=False)
    return todo


def _atomic(path: Path, write: Callable[[Path], Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.chmod(tmp, new_file_mode(path))  # safetensors' save_file creates files 0o600
    os.replace(tmp, path)


def adamw(params: list[nn.Parameter], lr: float) -> torch.optim.AdamW:
    """Every stage's optimiser: AdamW (betas 0.9 / 0.99, weight decay 0.01), fused where torch can.

    The fused kernel updates all tensors in one pass: on the 1,364 tensors of the nano UNet it
    takes 0.03 s per step on a 2-core CPU against 0.10 s for ``foreach`` (docs/nano.md,
    section 4). Same algorithm; the floats differ in the last bits. torch < 2.4 has no fused
    AdamW on CPU and gets ``foreach``.
    """
    kwargs: dict[str, Any] = {"lr": lr, "betas": (0.9, 0.99), "weight_decay": 0.01}
    try:
        return torch.optim.AdamW(params, fused=True, **kwargs)
    except RuntimeError:
        return torch.optim.AdamW(params, foreach=True, **kwargs)


def stage_optimizer(stage: Stage) -> tuple[list[nn.Parameter], torch.optim.AdamW]:
    """Freeze the whole model but ``stage``'s parameters; those and their optimiser."""
    params = stage.parameters()
    for p in stage.model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    return params, adamw(params, stage.budget.lr)


OnStep = Callable[[str, int, dict[str, float]], None]


def _run_stage(stage: Stage, checkpoints: _Checkpoints, *, checkpoint_every: int, progress: bool,
               on_step: OnStep | None, index: int) -> dict[str, Any]:
    model, budget, device = stage.model, stage.budget, stage.device
    state = checkpoints.state(stage.name)
    if state is not None and state["done"]:
        checkpoints.load(stage, model, None, device)
        stage.apply(state["result"])
        return state["result"]

    params, optimizer = stage_optimizer(stage)
    step, losses, seconds, hosts = 0, [], 0.0, []
    if state is not None:
        checkpoints.load(stage, model, optimizer, device)
        step, losses, seconds = state["step"], state["losses"], state["seconds"]
        hosts = state.get("hosts", [])
    from tqdm.auto import tqdm

    here = hs.host_record(device)
    changed = hs.kernel_differences(hosts[-1], here) if hosts else []
    if changed and progress:
        tqdm.write(f"note: steps 0-{step - 1} of the {stage.title} stage ran with other kernels "
                   f"({'; '.join(changed)}); the stage goes on, but its result will not match a run "
                   "made on one host bit for bit", file=sys.stderr)
    if not hosts or changed:
        hosts.append({"from_step": step, **here})

    def save(done: bool, result: dict[str, Any] | None = None) -> None:
        checkpoints.save(stage, model, None if done else optimizer,
                         {"stage": stage.name, "step": step, "steps": budget.steps, "done": done,
                          "losses": losses, "seconds": seconds, "hosts": hosts, "result": result or {}})

    bar = tqdm(total=budget.steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True,
               desc=f"[{index + 1}/{len(STAGES)}] {stage.title}")
    stage.prepare()
    updating = False
    try:
        while step < budget.steps:
            started = time.perf_counter()
            torch.manual_seed(step_seed(stage.seed, stage.name, step))
            loss, metrics = stage.step_loss(step)
            updating = True  # from here until the step counter moves, the state is half-updated
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(budget, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            stage.after_step(step)
            step += 1
            updating = False
            losses.append(round(loss.item(), 6))
            seconds += time.perf_counter() - started
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
            if step % checkpoint_every == 0 and step < budget.steps:
                save(done=False)
            if on_step is not None:
                on_step(stage.name, step, {"loss": losses[-1], **metrics})
    except KeyboardInterrupt:
        if not updating:
            save(done=False)  # Ctrl-C: keep everything up to the last finished step
        raise
    finally:
        bar.close()
    for p in params:
        p.requires_grad_(False)
    torch.manual_seed(step_seed(stage.seed, stage.name, budget.steps))  # so a resumed run finishes alike
    result = stage.finish()
    save(done=True, result=result)
    return result


@contextlib.contextmanager
def _threads(n: int) -> Any:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def train_nano(
    out_dir: str | os.PathLike,
    *,
    budget: str | Budget = "full",
    resume: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    config: VDConfig | None = None,
    progress: bool = True,
    evaluate_flows: bool | None = None,
    on_step: OnStep | None = None,
    threads: int | None = None,
    encoders_from: str | os.PathLike | None = None,
    reuse: Sequence[str] = ENCODER_STAGES,
    compare_to: str | os.PathLike | None = None,
) -> Path:
    """Train vd-nano from scratch into ``out_dir``; returns the path of ``vd-nano.safetensors``.

    Stages run in order (image VAE, CLIP, Optimus, UNet), each resumable from
    ``out_dir/checkpoints`` (``resume=False`` deletes them first). Training is
    deterministic for a given ``seed`` on a given device. ``config`` replaces the nano
    config (tests use smaller ones). ``evaluate_flows`` (default: when the budget has
    ``eval_samples``) runs ``evaluate`` at the end and stores the scores in the file.
    ``on_step(stage, step, metrics)`` is called after every step; raising
    ``KeyboardInterrupt`` there stops training with a checkpoint, like Ctrl-C. ``threads``:
    CPU threads for torch (default: all cores). ``encoders_from``: a vd-nano file whose
    image VAE, CLIP and Optimus (or the encoder stages named in ``reuse``) are taken as finished
    stages (``reuse_encoders``), so only the UNet (and any encoder stage not taken) trains.
    ``compare_to``: a vd-nano file each finished stage is compared with, tensor by tensor as
    the file would store it (a line per stage when ``progress``), so a run that will not
    reproduce that file says so after its first stage rather than at the end.
    The file holds fp16 weights, the config, what rebuilds the tokenizers and a training
    record (budget, seed, steps, recipes, per-stage results). Which hosts ran each stage's
    steps (``host.host_record``) is kept in the stage checkpoints, not in the file, so that a
    run reproducing the weights on the same kernels also reproduces the file's bytes.
    """
    if isinstance(budget, str) and budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose one of {sorted(BUDGETS)}")
    plan = BUDGETS[budget] if isinstance(budget, str) else budget
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = copy.deepcopy(config or nano_config())
    out = Path(out_dir)
    folder = out / "checkpoints"
    if not resume and folder.exists():
        shutil.rmtree(folder)
    info = tokenizer_info(config)
    checkpoints = _Checkpoints(folder, stage_fingerprints(config, plan, seed, info))

    if encoders_from is not None:
        reuse_encoders(checkpoints, encoders_from, config, plan, seed, info, dev, reuse)
    clip_tok, optimus_tok = build_tokenizers(info)
    reference = None
    if compare_to is not None:
        from safetensors.torch import load_file

        if not Path(compare_to).is_file():
            raise ValueError(f"--compare-to: no such file {str(compare_to)!r}")
        reference = load_file(str(compare_to))
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), _threads(threads or os.cpu_count() or 1):
        torch.manual_seed(seed)
        model = vdm.build(config, vdm.COMPONENTS, device=dev, clip_tokenizer=clip_tok,
                          optimus_tokenizers=tuple(optimus_tok)).eval()  # eval: no dropout anywhere
        results: dict[str, Any] = {}
        for index, name in enumerate(STAGES):
            stage = STAGE_CLASSES[name](model, plan, seed, dev, progress)
            results[name] = _run_stage(stage, checkpoints, checkpoint_every=plan.checkpoint_every,
                                       progress=progress, on_step=on_step, index=index)
            if reference is not None and progress:
                print(f"[{index + 1}/{len(STAGES)}] {stage.title} vs {compare_to}: "
                      f"{compare_stage(model, stage.prefixes, reference).summary()}", file=sys.stderr, flush=True)
        if evaluate_flows if evaluate_flows is not None else plan.eval_samples > 0:
            results["evaluate"] = evaluate(model, n=max(plan.eval_samples, 4), steps=plan.eval_steps)
        return save_nano(model, out / WEIGHTS_NAME, info,
                         {"budget": plan.name, "seed": seed, "results": results,
                          "steps": {n: plan.stage(n).steps for n in STAGES},
                          "recipes": {n: STAGE_CLASSES[n].RECIPE for n in STAGES}})


def compare_stage(model: nn.Module, prefixes: tuple[str, ...], reference: dict[str, torch.Tensor]
                  ) -> WeightsComparison:
    """Compare the tensors of one stage (state-dict ``prefixes``) with a vd-nano file's ``reference``
    tensors, converted as ``save_nano`` writes them (floating point to fp16)."""
    ours = {k: (v.half() if v.is_floating_point() else v)  # tied weights once, as the file stores them
            for k, v in ck.unique_state(model).items() if k.startswith(prefixes)}
    theirs = {k: v for k, v in reference.items() if k.startswith(prefixes)}
    differing, largest = compare_tensors(ours, theirs)
    return WeightsComparison(tensors=sum(k in ours for k in theirs), differing=tuple(differing),
                             missing=tuple(k for k in theirs if k not in ours),
                             extra=tuple(k for k in ours if k not in theirs), largest=largest, config_equal=None)


# ---------------------------------------------------------------------------------------------
# CLI


REPORT_NAME = "train-report.json"


def write_report(out_dir: Path, path: Path, minutes: float, argv: Sequence[str],
                 comparison: WeightsComparison | None, reference: Path | None) -> Path:
    """``out_dir/train-report.json``: what a run measured, for docs and results files without
    copying numbers by hand: per stage its steps, seconds of steps (summed over resumes), seconds
    per step and hosts; this invocation's wall minutes (pool, calibration and evaluation
    included); the file's sha256; and, with a reference, the comparison and the differing
    tensors per stage."""
    record = training_record(path)
    stages = {}
    for name in STAGES:
        state = json.loads((out_dir / "checkpoints" / f"{name}.json").read_text())
        steps, seconds = state["step"], state["seconds"]
        stages[name] = {"steps": steps, "seconds": round(seconds, 1),
                        "s_per_step": round(seconds / steps, 4) if steps and seconds else None,
                        "hosts": state.get("hosts", []), "reused_from": state.get("reused_from")}
    report: dict[str, Any] = {
        "command": "vdnodes train-nano " + " ".join(argv), "budget": record.get("budget"),
        "seed": record.get("seed"), "stages": stages,
        "stage_minutes": round(sum(st["seconds"] for st in stages.values()) / 60, 1),
        "invocation_minutes": round(minutes, 1), "weights": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    if comparison is not None:
        report["compared_with"] = str(reference)
        report["comparison"] = comparison.summary()
        report["differing_by_stage"] = {
            name: sum(k.startswith(STAGE_CLASSES[name].prefixes) for k in comparison.differing) for name in STAGES}
    target = out_dir / REPORT_NAME
    _atomic(target, lambda p: p.write_text(json.dumps(report, indent=1) + "\n"))
    return target


def report_hosts(weights: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """Per stage, the hosts that ran its steps, from the ``train-report.json`` beside a vd-nano file
    (empty when there is none, e.g. for the shipped file)."""
    path = Path(weights).parent / REPORT_NAME
    try:
        stages = json.loads(path.read_text()).get("stages", {})
    except (OSError, ValueError):
        return {}
    return {name: stage.get("hosts", []) for name, stage in stages.items() if isinstance(stage, dict)}


def host_report(ours: dict[str, list[dict[str, Any]]], reference: dict[str, list[dict[str, Any]]]) -> str:
    """Why two runs may differ in their bits: per stage, the settings that choose kernels in
    which the hosts of this run and of the reference differ (``report_hosts`` of each)."""
    lines = []
    for name in STAGES:
        a, b = ours.get(name), reference.get(name)
        if not a:
            lines.append(f"  {name}: this run does not record its host")
        elif not b:
            lines.append(f"  {name}: this run: {'; then '.join(hs.describe(h) for h in a)}; the reference "
                         "records no host (for the shipped file see docs/nano.md section 4)")
        else:
            changed = sorted({d for x in a for y in b for d in hs.kernel_differences(x, y)})
            lines.append(f"  {name}: " + ("same kernels (" + hs.describe(a[0]) + ")" if not changed
                                          else "other kernels: " + "; ".join(changed)))
    return ("Runs agree bit for bit only with the same torch and transformers versions, device, kernels "
            "and thread count (docs/nano.md section 3). Hosts per stage, this run vs the reference:\n"
            + "\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    """``vdnodes train-nano``: train vd-nano, resumable; ``--install`` copies it into the package."""
    parser = argparse.ArgumentParser(
        prog="vdnodes train-nano",
        description="Train the embedded vd-nano model from scratch (image VAE, CLIP, Optimus, UNet). "
                    "Interrupt at any time; the same command resumes from the last checkpoint.")
    parser.add_argument("--out", default="vd-nano-train", help="folder for checkpoints, the result and train-report.json (stage times, hosts, comparison)")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="full",
                        help="'full' reproduces the shipped weights; 'smoke' checks the pipeline in seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: all cores; use 1 on a machine other jobs share)")
    parser.add_argument("--no-resume", action="store_true", help="delete the checkpoints and start over")
    parser.add_argument("--install", action="store_true", help=f"copy the result to {NANO_WEIGHTS}")
    parser.add_argument("--encoders-from", metavar="FILE", default=None,
                        help="take the image VAE, CLIP and Optimus from this vd-nano file (e.g. the "
                             "shipped one) and train only the UNet; the file must come from the same "
                             "seed, budget and encoder configs")
    parser.add_argument("--reuse", metavar="STAGES", default=",".join(ENCODER_STAGES),
                        help="with --encoders-from: the encoder stages to take from the file, comma-separated "
                             "(default: vae,clip,optimus); the others train")
    parser.add_argument("--compare-to", metavar="FILE", default=None,
                        help="compare each finished stage, and the result, tensor by tensor with this "
                             "vd-nano file (default with --budget full: the shipped weights)")
    args = parser.parse_args(argv)
    if args.reuse != parser.get_default("reuse") and not args.encoders_from:
        print("error: --reuse names the encoder stages taken from --encoders-from FILE; pass that too",
              file=sys.stderr)
        return 2
    reference = Path(args.compare_to) if args.compare_to else (NANO_WEIGHTS if args.budget == "full" else None)
    if args.compare_to and not reference.is_file():  # say so now, not after hours of training
        print(f"error: --compare-to: no such file {str(reference)!r}", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    try:
        path = train_nano(args.out, budget=args.budget, resume=not args.no_resume, seed=args.seed,
                          device=args.device, threads=args.threads, encoders_from=args.encoders_from,
                          reuse=[name.strip() for name in args.reuse.split(",") if name.strip()],
                          compare_to=reference if reference is not None and reference.is_file() else None)
    except KeyboardInterrupt:
        print(f"\ninterrupted; run the same command again to resume from {Path(args.out) / 'checkpoints'}",
              file=sys.stderr)
        return 130
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    minutes = (time.perf_counter() - started) / 60
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) in {minutes:.1f} min")
    comparison = None
    if reference is not None and reference.is_file() and reference.resolve() != path.resolve():
        comparison = compare_weights(path, reference)
    report = write_report(Path(args.out), path, minutes, sys.argv[1:] if argv is None else argv,
                          comparison, reference if comparison is not None else None)
    if comparison is not None:
        print(f"compared with {reference}: {comparison.summary()}")
        if not comparison.identical:
            print(host_report(report_hosts(path), report_hosts(reference)))
    print(f"run report (stage times, hosts, comparison): {report}")
    if args.install:
        NANO_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, NANO_WEIGHTS)
        print(f"installed as {NANO_WEIGHTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
