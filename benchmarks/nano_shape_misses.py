"""vd-nano: which shapes does image variation lose, and does the image VAE lose them first?

    python benchmarks/nano_shape_misses.py [WEIGHTS ...] [--n 200] [--seed 2026] [--variation-tokens all,patches,class]

For each vd-nano file (default: the shipped one) this runs eval-nano's image-variation and
text->image flows (``quality.measure``, the example graphs' settings) and its image-VAE round
trip, reads every output with the rule-based checker and counts the wrong shapes by the
scene's shape and size. Both flows decode through that VAE; text->image shows what the UNet
draws through it when the context names the shape. ``--variation-tokens`` also runs image
variation on part of the image context (``quality.VARIATION_TOKENS``: the patch tokens, or the
class token alone) to see which tokens the UNet reads the shape from. Results:
``benchmarks/results/nano_shape_misses.json``; about a minute per file on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "nano_shape_misses.json"
FLOWS = ("i2i", "t2i", "vae")  # eval-nano flows whose output is an image of the scene


def shape_misses(cases: Any) -> dict[str, dict[str, int]]:
    """``{"shape:cross": {"wrong": k, "total": n}, "size:small": ...}`` over ``cases``."""
    from vdnodes.nano.checker import check_image

    wrong: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for image, scene in zip(cases.images.float(), cases.scenes):
        miss = check_image(image)["shape"] != scene.shape
        for key in (f"shape:{scene.shape}", f"size:{scene.size}"):
            total[key] += 1
            wrong[key] += miss
    return {k: {"wrong": wrong[k], "total": total[k]} for k in sorted(total)}


def measure_file(path: str | None, n: int, seed: int, tokens: list[str]) -> dict[str, Any]:
    """Rates of one file's image flows, and their shape misses by shape and size."""
    import torch

    from vdnodes.nano import quality
    from vdnodes.nano.weights import load_nano

    model = load_nano("cpu", torch.float32, path=path).eval()
    keep: dict[str, Any] = {}
    with torch.inference_mode():
        found = quality.measure(model, n, seed=seed, settings=quality.Settings(), flows=list(FLOWS), keep=keep)
        rates = {k: v for k, v in found.items() if k.startswith(tuple(f"{f}_" for f in FLOWS))}
        misses = {flow: shape_misses(keep[flow]) for flow in FLOWS}
        for part in (t for t in tokens if t != "all"):
            keep = {}
            settings = quality.Settings(variation_tokens=part)
            found = quality.measure(model, n, seed=seed, settings=settings, flows=["i2i"], keep=keep)
            rates.update({f"{k}[{part}]": v for k, v in found.items() if k.startswith("i2i_")})
            misses[f"i2i[{part}]"] = shape_misses(keep["i2i"])
    return {"weights": path or "shipped", "rates": rates, "misses": misses}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="*", help="vd-nano .safetensors files (default: the shipped one)")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--variation-tokens", default="all",
                        help="comma-separated image context parts for image variation: all, patches, class")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from vdnodes.nano.quality import VARIATION_TOKENS

    tokens = args.variation_tokens.split(",")
    if not set(tokens) <= set(VARIATION_TOKENS):
        parser.error(f"--variation-tokens takes {', '.join(VARIATION_TOKENS)}; got {args.variation_tokens!r}")
    for path in args.weights:
        if not Path(path).is_file():
            parser.error(f"no such weights file: {path}")

    import torch

    from vdnodes.core.fileio import atomic_write_text

    torch.set_num_threads(min(2, torch.get_num_threads()))
    results = []
    for path in args.weights or [None]:
        result = measure_file(path, args.n, args.seed, tokens)
        results.append(result)
        for flow, misses in result["misses"].items():
            cells = ", ".join(f"{k} {v['wrong']}/{v['total']}" for k, v in misses.items())
            shape = result["rates"][flow.replace("i2i", "i2i_shape") if "[" in flow else f"{flow}_shape"]
            print(f"{result['weights']} {flow}: shape {100 * shape:.1f}% | wrong: {cells}")
    record = {"n": args.n, "seed": args.seed, "variation_tokens": tokens, "files": results}
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
