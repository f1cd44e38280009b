"""What a training run reports: each stage compared with a reference file as it finishes, the hosts
that ran each stage, and ``train-report.json`` (stage times, hosts, sha256, comparison)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vdnodes.model import checkpoints as ck
from vdnodes.nano import host as hs
from vdnodes.nano.training.budget import STAGES
from vdnodes.nano.training.checkpoints import write_atomically
from vdnodes.nano.training.stages import STAGE_CLASSES
from vdnodes.nano.weights import WeightsComparison, compare_tensors, training_record


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
    write_atomically(target, lambda p: p.write_text(json.dumps(report, indent=1) + "\n"))
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
                         "records no host (for the shipped file see docs/nano.md)")
        else:
            changed = sorted({d for x in a for y in b for d in hs.kernel_differences(x, y)})
            lines.append(f"  {name}: " + ("same kernels (" + hs.describe(a[0]) + ")" if not changed
                                          else "other kernels: " + "; ".join(changed)))
    return ("Runs agree bit for bit only with the same torch and transformers versions, device, kernels "
            "and thread count (docs/nano.md). Hosts per stage, this run vs the reference:\n"
            + "\n".join(lines))
