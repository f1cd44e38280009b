"""vd-nano: does VD's I2T2I latent edit work on its Optimus, and can an Optimus be trained for it?

    python benchmarks/nano_optimus_edit.py [--train-steps 0] [--edit-weight 0.5] [--n 200]

I2T2I (vd-architecture.md section 6.5, step 4) edits a caption latent z with two phrase
latents: ``z - (z . n^) n^ + p`` (``procedures.edit_text_latent``). This measures that step
alone, without the UNet: for held-out scenes, the latent of a true caption is edited to
remove the object's colour (or shape) word and add another, greedily decoded, and scored
with the caption parser against the edited scene: the sentence must name the new value and
keep the other attributes (colour, shape, background; texture too, as captions name it).

``--train-steps N`` also trains a fresh Optimus for N steps with train-nano's Optimus stage
(same recipe and budget otherwise) plus an *edit loss*: the decoder must read the edited
latent of a caption as the caption of the edited scene (colour or shape, half each), weight
``--edit-weight``. Scored the same way. Results: ``benchmarks/results/nano_optimus_edit.json``.
Two cores: scoring takes seconds, training about 0.09 s per step.
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
EDITED = ("color", "shape")


def edited(scene: Any, attribute: str, rng: Any) -> Any:
    """``scene`` with ``attribute`` changed to another valid value (a colour never the background's)."""
    from vdnodes.nano import scenes as sc

    if attribute == "color":
        choices = [c for c in sc.COLORS if c not in (scene.color, scene.background)]
    else:
        choices = [s for s in sc.SHAPES if s != scene.shape]
    return dataclasses.replace(scene, **{attribute: choices[int(rng.integers(len(choices)))]})


def edit_cases(n: int, seed: int, attribute: str) -> tuple[list[Any], list[Any], list[int]]:
    """Held-out scenes, their edited twins and a caption template for each."""
    import numpy as np

    from vdnodes.nano import scenes as sc

    rng = np.random.default_rng([seed, EDITED.index(attribute)])
    scenes = [sc.sample_scene(rng) for _ in range(n)]
    return scenes, [edited(s, attribute, rng) for s in scenes], [int(rng.integers(len(sc.TEMPLATES))) for _ in scenes]


def score(optimus: Any, n: int = 200, seed: int = 4242) -> dict[str, float]:
    """Rates of VD's latent edit on true caption latents, per edited attribute."""
    import numpy as np
    import torch

    from vdnodes.model import procedures
    from vdnodes.nano import scenes as sc

    out: dict[str, float] = {}
    with torch.no_grad():
        for attribute in EDITED:
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


def train_with_edit_loss(steps: int, weight: float, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """A fresh Optimus from train-nano's Optimus stage plus the edit loss; returns it and the stage's result."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from vdnodes.model import procedures
    from vdnodes.model import vd as vdm
    from vdnodes.nano import scenes as sc
    from vdnodes.nano import train as tr

    config = tr.nano_config()
    info = tr.tokenizer_info(config)
    clip_tok, optimus_tok = tr.build_tokenizers(info)
    torch.manual_seed(seed)
    model = vdm.build(config, ["vae_text.encoder", "vae_text.decoder"], device="cpu", clip_tokenizer=clip_tok,
                      optimus_tokenizers=tuple(optimus_tok)).eval()
    plan = dataclasses.replace(tr.BUDGETS["full"], optimus=dataclasses.replace(tr.BUDGETS["full"].optimus, steps=steps))

    class EditOptimus(tr.OptimusStage):
        def step_loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
            loss, metrics = super().step_loss(step)
            if weight == 0:
                return loss, metrics
            rng = np.random.default_rng([tr.step_seed(self.seed, self.name, step), 0, 2])  # 2: not the batch's stream
            opt = self.model.vae_text
            scenes = [sc.sample_scene(rng) for _ in range(self.budget.batch // 2)]
            attributes = [EDITED[int(rng.integers(len(EDITED)))] for _ in scenes]
            targets = [edited(s, a, rng) for s, a in zip(scenes, attributes)]
            templates = [int(rng.integers(len(sc.TEMPLATES))) for _ in scenes]
            z = opt.encode([s.caption(t) for s, t in zip(scenes, templates)])
            remove = opt.encode([getattr(s, a) for s, a in zip(scenes, attributes)])
            add = opt.encode([getattr(s, a) for s, a in zip(targets, attributes)])
            dec = self.decoder_ids([s.caption(t) for s, t in zip(targets, templates)])
            logits, _ = opt.decoder_logits(dec[:, :-1], procedures.edit_text_latent(z, remove, add))
            target = dec[:, 1:].masked_fill(dec[:, 1:] == opt.config.pad_token_id, -100)
            edit = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100)
            return loss + weight * edit, {**metrics, "edit_ce": edit.item()}

    stage = EditOptimus(model, plan, seed, torch.device("cpu"), progress=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = tr._run_stage(stage, tr._Checkpoints(Path(tmp), {"optimus": {"edit": weight}}),
                               checkpoint_every=10**9, progress=True, on_step=None,
                               index=tr.STAGES.index("optimus"))
    return model.vae_text, result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-steps", type=int, default=0, help="also train a fresh Optimus with the edit loss")
    p.add_argument("--edit-weight", type=float, default=0.5)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import torch

    from vdnodes.nano.weights import load_nano

    torch.set_num_threads(args.threads)
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    shipped = load_nano(components=["vae_text.encoder", "vae_text.decoder"]).vae_text
    results["shipped"] = score(shipped, args.n)
    print("shipped:", {k: v for k, v in results["shipped"].items() if not k.endswith("examples")}, flush=True)
    if args.train_steps:
        started = time.perf_counter()
        optimus, stage_result = train_with_edit_loss(args.train_steps, args.edit_weight)
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
