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
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from vdnodes.model import procedures
from vdnodes.nano import quality
from vdnodes.nano.checker import check_image

ATTRIBUTES = ("color", "shape", "texture", "background")
DEFAULT_FOCUS = "0.0,0.1,0.2,0.3,0.4,0.45,0.5,0.55,0.6,0.7,0.8,0.9,1.0"


@torch.no_grad()
def sweep(model, n: int, seed: int, levels: list[float], guidance: float, steps: int) -> dict:
    settings = quality.Settings(steps=steps, guidance=guidance)
    flow_seed = seed * 1000 + quality.FLOWS.index("disentangle") + 1  # eval-nano's scenes
    scenes = quality._scenes(n, flow_seed)
    runner = quality.Runner(model, settings, flow_seed)
    img, img_u = runner.image_context(quality._render(scenes, runner.device))
    rows = []
    for focus in levels:
        t0 = time.perf_counter()
        runner.reseed(flow_seed)  # the same starting noise for every level
        tokens = procedures.adjust_rank(img, focus)
        moved = float(((tokens - img).norm(dim=-1).mean() / img.norm(dim=-1).mean()))
        images = runner.decode_images(runner.sample("image", [(tokens, "image", 1.0)], [img_u]))
        got = [check_image(x) for x in images.float().cpu()]
        row = {"focus": focus, "context_change": round(moved, 4)}
        for a in ATTRIBUTES:
            row[a] = quality._rate([g[a] == getattr(s, a) for g, s in zip(got, scenes)])
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(f"focus {focus:.2f}: " + ", ".join(f"{a} {row[a]:.1%}" for a in ATTRIBUTES)
              + f" (context moved {moved:.3f}; {row['seconds']} s)", file=sys.stderr, flush=True)
    return {"n": n, "seed": seed, "guidance": guidance, "steps": steps, "rows": rows,
            "energy_per_component": [round(float(v), 4) for v in procedures.component_energy(img).mean(0)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--focus", default=DEFAULT_FOCUS, help="comma-separated focus levels in [0, 1]")
    parser.add_argument("--guidance", type=float, default=quality.Settings.guidance)
    parser.add_argument("--steps", type=int, default=quality.Settings.steps)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    levels = [float(f) for f in args.focus.split(",") if f.strip()]
    if not levels or any(not 0.0 <= f <= 1.0 for f in levels):
        parser.error("--focus takes levels in [0, 1]")
    if args.threads:
        torch.set_num_threads(args.threads)
    from vdnodes.nano.weights import load_nano

    record = sweep(load_nano(path=args.weights), args.n, args.seed, levels, args.guidance, args.steps)
    record["torch"], record["threads"] = torch.__version__, torch.get_num_threads()
    print(json.dumps(record["rows"], indent=1))
    print("energy per component:", record["energy_per_component"][:8])
    if args.out:
        from vdnodes.core.fileio import atomic_write_text

        atomic_write_text(Path(args.out), json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
