"""The base of the four training stages (``Stage``), and what every stage shares: its optimiser and
the rounding of a finished encoder's weights to fp16."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from vdnodes.model import vd as vdm
from vdnodes.nano import scenes as sc
from vdnodes.nano.training.budget import STAGES, Budget, step_seed


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


def round_to_fp16(module: nn.Module) -> None:
    """Round ``module``'s floating-point weights to fp16 in place (values as vd-nano ships them).

    A finished encoder stage does this before calibrating, so every later stage trains
    against exactly the weights the file will hold.
    """
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            if t.is_floating_point():
                t.copy_(t.half().float())


def adamw(params: list[nn.Parameter], lr: float) -> torch.optim.AdamW:
    """Every stage's optimiser: AdamW (betas 0.9 / 0.99, weight decay 0.01), fused where torch can.

    The fused kernel updates all tensors in one pass: on the 1,364 tensors of the nano UNet it
    takes 0.03 s per step on a 2-core CPU against 0.10 s for ``foreach`` (docs/nano.md).
    Same algorithm; the floats differ in the last bits. torch < 2.4 has no fused AdamW on CPU
    and gets ``foreach``.
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
