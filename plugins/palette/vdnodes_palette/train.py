"""Train the palette modality on vd-nano with every vd-nano layer frozen.

    python -m vdnodes_palette.train [--steps 1500] [--out DIR] [--install] [--threads N]

What trains: the ``PaletteEncoder`` (RGB -> two tokens) and a new context layer group
``unet.context.palette``, initialised from vd-nano's text context layers (a warm start: those
already turn 64-d tokens into colour and shape features). What stays frozen: everything of
vd-nano (time MLP, image data layers, text context layers, VAE, CLIP).

Data: scenes from ``vdnodes.nano.scenes``; the target is the scene's VAE latent (a posterior
sample, as vd-nano was trained); the palette is the scene's (object colour, background colour)
with a little RGB jitter so nearby colours work too. Half of the steps use the palette alone;
the other half mix it (share 0.3-0.7) with a text context naming only shape / texture / size
("a striped triangle"), which is how the example graph uses it. Per sample, 10% of palettes
become the zero (unconditional) palette and 15% of roles are left out, so guidance works and
"background only" palettes are valid. Epsilon-MSE on VD's schedule; AdamW with warm-up and
cosine decay; fixed seed; resumable (a checkpoint every 250 steps and on Ctrl-C).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vdnodes.core.fileio import new_file_mode
from vdnodes_palette.model import WEIGHTS, PaletteEncoder, context_group

P_UNCOND = 0.1
P_DROP_ROLE = 0.15
P_WITH_TEXT = 0.5
JITTER = 0.03  # std of the RGB jitter, colours in [0, 1]
POOL = 8192  # scenes encoded once by the frozen VAE
BATCH = 64
LR = 5e-4
WARMUP = 100


def _lr(step: int, steps: int) -> float:
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    p = min(1.0, (step - WARMUP) / max(1, steps - WARMUP))
    return LR * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * p)))


def shape_text(scene, rng: np.random.Generator) -> str:
    """Words for the scene without any colour: 'a striped triangle', 'a large circle', 'a cross'."""
    from vdnodes.nano.scenes import TEXTURE_ADJECTIVE

    words = []
    if rng.random() < 0.3:
        words.append(scene.size)
    if rng.random() < 0.6 and TEXTURE_ADJECTIVE[scene.texture]:
        words.append(TEXTURE_ADJECTIVE[scene.texture])
    words.append(scene.shape)
    text = " ".join(words)
    return ("an " if text[0] in "aeiou" else "a ") + text


def palette_rgb(scenes, rng: np.random.Generator | None) -> torch.Tensor:
    """[B, 2, 3] object and background RGB in [0, 1], jittered when ``rng`` is given."""
    from vdnodes.nano.scenes import color_rgb

    rgb = np.stack([[color_rgb(s.color), color_rgb(s.background)] for s in scenes]).astype(np.float32)
    if rng is not None:
        rgb = np.clip(rgb + rng.normal(0, JITTER, rgb.shape), 0, 1).astype(np.float32)
    return torch.from_numpy(rgb)


def train(out: Path, steps: int, seed: int = 0, progress: bool = True, pool_size: int = POOL) -> Path:
    """Train and write ``out/palette-nano.safetensors``; resumes from ``out/checkpoint.*``."""
    from safetensors.torch import load_file, save_file
    from tqdm.auto import tqdm

    from vdnodes.model import sampling
    from vdnodes.model.checkpoints import canonicalize_header
    from vdnodes.model.conditioning import ContextInput
    from vdnodes.model.vae import DiagonalGaussian
    from vdnodes.nano import scenes as sc
    from vdnodes.nano.training.data import render_batch
    from vdnodes.nano.weights import NANO_WEIGHTS, load_nano

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    vd = load_nano(components=["unet.time", "unet.data.image", "unet.context.text", "vae_image.encoder",
                               "clip_text"])
    vd.requires_grad_(False)
    group = context_group(vd.config)
    group.load_state_dict(vd.unet.context["text"].state_dict())  # warm start from the text layers
    vd.unet.add_context_group("palette", group)
    encoder = PaletteEncoder(vd.config.unet.context_dim)
    params = [*group.parameters(), *encoder.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)

    nano_sha256 = hashlib.sha256(NANO_WEIGHTS.read_bytes()).hexdigest()
    ckpt, state_file = out / "checkpoint.safetensors", out / "checkpoint.json"
    start, losses, seconds = 0, [], 0.0
    if ckpt.exists() and state_file.exists():
        state = json.loads(state_file.read_text())
        if state["steps"] != steps or state["seed"] != seed:
            raise SystemExit(f"{out} holds a run with other settings ({state['steps']} steps, seed "
                             f"{state['seed']}); use another --out or delete it")
        if state.get("base_sha256") != nano_sha256:  # runs before commit 71f72af (2026-11-27) did not record it
            raise SystemExit(f"{out} holds a run trained against other vd-nano weights than "
                             f"{NANO_WEIGHTS}; its layers would not fit them. Use another --out "
                             "or delete it")
        weights = load_file(str(ckpt))
        group.load_state_dict({k[8:]: v for k, v in weights.items() if k.startswith("context.")})
        encoder.load_state_dict({k[8:]: v for k, v in weights.items() if k.startswith("encoder.")})
        opt.load_state_dict(torch.load(out / "checkpoint.optim.pt", weights_only=True))
        start, losses, seconds = state["step"], state["losses"], state["seconds"]

    def save_checkpoint(step: int) -> None:
        weights = {**{f"context.{k}": v for k, v in group.state_dict().items()},
                   **{f"encoder.{k}": v for k, v in encoder.state_dict().items()}}
        save_file(weights, str(ckpt) + ".tmp")
        torch.save(opt.state_dict(), out / "checkpoint.optim.pt.tmp")
        Path(str(ckpt) + ".tmp").replace(ckpt)
        (out / "checkpoint.optim.pt.tmp").replace(out / "checkpoint.optim.pt")
        state_file.write_text(json.dumps({"steps": steps, "seed": seed, "step": step, "losses": losses,
                                          "seconds": seconds, "base_sha256": nano_sha256}))

    # the frozen image encoder would cost more than the step: encode a pool of scenes once
    rng = np.random.default_rng([seed, 4242])
    pool = [sc.sample_scene(rng) for _ in range(pool_size)]
    with torch.no_grad():
        moments = torch.cat([vd.vae_image.posterior(render_batch(pool[i:i + 256], "cpu")).moments
                             for i in range(0, pool_size, 256)])
    alphas = sampling.vd_alphas_cumprod()
    uncond_text = vd.clip_text.encode([""])
    scale = vd.vae_image.config.scale_factor

    t0 = time.perf_counter()
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="palette layers", disable=not progress)
    step = start
    try:
        for step in bar:
            r = np.random.default_rng([seed, step, 1])
            index = r.integers(pool_size, size=BATCH)
            scenes = [pool[i] for i in index]
            # contiguous: a strided latent crashed the CPU backward through the frozen convolutions
            # (torch 2.13, segfault in conv backward when only the input needs a gradient)
            x0 = (DiagonalGaussian(moments[torch.from_numpy(index)]).sample() * scale).contiguous()  # [B, 4, h, w]
            present = torch.from_numpy(r.random((BATCH, 2)) >= P_DROP_ROLE)
            present &= torch.from_numpy(r.random((BATCH, 1)) >= P_UNCOND)  # whole palette dropped
            tokens = encoder(palette_rgb(scenes, r), present)  # [B, 2, D]
            contexts = [ContextInput(tokens, "palette")]
            if r.random() < P_WITH_TEXT:
                share = float(r.uniform(0.3, 0.7))
                with torch.no_grad():
                    text = vd.clip_text.encode([shape_text(s, r) for s in scenes])
                keep = torch.from_numpy(r.random(BATCH) >= P_UNCOND)
                text = torch.where(keep[:, None, None], text, uncond_text.expand_as(text))
                contexts = [ContextInput(tokens, "palette", 1 - share), ContextInput(text, "text", share)]
            t = torch.from_numpy(r.integers(0, len(alphas), BATCH))
            a = alphas[t].view(-1, 1, 1, 1)
            noise = torch.from_numpy(r.standard_normal(x0.shape).astype(np.float32))
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            loss = F.mse_loss(vd.unet(xt, t, "image", contexts), noise)
            for g in opt.param_groups:
                g["lr"] = _lr(step, steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(round(loss.item(), 5))
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            if (step + 1) % 250 == 0:
                seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                save_checkpoint(step + 1)
    except KeyboardInterrupt:
        seconds += time.perf_counter() - t0
        save_checkpoint(step)
        raise
    seconds += time.perf_counter() - t0
    save_checkpoint(steps)
    result = out / WEIGHTS.name
    weights = {**{f"context.{k}": v.half().contiguous() for k, v in group.state_dict().items()},
               **{f"encoder.{k}": v.float().contiguous() for k, v in encoder.state_dict().items()}}
    meta = {"training": json.dumps({"steps": steps, "seed": seed, "batch": BATCH, "seconds": round(seconds),
                                    "threads": torch.get_num_threads(), "base": "vd-nano",
                                    "base_sha256": nano_sha256,
                                    "loss_first_50": float(np.mean(losses[:50])),
                                    "loss_last_50": float(np.mean(losses[-50:]))})}
    save_file(weights, str(result) + ".tmp", metadata=meta)
    canonicalize_header(str(result) + ".tmp")  # the same run gives the same bytes
    os.chmod(str(result) + ".tmp", new_file_mode(result))  # save_file creates files 0o600
    Path(str(result) + ".tmp").replace(result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vdnodes_palette.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="palette-train", help="folder for checkpoints and the result")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    parser.add_argument("--install", action="store_true", help=f"copy the result to {WEIGHTS}")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = train(Path(args.out), args.steps, args.seed)
    except KeyboardInterrupt:
        print("interrupted; run the same command to resume", file=sys.stderr)
        return 130
    print(f"wrote {result}")
    if args.install:
        WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result, WEIGHTS)
        print(f"installed {WEIGHTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
