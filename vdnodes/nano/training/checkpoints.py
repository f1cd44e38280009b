"""Stage checkpoints: what each depends on (``stage_fingerprints``) and the files that let a run resume.

Per stage, safetensors weights (+ the stage's extra state), the ``torch.save``'d optimizer
state and a JSON state, each written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vdnodes.core.fileio import new_file_mode
from vdnodes.model import checkpoints as ck
from vdnodes.model.configs import VDConfig
from vdnodes.nano.training.budget import STAGES, Budget
from vdnodes.nano.training.stage import Stage
from vdnodes.nano.training.stages import STAGE_CLASSES


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


class StageCheckpoints:
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
        write_atomically(self.folder / f"{stage.name}.safetensors", lambda p: save_file(tensors, str(p)))
        if optimizer is not None:
            write_atomically(self.folder / f"{stage.name}.optim.pt", lambda p: torch.save(optimizer.state_dict(), p))
        payload = {**state, "fingerprint": self.fingerprints[stage.name]}
        write_atomically(self.folder / f"{stage.name}.json", lambda p: p.write_text(json.dumps(payload, indent=1)))

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


def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` to a temp file beside ``path``, then rename it over ``path`` (mode as ``new_file_mode``)."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.chmod(tmp, new_file_mode(path))  # safetensors' save_file creates files 0o600
    os.replace(tmp, path)
