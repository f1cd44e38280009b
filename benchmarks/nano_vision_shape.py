"""vd-nano: what does the CLIP image context tell the UNet, and can the vision tower learn shape?

    python benchmarks/nano_vision_shape.py [--weights FILE | --clip-checkpoint FILE]
                                           [--train-steps 0] [--lr 3e-4] [--variant base]

1. **Probe.** Encodes 6,000 random scenes with the image context the UNet reads
   (``CLIPImageContext.encode``: every token projected, over the class token's norm) and fits
   linear classifiers (L-BFGS, small L2) for shape, colour and texture on 5,000 of them, from
   the class token, the mean of the patch tokens and all patch tokens side by side; the
   accuracy on the other 1,000 says how readable each attribute is for a linear read-out,
   which is what the UNet's cross-attention values are.
   It also measures where the layout lies in the principal components that VD's
   disentanglement cuts (``procedures.adjust_rank``: a PCA of one image's patch tokens): for
   300 of the scenes, each component's share of the tokens' energy and the correlation of its
   scores over the 64 patches with the shape's coverage of each patch.
2. **Train** (``--train-steps N``): a fresh vision tower of the nano config, supervised on
   shape alone from its class token (linear head, batch 128, AdamW, 50 warm-up steps), scored
   on 500 held-out scenes every 100 steps. ``--variant`` changes one thing: ``p2`` patches of
   2 px (257 tokens, as full-size VD), ``solid`` no textures, ``wide`` width 192.

Writes ``benchmarks/results/nano_vision_shape.json``. Two cores: the probe takes about 30 s,
training about 0.33 s per step (``p2``: 1.6 s).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "nano_vision_shape.json"
ATTRIBUTES = ("shape", "color", "texture")


def images(scenes: list[Any]):
    import numpy as np
    import torch

    from vdnodes.nano import scenes as sc
    from vdnodes.nano.config import IMAGE_SIZE

    pixels = np.stack([sc.render(s, IMAGE_SIZE).transpose(2, 0, 1) for s in scenes]).astype(np.float32) / 255.0
    return torch.from_numpy(pixels)  # [B, 3, 32, 32] in [0, 1]


def fit_linear(x, y, n_classes: int):
    """A linear classifier (L-BFGS, small L2) on standardised ``x [N, F]``; returns its predictor."""
    import torch
    import torch.nn.functional as F

    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    w = torch.zeros(x.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z @ w + b, y) + 1e-3 * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    w, b = w.detach(), b.detach()
    return lambda features: (((features - mean) / std) @ w + b).argmax(1)


def linear_probe(features, labels: list[str], n_train: int) -> float:
    """Held-out accuracy of a linear classifier ``features [N, F]`` -> ``labels``."""
    import torch

    classes = sorted(set(labels))
    y = torch.tensor([classes.index(v) for v in labels])
    predict = fit_linear(features[:n_train], y[:n_train], len(classes))
    with torch.no_grad():
        return float((predict(features[n_train:]) == y[n_train:]).float().mean())


def probe(weights: Path | None, checkpoint: Path | None = None, n: int = 6000, n_train: int = 5000) -> dict[str, float]:
    import numpy as np
    import torch

    from vdnodes.nano import scenes as sc
    from vdnodes.nano.weights import load_nano

    model = load_nano(components=["clip_image"], path=weights)
    if checkpoint is not None:  # a train-nano CLIP checkpoint: its vision tower replaces the file's
        from safetensors.torch import load_file

        state = {k.removeprefix("clip_image."): v for k, v in load_file(str(checkpoint)).items()
                 if k.startswith("clip_image.")}
        model.clip_image.load_state_dict(state, strict=True)
    rng = np.random.default_rng(11)
    scenes = [sc.sample_scene(rng) for _ in range(n)]
    with torch.inference_mode():
        context = torch.cat([model.clip_image.encode(images(scenes[i:i + 500])) for i in range(0, n, 500)])
    reads = {"class_token": context[:, 0], "mean_patch": context[:, 1:].mean(1), "all_patches": context[:, 1:].flatten(1)}
    out = {}
    for attribute in ATTRIBUTES:
        labels = [getattr(s, attribute) for s in scenes]
        for read, features in reads.items():
            out[f"{attribute}_{read}"] = linear_probe(features.float(), labels, n_train)
            print(f"{attribute:8s} {read:12s} {out[f'{attribute}_{read}']:.3f}", flush=True)
    out.update(layout_components(context[:300], scenes[:300]))
    return out


def layout_components(context, scenes: list[Any], k: int = 6) -> dict[str, float]:
    """Per principal component of the patch tokens (as ``adjust_rank`` takes them): mean share of
    energy and mean |correlation| of its patch scores with the shape's coverage mask."""
    import numpy as np
    import torch

    from vdnodes.model.procedures import _pca
    from vdnodes.nano.config import IMAGE_SIZE
    from vdnodes.nano.train import patch_coverage

    side = round((context.shape[1] - 1) ** 0.5)  # patch tokens form a side x side grid
    cover = patch_coverage(scenes, IMAGE_SIZE // side)
    energy, corr = np.zeros(k), np.zeros(k)
    for tokens, mask in zip(context[:, 1:].float(), cover):
        x = tokens - tokens.mean(dim=-1, keepdim=True)  # adjust_rank's centring: one scalar per token
        u, s, _ = _pca(x, 20, 100)
        energy += (s[:k] ** 2 / (x ** 2).sum()).numpy()
        corr += [abs(np.corrcoef(u[:, i].numpy(), mask)[0, 1]) for i in range(k)]
    out = {}
    for i in range(k):
        out[f"layout_pc{i}_energy"] = float(energy[i] / len(scenes))
        out[f"layout_pc{i}_coverage_corr"] = float(corr[i] / len(scenes))
        print(f"PC{i}: energy {out[f'layout_pc{i}_energy']:.3f}, |corr| with coverage {out[f'layout_pc{i}_coverage_corr']:.2f}")
    return out


def train_shape(steps: int, lr: float, variant: str, report: Any = None, seed: int = 0) -> list[dict[str, float]]:
    """The shape accuracy curve of a fresh tower; ``report(curve)`` after every point of it."""
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from vdnodes.model.clip import CLIPImageContext
    from vdnodes.nano import scenes as sc
    from vdnodes.nano.config import nano_config

    config = nano_config().clip_vision
    if variant == "p2":
        config.patch_size = 2
    elif variant == "wide":
        config.hidden_size, config.intermediate_size = 192, 768
    torch.manual_seed(seed)
    tower = CLIPImageContext(config).train()
    head = nn.Linear(config.projection_dim, len(sc.SHAPES))
    opt = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=lr, weight_decay=0.01)

    def batch(n: int, rng):
        scenes = [sc.sample_scene(rng) for _ in range(n)]
        if variant == "solid":
            scenes = [dataclasses.replace(s, texture="solid") for s in scenes]
        return images(scenes), torch.tensor([sc.SHAPES.index(s.shape) for s in scenes])

    rng, test = np.random.default_rng(seed), batch(500, np.random.default_rng(99))
    curve, start = [], time.perf_counter()
    for step in range(steps + 1):
        if step % 100 == 0:
            with torch.no_grad():
                accuracy = float((head(tower.encode(test[0])[:, 0]).argmax(1) == test[1]).float().mean())
            curve.append({"step": step, "accuracy": accuracy, "seconds": round(time.perf_counter() - start, 1)})
            print(f"{variant} step {step}: shape accuracy {accuracy:.3f}", flush=True)
            if report is not None:
                report(curve)
        if step == steps:
            break
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 50)
        x, y = batch(128, rng)
        loss = F.cross_entropy(head(tower.encode(x)[:, 0]), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return curve


def write(result: dict[str, Any]) -> None:
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(RESULTS)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=None, help="a vd-nano file (default: the shipped one)")
    p.add_argument("--clip-checkpoint", type=Path, default=None,
                   help="probe the vision tower of a train-nano CLIP checkpoint (OUT/checkpoints/clip.safetensors)")
    p.add_argument("--label", default=None, help="name of this probe in the results (default: the file)")
    p.add_argument("--train-steps", type=int, default=0, help="also train a fresh tower on shape this long")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--variant", choices=("base", "p2", "solid", "wide"), default="base")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    result: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    source = str(args.clip_checkpoint or args.weights or "shipped")
    key = "probe" if args.label is None and source == "shipped" else f"probe {args.label or source}"
    result[key] = {"weights": source, "rates": probe(args.weights, args.clip_checkpoint)}
    write(result)
    if args.train_steps:
        key = f"train_{args.variant}_lr{args.lr:g}"

        def report(curve: list[dict[str, float]]) -> None:  # an interrupted run keeps its curve
            result[key] = {"steps": args.train_steps, "lr": args.lr, "curve": curve}
            write(result)

        train_shape(args.train_steps, args.lr, args.variant, report)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
