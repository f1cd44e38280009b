"""Compare vdnodes' procedures with the original Versatile Diffusion code, on one machine, same inputs.

Usage: ``python scripts/parity_original.py PATH_TO_ORIGINAL_CHECKOUT [--out FILE]``

PATH is a clone of SHI-Labs/Versatile-Diffusion at its Feb 2023 HEAD. The Dec 2022 v1 files
(``inference.py``, ``lib/experiments/sd_default.py``) are read from the clone's history
(``git show 51dcd3b:...``) when its tree does not have them. Results go to
``benchmarks/results/parity_original.json`` (max abs differences; 0 means bit-identical).

What runs is the original code: VD's UNets (lib/model_zoo/openaimodel.py) routed by
``VD_v2_0.apply_model`` / ``apply_model_multicontext`` for every flow, its ``DDIMSampler``
(lib/model_zoo/ddim.py) and schedule
(``make_beta_schedule``, ``VD_v2_0.register_schedule``, ``q_sample``), ``adjust_rank`` and
``remove_duplicate_word`` (app.py), ``find_low_rank`` / ``remove_low_rank`` (inference.py) and
``color_adjust`` (sd_default.py). Functions are taken from their files by source (``ast``), so
gradio and torchvision need not be installed; numpy, torch, einops and tqdm must be. Shims, and
only these: torchvision's ``ToPILImage`` for float tensors (``mul(255).byte()``, as torchvision
does it); ``DDIMSampler.register_buffer`` without its move to CUDA; VD's model registry
(``common/get_model.py`` imports torchvision) as a no-op ``register``; a model object carrying VD's
schedule whose ``apply_model`` calls vdnodes' tiny random UNet (the same network on both sides, so
the sampler is what is compared) and whose ``q_sample`` is VD's with the noise handed in. Inline
arithmetic of ``app.py`` / ``inference.py`` (I2T2I's projection, v2's "Simple" colour match, v1's
word merge, the disentanglement branches) is transcribed with its line numbers.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import importlib
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
V1_COMMIT = "51dcd3b"
PCA_SEED = 0


# ----------------------------------------------------------------------------- reading the original

def read_original(root: Path, rel: str, commit: str | None = None) -> str:
    """A file of the checkout, or of ``commit`` in its history."""
    if commit is None and (root / rel).is_file():
        return (root / rel).read_text(encoding="utf-8-sig")
    ref = commit or "HEAD"
    out = subprocess.run(["git", "-C", str(root), "show", f"{ref}:{rel}"], capture_output=True, check=True)
    return out.stdout.decode("utf-8-sig")


def functions_from(source: str, names: set[str], namespace: dict[str, Any], filename: str) -> dict[str, Any]:
    """Define the top-level functions/classes ``names`` of ``source`` (and methods, as 'Class.method')
    in ``namespace``, without running the module's imports."""
    tree = ast.parse(source)
    picked: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            picked.append(node)
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and f"{node.name}.{item.name}" in names:
                    item.decorator_list = []
                    picked.append(item)
    exec(compile(ast.Module(body=picked, type_ignores=[]), filename, "exec"), namespace)
    return namespace


def model_zoo_package(root: Path) -> str:
    """Import lib/model_zoo's plain modules (ddim, diffusion_utils) without its __init__ and registry."""
    name = "vd_original_model_zoo"
    if name not in sys.modules:
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(root / "lib" / "model_zoo")]
        sys.modules[name] = pkg
    return name


class ToPILImageShim:
    """torchvision.transforms.ToPILImage for a float [C, H, W] tensor: ``mul(255).byte()`` to HWC."""

    def __call__(self, pic: torch.Tensor):
        from PIL import Image

        return Image.fromarray(pic.mul(255).byte().permute(1, 2, 0).cpu().numpy())


# ----------------------------------------------------------------------------- the shared random pieces

def tiny_unet():
    from vdnodes.nodes.models import ModelSpec, _tiny_model

    model = _tiny_model(ModelSpec("tiny", "float32", "cpu"), set(), torch.float32)
    return model


def eps_model(model, context: torch.Tensor):
    """(x, t, c) -> eps of the tiny UNet's image flow with an image context, for both sides."""
    from vdnodes.model.conditioning import ContextInput

    def run(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return model.unet(x, t, "image", [ContextInput(c, "image", 1.0)])

    return run


def context_like(tokens: int = 257, dim: int = 768, seed: int = 0) -> torch.Tensor:
    """[1, tokens, dim]: a few strong directions over noise, as CLIP image contexts have."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(8, dim, generator=g)
    weights = torch.randn(1, tokens, 8, generator=g) * torch.tensor([9.0, 6, 4, 3, 2, 1.5, 1, 0.7])
    return weights @ basis + 0.05 * torch.randn(1, tokens, dim, generator=g)


def max_abs(a, b) -> float:
    return float((torch.as_tensor(a, dtype=torch.float64) - torch.as_tensor(b, dtype=torch.float64)).abs().max())


# ----------------------------------------------------------------------------- DDIM and fidelity

def compare_ddim_and_fidelity(root: Path) -> dict[str, Any]:
    from vdnodes.model import sampling
    from vdnodes.model.conditioning import ContextInput

    pkg = model_zoo_package(root)
    ddim = importlib.import_module(f"{pkg}.ddim")
    dutils = importlib.import_module(f"{pkg}.diffusion_utils")
    vd_src = read_original(root, "lib/model_zoo/vd.py")
    ns = functions_from(vd_src, {"VD_v2_0.register_schedule", "VD_v2_0.q_sample"},
                        {"np": np, "torch": torch, "partial": __import__("functools").partial,
                         "make_beta_schedule": dutils.make_beta_schedule,
                         "extract_into_tensor": dutils.extract_into_tensor}, "lib/model_zoo/vd.py")

    net = tiny_unet()
    unet = eps_model(net, None)
    cfg = net.config
    g = torch.Generator().manual_seed(1)
    c = torch.randn(1, 9, cfg.unet.context_dim, generator=g)
    u = torch.zeros_like(c)
    x0 = torch.randn(1, cfg.unet.image_channels, 8, 8, generator=g)
    scale = 7.5

    class Model(torch.nn.Module):  # what DDIMSampler reads from VD_v2_0
        def __init__(self):
            super().__init__()
            self.device = "cpu"
            self.v_posterior, self.parameterization = 0.0, "eps"  # VD_v2_0.__init__ defaults
            ns["register_schedule"](self, linear_start=0.00085, linear_end=0.012)  # vd.yaml
            self.noise = None

        def apply_model(self, x_info, t, c_info):
            return unet(x_info["x"], t, c_info["c"])

        def q_sample(self, x_start, t):
            return ns["q_sample"](self, x_start, t, noise=self.noise)

    class Sampler(ddim.DDIMSampler):
        def register_buffer(self, name, attr):  # VD's moves every tensor to CUDA
            setattr(self, name, attr)

    model = Model()
    sampler = Sampler(model)

    def ours_eps(x, t):
        return sampling.cfg_denoiser(lambda x, t, _xt, cs: unet(x, t, cs[0].tokens), "image",
                                     [ContextInput(c, "image", 1.0)], [ContextInput(u, "image", 1.0)], scale)(x, t)

    c_info = {"type": "image", "conditioning": c, "unconditional_conditioning": u, "unconditional_guidance_scale": scale}
    out: dict[str, Any] = {"schedule_alphas_cumprod": max_abs(model.alphas_cumprod, sampling.vd_alphas_cumprod())}

    with torch.no_grad():
        for steps in (50, 10):
            torch.manual_seed(123)  # VD draws the start noise from the global generator
            theirs, _ = sampler.sample(steps, list(x0.shape), {"type": "image"}, dict(c_info), verbose=False)
            torch.manual_seed(123)
            noise = torch.randn(x0.shape)
            mine = sampling.sample("ddim", ours_eps, noise, steps)
            out[f"ddim_{steps}_steps"] = max_abs(theirs, mine)

        for steps, fidelity in ((10, 0.3), (50, 0.3), (50, 0.5), (50, 0.8)):
            noise = sampling.initial_noise(x0.shape, torch.Generator().manual_seed(7))
            model.noise = noise
            k = int(steps * (1 - fidelity))  # app.py line 352
            theirs, _ = sampler.sample(steps, list(x0.shape),
                                       {"type": "image", "x0": x0, "x0_forward_timesteps": k}, dict(c_info), verbose=False)
            row = {}
            for mode in ("vd", "diffusers"):
                mine = sampling.sample_img2img("ddim", ours_eps, x0, steps, 1 - fidelity, convention=mode,
                                               generator=torch.Generator().manual_seed(7))
                row[mode] = max_abs(theirs, mine)
            out[f"fidelity_{fidelity}_{steps}_steps"] = row
    return out


# ----------------------------------------------------------------------------- focus and v1 levels

def compare_disentanglement(root: Path) -> dict[str, Any]:
    from vdnodes.model.procedures import adjust_rank, keep_top_components, low_rank_level

    app = functions_from(read_original(root, "app.py"), {"decompose", "adjust_rank"},
                         {"np": np, "torch": torch}, "app.py")
    v1 = functions_from(read_original(root, "inference.py", V1_COMMIT),
                        {"vd_inference.find_low_rank", "vd_inference.remove_low_rank"}, {"torch": torch},
                        "inference.py")
    c = context_like()
    out: dict[str, Any] = {}
    focus_f = app["adjust_rank"](max_drop_rank=[1, 5], q=20)  # app.py line 296
    for lvl in (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0):
        torch.manual_seed(PCA_SEED)
        theirs = torch.cat([c[:, :1], focus_f(c[:, 1:], lvl)], dim=1)  # app.py lines 338-342
        out[f"focus_{lvl}"] = max_abs(theirs, adjust_rank(c, lvl))

    for level in (-2, -1, 1, 2):  # inference.py lines 190-212
        torch.manual_seed(PCA_SEED)
        loc = c[:, 1:]
        if level < 0:
            loc = v1["remove_low_rank"](None, loc, demean=True, q=50, q_remove=-level)
        else:
            loc = v1["find_low_rank"](None, loc, demean=True, q={1: 10, 2: 2}[level])
        out[f"v1_level_{level}"] = max_abs(torch.cat([c[:, :1], loc], dim=1), low_rank_level(c, level))

    torch.manual_seed(PCA_SEED)
    theirs = v1["find_low_rank"](None, c[:, 1:], demean=True, q=10)  # inference.py lines 366-367
    out["i2t2i_image_context_rank_10"] = max_abs(theirs, keep_top_components(c, 10))
    return out


# ----------------------------------------------------------------------------- I2T2I latent edit

def compare_i2t2i_edit() -> dict[str, Any]:
    from vdnodes.model.procedures import edit_text_latent

    g = torch.Generator().manual_seed(3)
    zt, ztn, ztp = torch.randn(4, 768, generator=g), torch.randn(1, 768, generator=g), torch.randn(1, 768, generator=g)
    # inference.py (51dcd3b) lines 354-357, as written
    ztn_norm = ztn / ztn.norm(dim=1)
    zt_proj_mag = torch.matmul(zt, ztn_norm[0])
    zt_perp = zt - zt_proj_mag[:, None] * ztn_norm
    theirs = zt_perp + ztp
    return {"latent_edit": max_abs(theirs, edit_text_latent(zt, ztn, ztp))}


# ----------------------------------------------------------------------------- colour

def compare_colour(root: Path) -> dict[str, Any]:
    from PIL import Image

    from vdnodes.model.colour_v1 import match_colors_v1
    from vdnodes.model.procedures import match_colors

    src = read_original(root, "lib/experiments/sd_default.py", V1_COMMIT)
    ns = functions_from(src, {"color_adjust"},
                        {"np": np, "torch": torch, "PIL": __import__("PIL.Image"),
                         "tvtrans": types.SimpleNamespace(ToPILImage=ToPILImageShim)}, "sd_default.py")
    del Image
    g = torch.Generator().manual_seed(4)
    decoded = torch.rand(2, 3, 64, 64, generator=g) * 2.2 - 1.1  # VAE output in about [-1, 1]
    reference = torch.rand(3, 64, 64, generator=g) * torch.tensor([0.5, 0.8, 0.3]).view(3, 1, 1) + 0.1
    out: dict[str, Any] = {}
    for simple in (True, False):  # inference.py decode, lines 84-90
        worst = 0.0
        for xi in decoded:
            f = ns["color_adjust"](ref_from=(xi + 1) / 2, ref_to=reference)
            theirs = f((xi + 1) / 2, keep=0.5, simple=simple)  # uint8 HWC
            mine = match_colors_v1(((xi + 1) / 2)[None], reference[None], histogram=not simple, keep=0.5)
            mine = (mine[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            worst = max(worst, float(np.abs(theirs.astype(int) - mine.astype(int)).max()))
        out["v1_simple_uint8_levels" if simple else "v1_histogram_uint8_levels"] = worst

    # app.py lines 373-379 ("Simple", v2): per-channel mean/std of cx (the input) and each output
    cx, imout = reference[None], ((decoded + 1) / 2).clamp(0, 1)
    cx_mean, cx_std = cx.view(3, -1).mean(-1)[:, None, None], cx.view(3, -1).std(-1)[:, None, None]
    theirs = [torch.clamp((ii - ii.view(3, -1).mean(-1)[:, None, None]) / ii.view(3, -1).std(-1)[:, None, None]
                          * cx_std + cx_mean, 0, 1) for ii in imout]
    out["v2_simple"] = max_abs(torch.stack(theirs), match_colors(imout, cx))
    return out


# ----------------------------------------------------------------------------- captions

SENTENCES = [
    "a cat cat sitting on on the mat", "a dog. a dog. a cat", "on the the table table .",
    "a red (big) car car", "hello, hello, world", "a painting of a a house by by the lake lake",
    "( ( a a bird", "the the the end", "",
]


def compare_captions(root: Path) -> dict[str, Any]:
    from vdnodes.model.optimus import merge_repeated_words, remove_duplicate_words

    app = functions_from(read_original(root, "app.py"), {"remove_duplicate_word"}, {}, "app.py")
    v2_wrong = [s for s in SENTENCES if app["remove_duplicate_word"](s) != remove_duplicate_words(s)]

    def v1_merge(xi: str) -> str:  # inference.py (51dcd3b) lines 100-110
        xi_split = xi.split()
        xinew = [wi for idxi, wi in enumerate(xi_split) if not (idxi != 0 and wi == xi_split[idxi - 1])]
        return " ".join(xinew)

    v1_wrong = [s for s in SENTENCES if v1_merge(s) != merge_repeated_words(s)]
    return {"sentences": len(SENTENCES), "v2_remove_duplicate_word_differs": v2_wrong,
            "v1_merge_differs": v1_wrong}


# ----------------------------------------------------------------------------- flows

def original_unets(root: Path, width: int, text_dim: int):
    """VD's ``UNetModel2D_Next`` / ``UNetModel0D_Next`` (lib/model_zoo/openaimodel.py lines 2575, 2814) at
    a small width, configured as configs/model/openai_unet.yaml's v1 entries. Their registry module
    (common/get_model.py, which imports torchvision) is replaced by a no-op ``register``."""
    pkg = model_zoo_package(root)
    for name in ("lib", "lib.model_zoo", "lib.model_zoo.common"):
        sys.modules.setdefault(name, types.ModuleType(name))
    registry = types.ModuleType("lib.model_zoo.common.get_model")
    registry.register = lambda *_a, **_k: (lambda cls: cls)
    registry.get_model = None
    sys.modules.setdefault("lib.model_zoo.common.get_model", registry)
    unets = importlib.import_module(f"{pkg}.openaimodel")
    image = unets.UNetModel2D_Next(in_channels=4, model_channels=width, out_channels=4, num_res_blocks=[2, 2, 2, 2],
                                   attention_resolutions=[4, 2, 1], context_dim=width, channel_mult=[1, 2, 2, 2],
                                   num_heads=8, use_checkpoint=False, parts=["global", "data", "context"])
    text = unets.UNetModel0D_Next(input_channels=text_dim, model_channels=width, output_channels=text_dim,
                                  context_dim=width, num_noattn_blocks=[2, 2, 2, 2], channel_mult=[1, 2, 2, 2],
                                  second_dim=[4, 4, 4, 4], with_attn=[True, True, True, False], num_heads=8,
                                  use_checkpoint=False, parts=["data", "context"])
    return pkg, torch.nn.ModuleDict({"image": image, "text": text})


def compare_flows(root: Path) -> dict[str, Any]:
    """Our UNet and VD's (``VD_v2_0.apply_model`` / ``apply_model_multicontext``, vd.py lines 330-460)
    on the same random weights, copied into VD's modules through our v2 key map."""
    from vdnodes.model.conditioning import ContextInput
    from vdnodes.model.keymap import PrefixIndex, fit_shape
    from vdnodes.model.unet import UNet, UNetConfig
    from vdnodes.model.unet_keys import vd_v2_keymap

    width = 32  # VD's GroupNorm has 32 groups: the smallest width it accepts
    config = UNetConfig(model_channels=width, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                        attention_levels=(0, 1, 2), heads=8, context_dim=width, text_dim=width, norm_groups=32)
    torch.manual_seed(0)
    ours = UNet(config).eval()
    for p in ours.parameters():  # no zero-initialised outputs: every layer must matter
        torch.nn.init.normal_(p, std=0.05)
    pkg, diffuser = original_unets(root, width, width)
    mine, index = ours.state_dict(), PrefixIndex(vd_v2_keymap(config))
    theirs = {}
    for key, value in diffuser.state_dict().items():
        name = index.rename("diffuser." + key)
        theirs[key] = fit_shape(mine[name], tuple(value.shape))
    diffuser.load_state_dict(theirs)
    diffuser.eval()

    ns = functions_from(read_original(root, "lib/model_zoo/vd.py"),
                        {"VD_v2_0.apply_model", "VD_v2_0.context_mixing", "VD_v2_0.apply_model_multicontext"},
                        {"torch": torch, "np": np, "npr": np.random, "__package__": pkg, "__name__": pkg + ".vd"},
                        "lib/model_zoo/vd.py")
    vd = types.SimpleNamespace(diffuser=diffuser, global_layer_ptr="image")
    vd.context_mixing = types.MethodType(ns["context_mixing"], vd)

    g = torch.Generator().manual_seed(2)
    xs = {"image": torch.randn(2, 4, 8, 8, generator=g), "text": torch.randn(2, width, generator=g)}  # VD: [n, 768]
    cs = {"image": torch.randn(2, 17, width, generator=g), "text": torch.randn(2, 7, width, generator=g)}
    t = torch.tensor([981, 321])
    out: dict[str, Any] = {}
    with torch.no_grad():
        for xt in ("image", "text"):
            for ct in ("image", "text"):
                ref = ns["apply_model"](vd, {"type": xt, "x": xs[xt]}, t, {"type": ct, "c": cs[ct]})
                got = ours(xs[xt], t, xt, [ContextInput(cs[ct], ct, 1.0)])
                out[f"{xt}_from_{ct}"] = max_abs(ref.flatten(1), got.flatten(1))
        infos = [{"type": "image", "c": cs["image"], "ratio": 0.3}, {"type": "text", "c": cs["text"], "ratio": 0.7}]
        ref = ns["apply_model_multicontext"](vd, {"type": "image", "x": xs["image"]}, t, infos)
        got = ours(xs["image"], t, "image", [ContextInput(cs["image"], "image", 0.3), ContextInput(cs["text"], "text", 0.7)])
        out["image_dual_context_0.3_0.7"] = max_abs(ref, got)
    out["output_scale"] = float(got.abs().max())
    return out


# ----------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original", type=Path, help="clone of SHI-Labs/Versatile-Diffusion")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "parity_original.json")
    args = parser.parse_args()
    root = args.original.resolve()
    if not (root / "lib" / "model_zoo" / "ddim.py").is_file():
        print(f"{root} is not a Versatile Diffusion checkout (no lib/model_zoo/ddim.py)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    sections = {"ddim_and_fidelity": lambda: compare_ddim_and_fidelity(root),
                "disentanglement": lambda: compare_disentanglement(root),
                "i2t2i_edit": compare_i2t2i_edit,
                "colour": lambda: compare_colour(root),
                "captions": lambda: compare_captions(root),
                "flows": lambda: compare_flows(root)}
    results: dict[str, Any] = {}
    for name, run in sections.items():
        try:
            results[name] = run()
        except Exception as e:  # a section that cannot run is reported, the others still run
            results[name] = {"error": f"{type(e).__name__}: {e}"}
        print(name, json.dumps(results[name]))
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "original": {"head": head, "v1_files_from": V1_COMMIT},
        "torch": torch.__version__, "numpy": np.__version__,
        "model": "vdnodes' tiny random model (same weights on both sides), CPU, fp32",
        "results": results,
        "flows_model": "a 32-wide UNet (VD's GroupNorm needs 32 channels), random weights copied into VD's "
                       "UNetModel2D_Next / UNetModel0D_Next through vdnodes' v2 key map",
    }
    from vdnodes.core.fileio import atomic_write_bytes

    atomic_write_bytes(args.out, (json.dumps(report, indent=2) + "\n").encode())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
