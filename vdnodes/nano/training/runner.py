"""The training loop: each stage's steps, checkpoints, resume and progress, and ``train_nano``.

Deterministic (the data and every random draw of step ``k`` come from ``(seed, stage, k)``),
resumable (checkpoints every ``checkpoint_every`` steps, at the end of a stage and on Ctrl-C),
with tqdm progress.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vdnodes.model import vd as vdm
from vdnodes.model.configs import VDConfig
from vdnodes.nano import host as hs
from vdnodes.nano.config import nano_config
from vdnodes.nano.tokenizers import build_tokenizers, tokenizer_info
from vdnodes.nano.training.budget import BUDGETS, STAGES, Budget, learning_rate, step_seed
from vdnodes.nano.training.checkpoints import StageCheckpoints, stage_fingerprints
from vdnodes.nano.training.evaluate import evaluate
from vdnodes.nano.training.report import compare_stage
from vdnodes.nano.training.reuse import reuse_encoders
from vdnodes.nano.training.stage import Stage, stage_optimizer
from vdnodes.nano.training.stages import ENCODER_STAGES, STAGE_CLASSES
from vdnodes.nano.weights import WEIGHTS_NAME, save_nano

OnStep = Callable[[str, int, dict[str, float]], None]


def _run_stage(stage: Stage, checkpoints: StageCheckpoints, *, checkpoint_every: int, progress: bool,
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
    checkpoints = StageCheckpoints(folder, stage_fingerprints(config, plan, seed, info))

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
