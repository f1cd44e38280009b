"""What VD's focus slider leaves in vd-nano's image context, read by linear probes.

``nano_focus_sweep.py`` shows what the UNet draws from a focus-adjusted context; this asks
why, without sampling. For ``--n`` scenes it encodes the image context (as the UNet reads it),
applies ``procedures.adjust_rank`` at each level of ``--focus``, and for shape, texture and
colour fits linear classifiers on the patch tokens of the first ``--train`` scenes, scored on
the rest:

- **plain reader**: fitted on the *unchanged* contexts, scored on the focused ones. The UNet
  was trained on unchanged contexts only, so this is the simplest reader in its position: does
  the attribute still read the way it did?
- **own reader**: fitted and scored on that level's contexts: is the attribute still there,
  written some other way?

- **shift-blind reader**: like the plain one, but on each context's tokens minus their mean
  token, scaled to one norm. Cross-attention reads a context through softmax(q k) over its
  tokens, which does not change when every token moves by the same vector (only the values
  do, by one vector added everywhere), so this reader sees what the UNet's attention pattern
  sees of an edit that is, or is not, such a shift.

A level that removes an attribute leaves all three near chance (shape 20%, texture 25%, colour
12.5%); one that only rewrites it leaves the own reader high and the plain one low.

It also measures how much of each leading component is such a shift: the share of the
component's token loadings ``u_i`` that is their mean (``T mean(u_i)^2``, 1 when every token
loads it equally). VD's semantic focus removes the first component; where that is a shift it
takes away what all tokens share and leaves the attention pattern to the rest.

It also reports the share of the patch tokens' energy in each of the first eight principal
components (``adjust_rank``'s decomposition) and past the fifth, which style focus drops,
and their mean singular values.

It also measures how alike the leading principal directions (the feature-space vectors
``adjust_rank`` scales) are from one image to the next: the mean |cosine| between two scenes'
i-th directions, over all pairs and over pairs with the same background. Near 1 means semantic
focus removes a direction shared by every context; low means it removes something of each
image's own.

    python benchmarks/nano_focus_probe.py --n 3000 --train 2500 \
        --out benchmarks/results/nano_focus_probe.json
    python benchmarks/nano_focus_probe.py --tower towers.safetensors --out FILE  # a variant's tower

About 5 minutes on two cores (the L-BFGS fits on 4,096 features take most of it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nano_vision_shape import fit_linear, images  # noqa: E402

from vdnodes.model import procedures  # noqa: E402
from vdnodes.nano import scenes as sc  # noqa: E402

ATTRIBUTES = ("shape", "texture", "color")


def direction_alignment(context: torch.Tensor, scenes: list, k: int = 3, q: int = 20) -> list[dict]:
    """Mean |cos| between scenes' i-th principal directions of their patch tokens, i < k."""
    dirs = []
    for tokens in context[:, 1:].float():
        x = tokens - tokens.mean(dim=-1, keepdim=True)  # adjust_rank's centring
        _, _, v = procedures._pca(x, q, 100)
        dirs.append(v[:, :k].T)
    d = torch.stack(dirs)  # [N, k, D]
    backgrounds = np.array([s.background for s in scenes])
    off = ~np.eye(len(scenes), dtype=bool)
    same = off & (backgrounds[:, None] == backgrounds[None, :])
    rows = []
    for i in range(k):
        cos = (d[:, i] @ d[:, i].T).abs().numpy()
        rows.append({"component": i, "all_pairs": round(float(cos[off].mean()), 3),
                     "same_background": round(float(cos[same].mean()), 3)})
    return rows


def shift_share(context: torch.Tensor, k: int = 4, q: int = 20) -> list[float]:
    """Mean share of each of the first ``k`` components' token loadings that is a uniform shift."""
    shares = []
    for tokens in context[:, 1:].float():
        x = tokens - tokens.mean(dim=-1, keepdim=True)
        u, _, _ = procedures._pca(x, q, 100)  # columns of unit norm
        shares.append(u[:, :k].mean(0).square() * u.shape[0])
    return [round(float(v), 3) for v in torch.stack(shares).mean(0)]


def shift_blind(context: torch.Tensor) -> torch.Tensor:
    """Patch tokens minus their mean token, each context scaled to norm 100, flattened."""
    x = context[:, 1:].float()
    x = x - x.mean(dim=1, keepdim=True)
    return (x / x.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None] * 100).flatten(1)


def probe(tower, n: int, n_train: int, levels: list[float], seed: int) -> dict:
    rng = np.random.default_rng(seed)
    scenes = [sc.sample_scene(rng) for _ in range(n)]
    with torch.inference_mode():
        context = torch.cat([tower.encode(images(scenes[i:i + 500])) for i in range(0, n, 500)]).float()
    plain = context[:, 1:].flatten(1)
    adjusted = {f: procedures.adjust_rank(context, f) for f in levels}
    focused = {f: c[:, 1:].flatten(1) for f, c in adjusted.items()}
    blind = {f: shift_blind(c) for f, c in adjusted.items()}
    rows = {f: {"focus": f} for f in levels}
    for attribute in ATTRIBUTES:
        classes = sorted({getattr(s, attribute) for s in scenes})
        y = torch.tensor([classes.index(getattr(s, attribute)) for s in scenes])
        read_plain = fit_linear(plain[:n_train], y[:n_train], len(classes))
        read_blind = fit_linear(shift_blind(context)[:n_train], y[:n_train], len(classes))
        for f, x in focused.items():
            read_own = fit_linear(x[:n_train], y[:n_train], len(classes))
            with torch.no_grad():
                rows[f][f"{attribute}_plain_reader"] = round(float((read_plain(x[n_train:]) == y[n_train:]).float().mean()), 4)
                rows[f][f"{attribute}_own_reader"] = round(float((read_own(x[n_train:]) == y[n_train:]).float().mean()), 4)
                rows[f][f"{attribute}_shift_blind_reader"] = round(
                    float((read_blind(blind[f][n_train:]) == y[n_train:]).float().mean()), 4)
            print(f"{attribute:8s} focus {f:.2f}: plain reader {rows[f][f'{attribute}_plain_reader']:.1%}, "
                  f"own reader {rows[f][f'{attribute}_own_reader']:.1%}, "
                  f"shift-blind reader {rows[f][f'{attribute}_shift_blind_reader']:.1%}", file=sys.stderr, flush=True)
    m = min(n, 300)
    alignment = direction_alignment(context[:m], scenes[:m])
    for row in alignment:
        print(f"direction {row['component']}: mean |cos| {row['all_pairs']:.3f} between scenes, "
              f"{row['same_background']:.3f} with the same background", file=sys.stderr)
    shares = shift_share(context[:m])
    print(f"shift share of components 0-{len(shares) - 1}: {shares}", file=sys.stderr)
    energy = procedures.component_energy(context[:m])
    per_component = [round(float(v), 4) for v in energy.mean(0)[:8]]
    x = context[:m, 1:].float()
    sizes = torch.linalg.svdvals(x - x.mean(dim=-1, keepdim=True)).mean(0)  # adjust_rank's decomposition
    singular_values = [round(float(v), 2) for v in sizes[:8]]
    print(f"mean singular values: {singular_values}", file=sys.stderr)
    beyond_five = round(float(1 - energy[:, :5].sum(1).mean()), 4)
    print(f"energy per component: {per_component}, beyond the fifth: {beyond_five}", file=sys.stderr)
    return {"n": n, "n_train": n_train, "seed": seed, "rows": list(rows.values()),
            "direction_alignment": alignment, "direction_alignment_scenes": m, "shift_share": shares,
            "energy_per_component": per_component, "beyond_five": beyond_five, "singular_values": singular_values}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="scenes in all")
    parser.add_argument("--train", type=int, default=2500, help="scenes the readers are fitted on")
    parser.add_argument("--focus", default="0.0,0.2,0.4,0.5,0.8,1.0", help="comma-separated levels in [0, 1]")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--weights", default=None, help="a vd-nano file (default: the shipped one)")
    parser.add_argument("--tower", default=None,
                        help="probe this vision tower instead (a file written by nano_clip_variants.py --save)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    try:
        levels = [float(f) for f in args.focus.split(",") if f.strip()]
    except ValueError as e:
        parser.error(f"--focus takes comma-separated numbers ({e})")
    if not levels or any(not 0.0 <= f <= 1.0 for f in levels):
        parser.error("--focus takes levels in [0, 1]")
    if not 0 < args.train < args.n:
        parser.error("--train must be between 0 and --n, exclusive")
    if args.threads:
        torch.set_num_threads(args.threads)
    from vdnodes.nano.weights import load_nano

    t0 = time.perf_counter()
    tower = load_nano(components=["clip_image"], path=args.weights).clip_image.eval()
    if args.tower:
        from safetensors.torch import load_file

        prefix = "clip_image."
        state = {k[len(prefix):]: v for k, v in load_file(args.tower).items() if k.startswith(prefix)}
        if not state:
            parser.error(f"--tower {args.tower}: no {prefix}* tensors in it")
        tower.load_state_dict(state)  # strict: every tensor of the tower, of the same shapes
    record = probe(tower, args.n, args.train, levels, args.seed)
    record.update(seconds=round(time.perf_counter() - t0, 1), torch=torch.__version__, threads=torch.get_num_threads())
    print(json.dumps(record, indent=1))
    if args.out:
        from vdnodes.core.fileio import atomic_write_text

        atomic_write_text(Path(args.out), json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
