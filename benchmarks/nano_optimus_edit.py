"""vd-nano: does VD's I2T2I latent edit work on its Optimus, and what does the edit loss buy?

    python benchmarks/nano_optimus_edit.py [--weights FILE] [--train-steps 0] [--edit-weight 0.5] [--n 200]

I2T2I (vd-architecture.md section 6.5, step 4) edits a caption latent z with two phrase
latents: ``z - (z . n^) n^ + p`` (``procedures.edit_text_latent``). This measures that step
alone, without the UNet: for held-out scenes, the latent of a true caption is edited to
remove the object's colour (or shape) word and add another, greedily decoded, and scored
with the caption parser against the edited scene: the sentence must name the new value and
keep the other attributes (colour, shape, background; texture too, as captions name it).

It scores the Optimus of a vd-nano file (the shipped one by default). ``--train-steps N``
also trains a fresh Optimus with train-nano's own Optimus stage for N steps, whose edit loss
(``OptimusStage.edit_loss``) has weight ``--edit-weight`` (0: the recipe before the edit
loss), and scores it the same way. Results: ``benchmarks/results/nano_optimus_edit.json``.
Two cores: scoring takes seconds, training about 0.15 s per step with the edit loss.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "nano_optimus_edit.json"


def edit_cases(n: int, seed: int, attribute: str) -> tuple[list[Any], list[Any], list[int]]:
    """Held-out scenes, their twins with ``attribute`` changed and a caption template for each."""
    import numpy as np

    from vdnodes.nano import scenes as sc
    from vdnodes.nano import train as tr

    rng = np.random.default_rng([seed, tr.EDITED.index(attribute)])
    scenes = [sc.sample_scene(rng) for _ in range(n)]
    return (scenes, [tr.change_attribute(s, attribute, rng) for s in scenes],
            [int(rng.integers(len(sc.TEMPLATES))) for _ in scenes])


def score(optimus: Any, n: int = 200, seed: int = 4242) -> dict[str, float]:
    """Rates of VD's latent edit on true caption latents, per edited attribute."""
    import numpy as np
    import torch

    from vdnodes.model import procedures
    from vdnodes.nano import scenes as sc
    from vdnodes.nano import train as tr

    out: dict[str, float] = {}
    with torch.no_grad():
        for attribute in tr.EDITED:
            scenes, targets, templates = edit_cases(n, seed, attribute)
            z = optimus.encode([s.caption(t) for s, t in zip(scenes, templates)])
            remove = optimus.encode([getattr(s, attribute) for s in scenes])
            add = optimus.encode([getattr(s, attribute) for s in targets])
            sentences = optimus.decode(procedures.edit_text_latent(z, remove, add), greedy=True)
            words = [sc.score_caption(t, s) for t, s in zip(targets, sentences)]
            out[f"{attribute}_new_value"] = float(np.mean([w[attribute] for w in words]))
            out[f"{attribute}_edit"] = float(np.mean([w["color"] and w["shape"] and w["background"] for w in words]))
            out[f"{attribute}_edit_all"] = float(np.mean([all(w.values()) for w in words]))
            out[f"{attribute}_examples"] = [f"{s.caption(t)} -> {d}" for s, t, d in
                                            zip(scenes[:4], templates[:4], sentences[:4])]  # type: ignore[assignment]
            # And plain reconstruction: the edit loss must not cost the autoencoder.
        captions = [s.caption(t) for s, t in zip(scenes, templates)]
        decoded = optimus.decode(optimus.encode(captions), greedy=True)
        out["reconstruction_exact"] = float(np.mean([a == b for a, b in zip(decoded, captions)]))
    return out


def train_optimus(steps: int, weight: float, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """A fresh Optimus from train-nano's Optimus stage (edit loss weight ``weight``); it and the stage's result."""
    import torch

    from vdnodes.model import vd as vdm
    from vdnodes.nano import train as tr

    config = tr.nano_config()
    clip_tok, optimus_tok = tr.build_tokenizers(tr.tokenizer_info(config))
    torch.manual_seed(seed)
    model = vdm.build(config, ["vae_text.encoder", "vae_text.decoder"], device="cpu", clip_tokenizer=clip_tok,
                      optimus_tokenizers=tuple(optimus_tok)).eval()
    plan = dataclasses.replace(tr.BUDGETS["full"], optimus=dataclasses.replace(tr.BUDGETS["full"].optimus, steps=steps))
    stage = tr.OptimusStage(model, plan, seed, torch.device("cpu"), progress=True)
    stage.EDIT_WEIGHT = weight
    with tempfile.TemporaryDirectory() as tmp:
        result = tr._run_stage(stage, tr._Checkpoints(Path(tmp), {"optimus": {"edit": weight}}),
                               checkpoint_every=10**9, progress=True, on_step=None,
                               index=tr.STAGES.index("optimus"))
    return model.vae_text, result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None, help="a vd-nano file (default: the shipped one)")
    p.add_argument("--label", default="shipped", help="the results key of the file's scores")
    p.add_argument("--train-steps", type=int, default=0, help="also train a fresh Optimus with train-nano's stage")
    p.add_argument("--edit-weight", type=float, default=0.5, help="edit loss weight of that training (0: none)")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import torch

    from vdnodes.nano.weights import load_nano

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    optimus = load_nano(path=args.weights, components=["vae_text.encoder", "vae_text.decoder"]).vae_text
    results[args.label] = score(optimus, args.n)
    print(f"{args.label}:", {k: v for k, v in results[args.label].items() if not k.endswith("examples")}, flush=True)
    if args.train_steps:
        started = time.perf_counter()
        optimus, stage_result = train_optimus(args.train_steps, args.edit_weight)
        key = f"edit loss {args.edit_weight:g}, {args.train_steps} steps"
        results[key] = {"seconds": round(time.perf_counter() - started), "stage_result": stage_result,
                        **score(optimus, args.n)}
        print(f"{key}:", {k: v for k, v in results[key].items() if not k.endswith("examples")}, flush=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(RESULTS)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
