"""vd-nano: can a vision-tower recipe give VD's focus slider a style/semantic split?

VD's style focus keeps the five leading principal components of an image's patch tokens and
semantic focus removes the first (``procedures.adjust_rank``). On the shipped tower the shape
lies in the leading components and removing them displaces every attribute
(``nano_focus_probe.py``). This trains only a CLIP stage, with train-nano's ``CLIPStage`` and
one change to what the image head asks of the patch tokens, then runs the focus probes on it:

- ``shipped``: the shipped recipe (each patch names what lies under it: the object's shape,
  colour and texture, else the background colour), for a like-for-like baseline;
- ``appearance_position``: every patch names the scene's appearance (object colour and texture,
  background colour), whether the object covers it, and its own row and column; no patch
  names the shape, so the layout alone carries it;
- ``local_appearance_position``: the shipped naming, plus the scene's appearance and the
  patch's row and column from every patch;
- ``local_appearance``: the shipped naming plus the scene's appearance from every patch, no
  position (on the previous one the second principal component is the position, which
  semantic focus scales down with the first);
- ``spread_position``: every patch names the scene's appearance; a patch the object covers
  names the shape (and only the shape), any other patch "background"; and every patch's
  token is pulled (mean squared error) towards a fixed position code: the 32 lowest 2-D
  cosine (DCT) patterns of the 8 x 8 patch grid, written along 32 fixed orthonormal feature
  directions at scale ``--position-scale``. That code gives every image's tokens 32 principal
  components of equal weight (singular value = the scale) that carry nothing about the
  scene, so the layout is spread thinly instead of being one shared direction: if the scale
  lies between the appearance shift and the silhouette, style focus (top five components)
  keeps the appearance and drops the silhouette, and semantic focus (the first component and
  part of the second) removes the appearance and one position pattern.

The idea behind the last two: appearance named by every patch is a direction all of an
image's tokens share (one strong component, which style focus keeps), and position is
structure that is the same in every image (components that style focus keeps and that carry
nothing about the scene), so the layout might fall past the fifth component.

    python benchmarks/nano_clip_variants.py --variant appearance_position --steps 1500

About 0.4 s per step on two cores (1,500 steps: 10 minutes), then 3 minutes of probes.
Results are added, by variant and step count, to ``benchmarks/results/nano_clip_variants.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nano_focus_probe  # noqa: E402

from vdnodes.model import procedures  # noqa: E402
from vdnodes.model import vd as vdm  # noqa: E402
from vdnodes.model.clip import position_code  # noqa: E402
from vdnodes.nano import scenes as sc  # noqa: E402
from vdnodes.nano import train as tr  # noqa: E402
from vdnodes.nano.config import IMAGE_SIZE, nano_config  # noqa: E402
from vdnodes.nano.tokenizers import build_tokenizers, tokenizer_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "nano_clip_variants.json"
VARIANTS = ("shipped", "appearance_position", "local_appearance_position", "local_appearance", "spread_position")
APPEARANCE = ("color", "texture", "background")  # the scene's, named from every patch
LAYOUT_HEAD_SEED = 123
POSITION_PATTERNS = 32  # spread_position: DCT patterns of the patch grid in the position code


class VariantCLIPStage(tr.CLIPStage):
    """train-nano's CLIP stage with another part loss on the patch tokens."""

    def __init__(self, *args, variant: str, position_weight: float = 1.0, position_scale: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.variant = variant
        self.position_weight = position_weight
        self.position_scale = position_scale
        self.side = IMAGE_SIZE // self.model.clip_image.patch_size
        dim = self.model.clip_image.model.config.projection_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(LAYOUT_HEAD_SEED)
            # covered or not (2), row (side), column (side)
            self.layout_head = nn.Linear(dim, 2 + 2 * self.side)
            self.shape_head = nn.Linear(dim, len(sc.SHAPES) + 1)  # spread_position: the shape, or background
        code = position_code(self.side, dim, POSITION_PATTERNS, highest=False)
        self.grid, self.directions = (x.to(self.device) for x in code)

    def heads(self) -> dict[str, nn.Module]:
        extra = {"shape_head": self.shape_head} if self.variant == "spread_position" else {}
        return {**super().heads(), "layout_head": self.layout_head, **extra}

    def part_loss(self, context: torch.Tensor, scenes) -> torch.Tensor:
        if self.variant == "shipped":
            return super().part_loss(context, scenes)
        b, t = context.shape[0], context.shape[1] - 1
        logits = dict(zip(self.PART_VALUES, self.part_head(context).split(
            [len(v) for v in self.PART_VALUES.values()], dim=-1)))
        target = {a: torch.tensor([values.index(getattr(s, a)) for s in scenes], device=self.device)
                  for a, values in self.PART_VALUES.items()}
        appearance = sum(F.cross_entropy(logits[a][:, 1:].flatten(0, 1), target[a][:, None].expand(b, t).flatten())
                         for a in APPEARANCE)
        if self.variant == "local_appearance":
            return super().part_loss(context, scenes) + appearance
        if self.variant == "spread_position":
            scene = sum(F.cross_entropy(logits[a][:, 0], target[a]) for a in self.PART_VALUES)  # class token
            covered = torch.from_numpy(tr.patch_coverage(scenes, self.model.clip_image.patch_size) >= 0.5).to(self.device)
            shape = torch.where(covered, target["shape"][:, None], len(sc.SHAPES))  # [B, T]
            local = F.cross_entropy(self.shape_head(context[:, 1:]).flatten(0, 1), shape.flatten())
            # squared distance from the scaled code along its directions, over the code's energy
            along = context[:, 1:] @ self.directions  # [B, T, P]
            position = (along - self.position_scale * self.grid).square().sum(-1).mean() / (
                self.position_scale ** 2 * POSITION_PATTERNS / t)
            return scene + appearance + local + self.position_weight * position
        layout = self.layout_head(context[:, 1:])  # [B, T, 2 + 2 side]
        position = torch.arange(t, device=self.device)
        rows, cols = (position // self.side).expand(b, t), (position % self.side).expand(b, t)
        row = F.cross_entropy(layout[..., 2:2 + self.side].flatten(0, 1), rows.flatten())
        col = F.cross_entropy(layout[..., 2 + self.side:].flatten(0, 1), cols.flatten())
        if self.variant == "local_appearance_position":
            return super().part_loss(context, scenes) + appearance + self.position_weight * (row + col)
        covered = torch.from_numpy(tr.patch_coverage(scenes, self.model.clip_image.patch_size) >= 0.5)
        cover = F.cross_entropy(layout[..., :2].flatten(0, 1), covered.long().flatten().to(self.device))
        scene = sum(F.cross_entropy(logits[a][:, 0], target[a]) for a in self.PART_VALUES)  # class token
        return scene + appearance + (cover + self.position_weight * (row + col))


def train(variant: str, steps: int, seed: int, position_weight: float = 1.0,
          position_scale: float = 0.0) -> tuple[vdm.VersatileDiffusion, dict]:
    """Train a fresh CLIP pair for ``steps`` with train-nano's schedule; the model and the log."""
    config = nano_config()
    clip_tok, optimus_tok = build_tokenizers(tokenizer_info(config))
    torch.manual_seed(seed)
    # Every component, as train-nano builds them: the CLIP towers start from train-nano's init.
    model = vdm.build(config, vdm.COMPONENTS, device=torch.device("cpu"), clip_tokenizer=clip_tok,
                      optimus_tokenizers=tuple(optimus_tok)).eval()  # eval: no dropout, as train-nano
    full = tr.BUDGETS["full"]
    plan = tr.Budget("variant", vae=full.vae, clip=tr.StageBudget(steps=steps, batch=full.clip.batch, lr=full.clip.lr,
                     warmup=full.clip.warmup), optimus=full.optimus, unet=full.unet)
    stage = VariantCLIPStage(model, plan, seed, torch.device("cpu"), variant=variant, position_weight=position_weight,
                                position_scale=position_scale)
    params, optimizer = tr.stage_optimizer(stage)
    log, window, start = [], [], time.perf_counter()
    for step in range(steps):
        torch.manual_seed(tr.step_seed(seed, stage.name, step))
        loss, metrics = stage.step_loss(step)
        for group in optimizer.param_groups:
            group["lr"] = tr.learning_rate(plan.clip, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        window.append(metrics)
        if (step + 1) % 100 == 0 or step + 1 == steps:
            row = {"step": step + 1, "seconds": round(time.perf_counter() - start, 1),
                   **{k: round(float(np.mean([m[k] for m in window])), 4) for k in metrics}}
            log.append(row)
            window = []
            print(json.dumps(row), file=sys.stderr, flush=True)
    for p in params:
        p.requires_grad_(False)
    return model, {"log": log, "retrieval": stage.finish()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--position-weight", type=float, default=1.0,
                        help="weight of the row and column losses (the *_position variants; default 1)")
    parser.add_argument("--position-scale", type=float, default=None,
                        help="spread_position only (required there): the position code's singular value")
    parser.add_argument("--probe-n", type=int, default=2000, help="probe scenes (4/5 fit the readers)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", type=Path, default=None,
                        help="also write the trained CLIP towers (clip_text.*, clip_image.*) to this safetensors file")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.probe_n < 10:
        parser.error("--steps must be >= 1 and --probe-n >= 10")
    if args.position_weight < 0 or (args.position_weight != 1.0 and not args.variant.endswith("_position")):
        parser.error("--position-weight takes a weight >= 0, and only for the *_position variants")
    if (args.variant == "spread_position") != (args.position_scale is not None) or (
            args.position_scale is not None and args.position_scale <= 0):
        parser.error("--position-scale takes a scale > 0, and is required for (and only for) spread_position")
    torch.set_num_threads(args.threads)
    model, record = train(args.variant, args.steps, args.seed, args.position_weight, args.position_scale or 0.0)
    if args.save is not None:
        from safetensors.torch import save_file

        state = {f"{part}.{k}": v.contiguous() for part in ("clip_text", "clip_image")
                 for k, v in getattr(model, part).state_dict().items()}
        args.save.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.save.with_name(args.save.name + ".tmp")
        save_file(state, str(tmp))
        tmp.replace(args.save)  # atomically: never a half-written file under the name
    tower = model.clip_image.eval()
    record["probe"] = nano_focus_probe.probe(tower, args.probe_n, args.probe_n * 4 // 5,
                                             [0.0, 0.2, 0.4, 0.5, 0.8, 1.0], seed=11)
    rng = np.random.default_rng(5)
    with torch.inference_mode():
        energy = procedures.component_energy(tower.encode(nano_focus_probe.images([sc.sample_scene(rng) for _ in range(200)])))
    record["energy_per_component"] = [round(float(v), 4) for v in energy.mean(0)[:10]]
    record["beyond_five"] = round(float(1 - energy[:, :5].sum(1).mean()), 4)
    print("energy per component:", record["energy_per_component"], "beyond five:", record["beyond_five"], file=sys.stderr)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    key = f"{args.variant}@{args.steps}" + (f",position_weight={args.position_weight:g}" if args.position_weight != 1.0 else "")
    key += f",position_scale={args.position_scale:g}" if args.position_scale is not None else ""
    results[key] = {**record, "seed": args.seed, "position_weight": args.position_weight,
                    "position_scale": args.position_scale, "torch": torch.__version__,
                                               "threads": torch.get_num_threads()}
    from vdnodes.core.fileio import atomic_write_text

    atomic_write_text(RESULTS, json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
