"""vd-nano: which shapes does image variation lose, and does the image VAE lose them first?

    python benchmarks/nano_shape_misses.py [WEIGHTS ...] [--n 200] [--seed 2026]

For each vd-nano file (default: the shipped one) this runs eval-nano's image-variation flow
(``quality.measure``, the example graph's settings) and its image-VAE round trip, reads every
output with the rule-based checker and counts the wrong shapes by the scene's shape and size.
Image variation decodes through that VAE, so the VAE row is a ceiling for what the UNet can
keep. Results: ``benchmarks/results/nano_shape_misses.json``; about 30 s per file on 2 cores.
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


def measure_file(path: str | None, n: int, seed: int) -> dict[str, Any]:
    """Image-variation and VAE rates of one file, and its shape misses by shape and size."""
    import torch

    from vdnodes.nano import quality
    from vdnodes.nano.weights import load_nano

    model = load_nano("cpu", torch.float32, path=path).eval()
    keep: dict[str, Any] = {}
    with torch.inference_mode():
        rates = quality.measure(model, n, seed=seed, settings=quality.Settings(), flows=["i2i", "vae"], keep=keep)
    return {"weights": path or "shipped",
            "rates": {k: v for k, v in rates.items() if k.startswith(("i2i_", "vae_"))},
            "misses": {flow: shape_misses(keep[flow]) for flow in ("i2i", "vae")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="*", help="vd-nano .safetensors files (default: the shipped one)")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    for path in args.weights:
        if not Path(path).is_file():
            parser.error(f"no such weights file: {path}")

    import torch

    from vdnodes.core.fileio import atomic_write_text

    torch.set_num_threads(min(2, torch.get_num_threads()))
    results = []
    for path in args.weights or [None]:
        result = measure_file(path, args.n, args.seed)
        results.append(result)
        for flow, misses in result["misses"].items():
            cells = ", ".join(f"{k} {v['wrong']}/{v['total']}" for k, v in misses.items())
            print(f"{result['weights']} {flow}: shape {100 * result['rates'][f'{flow}_shape']:.1f}% | wrong: {cells}")
    atomic_write_text(args.out, json.dumps({"n": args.n, "seed": args.seed, "files": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
