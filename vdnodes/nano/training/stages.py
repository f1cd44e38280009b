"""The four training stages by name, in the order ``budget.STAGES`` runs them."""

from __future__ import annotations

from vdnodes.nano.training.clip_stage import CLIPStage
from vdnodes.nano.training.optimus_stage import OptimusStage
from vdnodes.nano.training.stage import Stage
from vdnodes.nano.training.unet_stage import UNetStage
from vdnodes.nano.training.vae_stage import VAEStage

STAGE_CLASSES: dict[str, type[Stage]] = {"vae": VAEStage, "clip": CLIPStage, "optimus": OptimusStage,
                                         "unet": UNetStage}
ENCODER_STAGES = ("vae", "clip", "optimus")
