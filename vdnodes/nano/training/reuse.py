"""Taking finished encoder stages from a vd-nano file, so that only the UNet (or the stages not
taken) trains: ``train-nano --encoders-from FILE [--reuse STAGES]``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vdnodes.model.configs import VDConfig
from vdnodes.nano.training.budget import Budget
from vdnodes.nano.training.checkpoints import StageCheckpoints
from vdnodes.nano.training.report import report_hosts
from vdnodes.nano.training.stages import ENCODER_STAGES, STAGE_CLASSES
from vdnodes.nano.weights import file_metadata, load_nano, training_record


def reuse_encoders(checkpoints: StageCheckpoints, weights: str | os.PathLike, config: VDConfig, plan: Budget,
                   seed: int, tokenizers: dict[str, Any], device: torch.device,
                   stages: Sequence[str] = ENCODER_STAGES) -> list[str]:
    """Write finished checkpoints of encoder ``stages`` (image VAE, CLIP, Optimus) taken from a vd-nano file.

    So a UNet variant trains on exactly the encoders a file ships, without their 70 minutes
    of CPU training. The file must have been trained with the same seed, budget and tokenizers
    as this run, and each stage taken with the same configs and (where the file records them:
    files written since commit 4ada847, vd-nano 8 on) the same ``RECIPE``: its encoders are
    then what these stages would make, and the checkpoints carry the same fingerprints. Stages
    not in ``stages`` train as usual. Stages that already have a checkpoint are left alone.
    Returns the stages written.
    """
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
