"""Does the palette steer the colours? Measured on vd-nano with the scene checker.

    python -m vdnodes_palette.evaluate [--n 200] [--steps 20] [--share 0.6] [--out results.json]

For ``n`` held-out scenes, the palette is the scene's (object colour, background colour):
- ``palette_only``: the palette alone as the context;
- ``palette_text``: the palette mixed (share ``--share``, the example graph's 0.6) with a text
  naming only the shape and texture ("a striped triangle"), as in graphs/palette.json;
- ``text_only`` (the baseline): the same text without a palette, so the colours are the model's
  guess. A case counts as steered when the checker reads the palette's object colour *and*
  background colour from the generated image.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _text(scene) -> str:
    from vdnodes.nano.scenes import TEXTURE_ADJECTIVE

    words = [w for w in (TEXTURE_ADJECTIVE[scene.texture], scene.shape) if w]
    text = " ".join(words)
    return ("an " if text[0] in "aeiou" else "a ") + text


# The palette's share when mixed with a text, as graphs/palette.json mixes them (its ``sample.mix``;
# a test checks the two agree). 0.6 since vd-nano 8 (commit e93ae09): on it, at 0.5 the colourless
# text pulled a striped red object to orange in 5 of 6 seeds of the example graph.
GRAPH_SHARE = 0.6


@torch.no_grad()
def measure(n: int = 200, seed: int = 31, steps: int | None = None, guidance: float = 7.5,
            weights: Path | None = None, share: float = GRAPH_SHARE) -> dict[str, float]:
    from vdnodes.nano import scenes as sc
    from vdnodes.nano.checker import check_image
    from vdnodes.nano.quality import Runner, Settings
    from vdnodes.nano.weights import load_nano
    from vdnodes_palette.model import WEIGHTS, build_context_layers, load_encoder
    from vdnodes_palette.train import palette_rgb

    path = weights or WEIGHTS
    vd = load_nano(components=["unet.time", "unet.data.image", "unet.context.text", "vae_image.decoder",
                               "clip_text"])
    vd.unet.add_context_group("palette", build_context_layers(vd.config, path).eval())
    encoder = load_encoder(path)
    rng = np.random.default_rng(seed)
    scenes = [sc.sample_scene(rng) for _ in range(n)]
    runner = Runner(vd, Settings(steps=steps or Settings.steps, guidance=guidance), seed)
    pal = encoder(palette_rgb(scenes, None), torch.ones(n, 2, dtype=torch.bool))  # [N, 2, D]
    pal_u = torch.zeros_like(pal)
    txt, txt_u = runner.text_context([_text(s) for s in scenes])
    runs = {
        "palette_only": runner.sample("image", [(pal, "palette", 1.0)], [pal_u]),
        "palette_text": runner.sample("image", [(pal, "palette", share), (txt, "text", 1.0 - share)], [pal_u, txt_u]),
        "text_only": runner.sample("image", [(txt, "text", 1.0)], [txt_u]),
    }
    out: dict[str, float] = {}
    for name, latents in runs.items():
        got = [check_image(img) for img in runner.decode_images(latents)]
        color = [g["color"] == s.color for g, s in zip(got, scenes)]
        background = [g["background"] == s.background for g, s in zip(got, scenes)]
        out[f"{name}_steered"] = float(np.mean([a and b for a, b in zip(color, background)]))
        out[f"{name}_object_color"] = float(np.mean(color))
        out[f"{name}_background"] = float(np.mean(background))
        if name != "palette_only":
            out[f"{name}_shape"] = float(np.mean([g["shape"] == s.shape for g, s in zip(got, scenes)]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vdnodes_palette.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM steps (default: eval-nano's, the example graphs' setting)")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--share", type=float, default=GRAPH_SHARE,
                        help=f"the palette's share when mixed with a text (default {GRAPH_SHARE}, the example graph's)")
    parser.add_argument("--out", type=Path, default=None, help="write the rates as JSON here")
    args = parser.parse_args(argv)
    if not 0.0 < args.share < 1.0:
        parser.error(f"--share must be between 0 and 1 (exclusive), got {args.share}")
    t0 = time.perf_counter()
    from vdnodes.nano.quality import Settings

    steps = args.steps or Settings.steps
    rates = measure(args.n, args.seed, steps=steps, weights=args.weights, share=args.share)
    rates["seconds"] = round(time.perf_counter() - t0, 1)
    for k, v in rates.items():
        print(f"{k:28s} {v:.3f}" if k != "seconds" else f"{k:28s} {v}")
    if args.out:
        args.out.write_text(json.dumps({"n": args.n, "seed": args.seed, "steps": steps, "share": args.share,
                                        "rates": rates}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
