"""Training budgets: the stages' order, steps, batch sizes and learning rates, and the seed of every step.

``"full"`` reproduces the shipped weights; ``"smoke"`` checks the pipeline in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

STAGES = ("vae", "clip", "optimus", "unet")


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
    # About 2 hours on 2 idle CPU cores (docs/nano.md has the measured throughput):
    # VAE 15, CLIP 18, Optimus with the edit loss 9, UNet 72-76, pool + calibration + evaluation 2.
    # The UNet's 11,500 steps (10,000 before vd-nano 8) buy back what the twins cost the other flows.
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
