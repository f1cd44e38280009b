"""VD exactly as its authors ran it: fidelity, v1 disentanglement levels, v1 colour adjustment and
caption post-processing, each against a transcription of the original code (SHI-Labs/Versatile-
Diffusion; file and line in each reference's docstring) on the tiny random model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vdnodes.core.executor import Executor
from vdnodes.core.graph import load_graph
from vdnodes.model import sampling
from vdnodes.model.colour_v1 import match_colors_v1
from vdnodes.model.conditioning import ContextInput
from vdnodes.model.configs import tiny_config
from vdnodes.model.procedures import PCA_SEED, low_rank_level
from vdnodes.nodes import build_registry
from vdnodes.nodes.denoise import image_size
from vdnodes.nodes.models import ModelManager

ROOT = Path(__file__).resolve().parents[2]
IMAGE = str(ROOT / "graphs" / "inputs" / "red_circle_on_blue.png")


@pytest.fixture(scope="module")
def registry():
    return build_registry()


@pytest.fixture(scope="module")
def manager():
    return ModelManager()


def run(registry, manager, nodes: dict, targets: list[str], tmp_path) -> dict:
    graph = load_graph({"format": "vdnodes.graph", "version": 1, "nodes": nodes}, registry)
    ex = Executor(registry, out_dir=str(tmp_path), services={"models": manager, "manifest": manager.manifest})
    result = ex.run(graph, targets=targets)
    assert result.status == "ok"
    return result.outputs


def link(node: str, out: str) -> list[str]:
    return [node, out]


# ----------------------------------------------------------------------------- fidelity

def vd_schedule() -> torch.Tensor:
    """alphas_cumprod as VD registers it: float64 numpy betas (diffusion_utils.py make_beta_schedule
    'linear', lines 8-12; vd.yaml beta 0.00085..0.012), cumprod in float64, stored as float32
    (lib/model_zoo/vd.py at HEAD, lines 127-153)."""
    betas = (torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2).numpy()
    return torch.tensor(np.cumprod(1.0 - betas, axis=0), dtype=torch.float32)


def vd_fidelity_reference(eps_fn, x0: torch.Tensor, noise: torch.Tensor, steps: int, fidelity: float) -> torch.Tensor:
    """VD's i2i fidelity run: app.py (HEAD) lines 350-360 and lib/model_zoo/ddim.py lines 23-56
    (make_schedule), 97-127 (the x0 start) and 152-171 (p_sample_ddim, eta 0)."""
    betas = (torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2).numpy()
    acp64 = np.cumprod(1.0 - betas, axis=0)
    acp = torch.tensor(acp64, dtype=torch.float32)
    sqrt_acp = torch.tensor(np.sqrt(acp64), dtype=torch.float32)
    sqrt_1m_acp = torch.tensor(np.sqrt(1.0 - acp64), dtype=torch.float32)
    ddim_timesteps = np.asarray(list(range(0, 1000, 1000 // steps))) + 1  # make_ddim_timesteps, 'uniform'
    alphas = acp[ddim_timesteps]
    alphas_prev = np.asarray([acp[0]] + acp[ddim_timesteps[:-1]].tolist())
    step = int(steps * (1 - fidelity))  # app.py line 352
    t_noise = ddim_timesteps[step]
    x = sqrt_acp[t_noise] * x0 + sqrt_1m_acp[t_noise] * noise  # model.q_sample
    timesteps = ddim_timesteps[:step]
    for i, t in enumerate(np.flip(timesteps)):
        index = step - i - 1
        e_t = eps_fn(x, int(t))
        a_t, a_prev = float(alphas[index]), float(alphas_prev[index])
        pred_x0 = (x - (1.0 - a_t) ** 0.5 * e_t) / a_t**0.5
        x = a_prev**0.5 * pred_x0 + (1.0 - a_prev) ** 0.5 * e_t
    return x


def test_vd_start_keeps_vds_step_count_and_noise_level():
    acp = sampling.vd_alphas_cumprod()
    ts = sampling.ddim_timesteps(50)
    x0 = torch.zeros(1, 4, 2, 2)
    for strength, kept in ((0.2, 9), (0.5, 25), (0.7, 35), (0.02, 1)):
        x, left = sampling.img2img_start_vd(x0, strength, ts, acp, torch.Generator().manual_seed(0))
        assert len(left) == kept == int(50 * (1 - (1 - strength)))  # VD truncates 50 * 0.19999... to 9
        noise = sampling.initial_noise(x0.shape, torch.Generator().manual_seed(0))
        above = int(left[0]) + 20  # one grid step above the first denoised step
        assert torch.allclose(x, (1 - acp[above]) ** 0.5 * noise)
    x, left = sampling.img2img_start_vd(x0 + 1, 0.0, ts, acp, torch.Generator())
    assert torch.equal(x, x0 + 1) and len(left) == 0
    x, left = sampling.img2img_start_vd(x0 + 1, 1.0, ts, acp, torch.Generator().manual_seed(0))
    assert torch.equal(x, sampling.initial_noise(x0.shape, torch.Generator().manual_seed(0))) and len(left) == 50


def test_schedule_is_vds_to_float_precision():
    assert (sampling.vd_alphas_cumprod() - vd_schedule()).abs().max().item() < 1e-6


@torch.no_grad()
def test_fidelity_vd_mode_matches_vds_procedure_diffusers_mode_does_not(registry, manager, tmp_path):
    size = image_size(tiny_config())
    steps, fidelity, seed, scale = 10, 0.3, 3, 7.5
    nodes = {
        "model": {"type": "vd.load_model", "params": {"source": "tiny"}},
        "image": {"type": "vd.load_image", "params": {"path": IMAGE, "size": size}},
        "context": {"type": "vd.encode_image", "params": {"uncond": "grey"},
                    "inputs": {"model": link("model", "model"), "image": link("image", "image")}},
        "latent": {"type": "vd.encode_image_latent", "params": {"sample": False},
                   "inputs": {"model": link("model", "model"), "image": link("image", "image")}},
    }
    results = {}
    for mode in ("vd", "diffusers"):
        nodes[f"sample_{mode}"] = {
            "type": "vd.denoise",
            "params": {"steps": steps, "strength": 1 - fidelity, "start_mode": mode, "seed": seed, "guidance": scale},
            "inputs": {"model": link("model", "model"), "context": link("context", "context"),
                       "start": link("latent", "latent")}}
    out = run(registry, manager, nodes, ["sample_vd", "sample_diffusers", "context", "latent", "model"], tmp_path)
    handle, context, x0 = out["model.model"], out["context.context"], out["latent.latent"].float()
    (part,) = context.parts
    unet = handle.unet("image", {"image"})

    def eps_fn(x, t):  # ddim.py lines 140-150: [uncond; cond] in one batch, then the guidance formula
        c = ContextInput(torch.cat([part.uncond, part.tokens]), "image", 1.0)
        e_u, e_c = unet(torch.cat([x, x]), torch.full((2,), t, dtype=torch.long), "image", [c]).chunk(2)
        return e_u + scale * (e_c - e_u)

    noise = sampling.initial_noise(x0.shape, torch.Generator("cpu").manual_seed(seed))
    ref = vd_fidelity_reference(eps_fn, x0, noise, steps, fidelity)
    vd_err = (out["sample_vd.latent"] - ref).abs().max().item()
    diffusers_gap = (out["sample_diffusers.latent"] - ref).abs().max().item()
    assert vd_err < 1e-4, vd_err
    assert diffusers_gap > 1e-2, diffusers_gap  # the two conventions are different procedures


# ----------------------------------------------------------------------------- v1 levels

def vd_find_low_rank(x, demean=True, q=20, niter=10):
    """inference.py at 51dcd3b, lines 228-250."""
    x_mean = x.mean(-1, keepdim=True)
    x_input = x - x_mean if demean else x
    u, s, v = torch.pca_lowrank(x_input, q=q, center=False, niter=niter)
    ss = torch.stack([torch.diag(si) for si in s])
    x_lowrank = torch.bmm(torch.bmm(u, ss), torch.permute(v, [0, 2, 1]))
    return x_lowrank + x_mean if demean else x_lowrank


def vd_remove_low_rank(x, demean=True, q=20, niter=10, q_remove=10):
    """inference.py at 51dcd3b, lines 252-275."""
    x_mean = x.mean(-1, keepdim=True)
    x_input = x - x_mean if demean else x
    u, s, v = torch.pca_lowrank(x_input, q=q, center=False, niter=niter)
    s[:, 0:q_remove] = 0
    ss = torch.stack([torch.diag(si) for si in s])
    x_lowrank = torch.bmm(torch.bmm(u, ss), torch.permute(v, [0, 2, 1]))
    return x_lowrank + x_mean if demean else x_lowrank


def vd_disensemble(c: torch.Tensor, level: int) -> torch.Tensor:
    """application_disensemble, inference.py at 51dcd3b lines 190-212 (one context)."""
    if level == 0:
        return c
    c_glb, c_loc = c[:, 0:1], c[:, 1:]
    if level < 0:
        c_loc = vd_remove_low_rank(c_loc, demean=True, q=50, q_remove=-level)
    else:
        c_loc = vd_find_low_rank(c_loc, demean=True, q={1: 10, 2: 2}[level])
    return torch.cat([c_glb, c_loc], dim=1)


def _context_like() -> torch.Tensor:
    """[1, 257, 96]: a few strong directions over noise, as CLIP image contexts have."""
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(6, 96, generator=g)
    weights = torch.randn(1, 257, 6, generator=g) * torch.tensor([8.0, 5.0, 3.0, 2.0, 1.5, 1.0])
    return weights @ basis + 0.05 * torch.randn(1, 257, 96, generator=g)


@pytest.mark.parametrize("level", [-2, -1, 0, 1, 2])
def test_v1_levels_match_vds_algorithm(level):
    c = _context_like()
    torch.manual_seed(PCA_SEED)  # VD draws pca_lowrank's random basis from the global RNG
    ref = vd_disensemble(c, level)
    ours = low_rank_level(c, level)
    assert (ours - ref).abs().max().item() < 1e-4
    exact = low_rank_level(c, level, exact=True)  # the decomposition the randomised PCA approximates
    assert (exact - ref).abs().max().item() < 1e-2 * ref.abs().max().item()
    if level:
        assert (ours - c).abs().max().item() > 0.1
    with pytest.raises(ValueError):
        low_rank_level(c, 3)


def test_disentangle_node_v1_mode_touches_cond_and_grey_uncond(registry, manager, tmp_path):
    size = image_size(tiny_config())
    nodes = {
        "model": {"type": "vd.load_model", "params": {"source": "tiny"}},
        "image": {"type": "vd.load_image", "params": {"path": IMAGE, "size": size}},
        "context": {"type": "vd.encode_image", "params": {"uncond": "grey"},
                    "inputs": {"model": link("model", "model"), "image": link("image", "image")}},
        "dis": {"type": "vd.disentangle", "params": {"mode": "v1_level", "level": -1, "apply_to_uncond": True},
                "inputs": {"context": link("context", "context")}},
    }
    out = run(registry, manager, nodes, ["dis", "context"], tmp_path)
    (before,), (after,) = out["context.context"].parts, out["dis.context"].parts
    assert torch.equal(after.tokens, low_rank_level(before.tokens, -1))
    assert torch.equal(after.uncond, low_rank_level(before.uncond, -1))


# ----------------------------------------------------------------------------- colour

class VDColorAdjust:
    """``color_adjust`` of lib/experiments/sd_default.py at 51dcd3b, lines 156-230, verbatim but for
    the tensor -> PIL step, written as torchvision's ToPILImage does it (``mul(255).byte()``)."""

    def __init__(self, ref_from, ref_to):
        x0, m0, std0 = self.get_data_and_stat(ref_from)
        x1, m1, std1 = self.get_data_and_stat(ref_to)
        self.ref_from_stat, self.ref_to_stat = (m0, std0), (m1, std1)
        self.ref_from = self.preprocess(x0).reshape(-1, 3)
        self.ref_to = x1.reshape(-1, 3)

    def get_data_and_stat(self, x):
        x = torch.clamp(x, min=0.0, max=1.0)
        x = x.mul(255).byte().permute(1, 2, 0).numpy()
        x = x.astype(float)
        return x, np.reshape(x, (-1, 3)).mean(0), np.reshape(x, (-1, 3)).std(0)

    def preprocess(self, x):
        (m0, s0), (m1, s1) = self.ref_from_stat, self.ref_to_stat
        return ((x - m0) / s0) * s1 + m1

    def __call__(self, xin, keep=0, simple=False):
        xin, _, _ = self.get_data_and_stat(xin)
        x = self.preprocess(xin)
        if simple:
            return np.clip(x * (1 - keep) + xin * keep, 0, 255).astype(np.uint8)
        h, w = x.shape[:2]
        x = x.reshape(-1, 3)
        y = np.stack([self.pdf_transfer_1d(self.ref_from[:, c], self.ref_to[:, c], x[:, c]) for c in range(3)], axis=1)
        y = y.reshape(h, w, 3)
        y = y.astype(float) * (1 - keep) + xin.astype(float) * keep
        return np.clip(y, 0, 255).astype(np.uint8)

    def pdf_transfer_1d(self, arr_fo, arr_to, arr_in, n=600):
        arr = np.concatenate((arr_fo, arr_to))
        min_v, max_v = arr.min() - 1e-6, arr.max() + 1e-6
        min_vto, max_vto = arr_to.min() - 1e-6, arr_to.max() + 1e-6
        xs = np.array([min_v + (max_v - min_v) * i / n for i in range(n + 1)])
        hist_fo, _ = np.histogram(arr_fo, xs)
        hist_to, _ = np.histogram(arr_to, xs)
        xs = xs[:-1]
        cum_fo, cum_to = np.cumsum(hist_fo), np.cumsum(hist_to)
        d_fo, d_to = cum_fo / cum_fo[-1], cum_to / cum_to[-1]
        t_d = np.interp(d_fo, d_to, xs)
        t_d[d_fo <= d_to[0]] = min_vto
        t_d[d_fo >= d_to[-1]] = max_vto
        return np.interp(arr_in, xs, t_d)


@pytest.mark.parametrize("histogram", [False, True], ids=["simple", "histogram"])
def test_v1_colour_adjustment_is_vds_arithmetic_to_the_bit(histogram):
    g = torch.Generator().manual_seed(1)
    image = (torch.rand(2, 3, 40, 48, generator=g) ** 2 * 1.1 - 0.05)  # decoded images overshoot [0, 1]
    reference = torch.rand(1, 3, 64, 64, generator=g) * torch.tensor([0.6, 0.9, 0.3]).view(1, 3, 1, 1) + 0.1
    ours = match_colors_v1(image, reference, histogram=histogram, keep=0.5)
    for b in range(2):  # inference.py decode, lines 84-90: one color_adjust per output image
        vd = VDColorAdjust(ref_from=image[b], ref_to=reference[0])(image[b], keep=0.5, simple=not histogram)
        assert np.array_equal((ours[b] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), vd)
    assert not torch.allclose(ours, image.clamp(0, 1), atol=0.05)


def test_match_colors_node_modes(registry, manager, tmp_path):
    nodes = {
        "a": {"type": "vd.load_image", "params": {"path": IMAGE, "size": 32}},
        "b": {"type": "vd.load_image", "params": {"path": str(ROOT / "graphs/inputs/white_square_on_black.png"),
                                                  "size": 32}},
    }
    for mode in ("mean_std", "v1_simple", "v1_histogram"):
        nodes[mode] = {"type": "image.match_colors", "params": {"mode": mode},
                       "inputs": {"image": link("a", "image"), "reference": link("b", "image")}}
    out = run(registry, manager, nodes, ["mean_std", "v1_simple", "v1_histogram", "a", "b"], tmp_path)
    a, b = out["a.image"], out["b.image"]
    assert torch.equal(out["v1_simple.image"], match_colors_v1(a, b, histogram=False))
    assert torch.equal(out["v1_histogram.image"], match_colors_v1(a, b, histogram=True))
    assert not torch.allclose(out["v1_simple.image"], out["mean_std.image"], atol=1e-3)


def test_image_to_mask_keeps_what_was_not_painted(registry, manager, tmp_path):
    nodes = {"strokes": {"type": "vd.load_image", "params": {"path": str(ROOT / "graphs/inputs/mask_left_half.png")}},
             "mask": {"type": "image.to_mask", "inputs": {"image": link("strokes", "image")}},
             "raw": {"type": "image.to_mask", "params": {"invert": False}, "inputs": {"image": link("strokes", "image")}}}
    out = run(registry, manager, nodes, ["mask", "raw"], tmp_path)
    mask = out["mask.mask"]
    assert mask.shape == (1, 1, 512, 512)
    assert mask[..., :256].max() == 0 and mask[..., 256:].min() == 1  # app.py line 538: m = 1 - painted
    assert torch.equal(out["raw.mask"], 1 - mask)
