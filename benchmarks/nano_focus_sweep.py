"""What VD's disentanglement keeps on vd-nano, over the whole focus slider.

``vdnodes eval-nano`` scores disentanglement at two settings (focus 0.2, semantic, and 0.8,
style). This sweep runs the same procedure (``procedures.adjust_rank`` on the image context,
then image sampling with the graphs' settings) at every focus level in ``--focus`` on the same
scenes with the same starting noise, and reads colour, shape, texture and background back
with the checker. Focus 0.5 is the unchanged context (image variation at the
disentanglement graph's guidance). It also records, per scene, how the principal components
of the patch tokens split their energy (``procedures.component_energy``), averaged.

    python benchmarks/nano_focus_sweep.py --n 200 --seed 2026 \
        --out benchmarks/results/nano_focus_sweep.json

Seed 2026 gives eval-nano's disentanglement scenes (its flow seed); the noise is reseeded per
focus level, so the rows differ only in the context.

``--objects 1,2,3,4,6`` adds (no sampling) the same energy split for composites of that many
objects on one background (the first a scene of any size, the rest small, placed at random),
through the shipped vision tower: do more objects move energy past the five components style
focus keeps? The tower never saw such images, so this bounds the question rather than
settling it.

``--by size`` (or shape, texture, colour) adds each row's rates per value of that scene
attribute, and the energy past the fifth component per value. ``--pair 0.4,0.8`` compares
two levels scene by scene (same scenes, same noise): how many shapes only one of them keeps,
and the exact two-sided McNemar p of that split.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vdnodes.model import procedures
from vdnodes.nano import quality
from vdnodes.nano import scenes as sc
from vdnodes.nano.checker import check_image
from vdnodes.nano.config import IMAGE_SIZE

ATTRIBUTES = ("color", "shape", "texture", "background")
DEFAULT_FOCUS = "0.0,0.1,0.2,0.3,0.4,0.45,0.5,0.55,0.6,0.7,0.8,0.9,1.0"


def composite(k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` objects on one background, float RGB [H, W, 3] in 0..255."""
    base = sc.sample_scene(rng)
    image = sc.render(base, IMAGE_SIZE).astype(np.float64)
    lo, hi = sc.position_range("small")
    for _ in range(k - 1):
        scene = sc.sample_scene(rng)
        while scene.color == base.background:
            scene = sc.sample_scene(rng)
        scene = dataclasses.replace(scene, background=base.background, size="small",
                                    x=float(rng.uniform(lo, hi)), y=float(rng.uniform(lo, hi)))
        cover = sc.shape_coverage(scene.shape, scene.x, scene.y, scene.half, IMAGE_SIZE)[..., None]
        image = cover * sc.render(scene, IMAGE_SIZE) + (1 - cover) * image
    return image


@torch.no_grad()
def composite_energy(model, counts: list[int], n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for k in counts:
        pixels = torch.from_numpy(np.stack([composite(k, rng) for _ in range(n)]).transpose(0, 3, 1, 2))
        energy = procedures.component_energy(model.clip_image.encode(pixels.float().div(255.0))).mean(0)
        rows.append({"objects": k, "energy_first_five": [round(float(v), 4) for v in energy[:5]],
                     "beyond_five": round(float(1 - energy[:5].sum()), 4)})
        print(f"{k} objects: {rows[-1]['beyond_five']:.1%} of the energy beyond the fifth component",
              file=sys.stderr, flush=True)
    return rows


def mcnemar(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p for discordant counts (a binomial test at 1/2)."""
    k, total = max(only_a, only_b), only_a + only_b
    if total == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(total, i) for i in range(k, total + 1)) / 2 ** total)


def _grouped(flags: list[bool], scenes: list, by: str) -> dict[str, float]:
    groups: dict[str, list[bool]] = {}
    for f, s in zip(flags, scenes):
        groups.setdefault(str(getattr(s, by)), []).append(f)
    return {k: quality._rate(v) for k, v in sorted(groups.items())}


@torch.no_grad()
def sweep(model, n: int, seed: int, levels: list[float], guidance: float, steps: int,
          by: str | None = None, pair: tuple[float, float] | None = None) -> dict:
    settings = quality.Settings(steps=steps, guidance=guidance)
    flow_seed = seed * 1000 + quality.FLOWS.index("disentangle") + 1  # eval-nano's scenes
    scenes = quality._scenes(n, flow_seed)
    runner = quality.Runner(model, settings, flow_seed)
    img, img_u = runner.image_context(quality._render(scenes, runner.device))
    rows, shape_kept = [], {}
    for focus in levels:
        t0 = time.perf_counter()
        runner.reseed(flow_seed)  # the same starting noise for every level
        tokens = procedures.adjust_rank(img, focus)
        moved = float(((tokens - img).norm(dim=-1).mean() / img.norm(dim=-1).mean()))
        images = runner.decode_images(runner.sample("image", [(tokens, "image", 1.0)], [img_u]))
        got = [check_image(x) for x in images.float().cpu()]
        row = {"focus": focus, "context_change": round(moved, 4)}
        for a in ATTRIBUTES:
            flags = [g[a] == getattr(s, a) for g, s in zip(got, scenes)]
            row[a] = quality._rate(flags)
            if by:
                row[f"{a}_by_{by}"] = _grouped(flags, scenes, by)
        shape_kept[focus] = [g["shape"] == s.shape for g, s in zip(got, scenes)]
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(f"focus {focus:.2f}: " + ", ".join(f"{a} {row[a]:.1%}" for a in ATTRIBUTES)
              + f" (context moved {moved:.3f}; {row['seconds']} s)", file=sys.stderr, flush=True)
    energy = procedures.component_energy(img)
    record = {"n": n, "seed": seed, "guidance": guidance, "steps": steps, "rows": rows,
              "energy_per_component": [round(float(v), 4) for v in energy.mean(0)]}
    if by:
        beyond = [float(1 - e[:5].sum()) for e in energy]
        groups: dict[str, list[float]] = {}
        for b, s in zip(beyond, scenes):
            groups.setdefault(str(getattr(s, by)), []).append(b)
        record[f"beyond_five_by_{by}"] = {k: round(float(np.mean(v)), 4) for k, v in sorted(groups.items())}
    if pair:
        a, b = (shape_kept[f] for f in pair)
        only_a = sum(x and not y for x, y in zip(a, b))
        only_b = sum(y and not x for x, y in zip(a, b))
        record["pair"] = {"levels": list(pair), "shape_kept": [sum(a), sum(b)], "only_first": only_a,
                          "only_second": only_b, "mcnemar_p": round(mcnemar(only_a, only_b), 4)}
        print(f"focus {pair[0]} vs {pair[1]}: shape kept {sum(a)} vs {sum(b)}; only one of them keeps "
              f"{only_a} vs {only_b} (exact McNemar p = {record['pair']['mcnemar_p']:.3f})",
              file=sys.stderr, flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--focus", default=DEFAULT_FOCUS, help="comma-separated focus levels in [0, 1]")
    parser.add_argument("--guidance", type=float, default=quality.Settings.guidance)
    parser.add_argument("--steps", type=int, default=quality.Settings.steps)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--objects", default="", help="comma-separated object counts for the composite energy split")
    parser.add_argument("--by", choices=("size", "shape", "texture", "color"), default=None,
                        help="also report each rate per value of this scene attribute")
    parser.add_argument("--pair", default="", help="two focus levels to compare scene by scene, e.g. 0.4,0.8")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    try:
        levels = [float(f) for f in args.focus.split(",") if f.strip()]
        counts = [int(k) for k in args.objects.split(",") if k.strip()]
    except ValueError as e:
        parser.error(f"--focus takes numbers and --objects whole numbers, comma-separated ({e})")
    if not levels or any(not 0.0 <= f <= 1.0 for f in levels):
        parser.error("--focus takes levels in [0, 1]")
    if any(k < 1 for k in counts):
        parser.error("--objects takes counts >= 1")
    pair = None
    if args.pair:
        try:
            pair = tuple(float(f) for f in args.pair.split(","))
        except ValueError:
            pair = ()
        if len(pair) != 2 or any(f not in levels for f in pair):
            parser.error("--pair takes two of the --focus levels, e.g. --pair 0.4,0.8")
    if args.threads:
        torch.set_num_threads(args.threads)
    from vdnodes.nano.weights import load_nano

    model = load_nano(path=args.weights)
    record = sweep(model, args.n, args.seed, levels, args.guidance, args.steps, args.by, pair)
    if counts:
        record["composites"] = composite_energy(model, counts, args.n, args.seed)
    record["torch"], record["threads"] = torch.__version__, torch.get_num_threads()
    print(json.dumps(record["rows"], indent=1))
    print("energy per component:", record["energy_per_component"][:8])
    if args.out:
        from vdnodes.core.fileio import atomic_write_text

        atomic_write_text(Path(args.out), json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
