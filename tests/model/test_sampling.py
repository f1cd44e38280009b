"""Samplers, schedule, img2img starts and CFG (vdnodes/model/sampling.py).

Parity references are diffusers' DDIMScheduler and DPMSolverMultistepScheduler, driven with a
fake eps model; tolerances are fp32 (max abs <= 1e-5).
"""

from __future__ import annotations

import pytest
import torch

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from vdnodes.model.conditioning import ContextInput
from vdnodes.model.sampling import (
    SAMPLERS,
    SamplerName,
    SamplingCancelled,
    StepInfo,
    cfg_denoiser,
    ddim_timesteps,
    img2img_start,
    initial_noise,
    q_sample,
    sample,
    sample_ddim,
    sample_dpmpp_2m,
    sample_img2img,
    vd_alphas_cumprod,
)

# diffusers' DPM scheduler trips a numpy-2 copy= DeprecationWarning inside set_timesteps.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHAPE = (2, 4, 8, 8)
TOL = 1e-5
VD_SCHED = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)


def ddim_scheduler() -> DDIMScheduler:
    return DDIMScheduler(**VD_SCHED, set_alpha_to_one=False, clip_sample=False)


def dpm_scheduler() -> DPMSolverMultistepScheduler:
    return DPMSolverMultistepScheduler(
        **VD_SCHED, algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
        timestep_spacing="leading", lower_order_final=True, final_sigmas_type="zero")


def fake_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed smooth function of x and t (not an exact score); t may be a scalar or [B]."""
    tt = t.float().reshape(-1, *([1] * (x.dim() - 1))) / 1000  # [B or 1, 1, 1, 1]
    bias = torch.linspace(-0.3, 0.3, x[0].numel()).reshape(x.shape[1:])
    return (0.6 + 0.3 * tt) * x + tt * bias + 0.05 * torch.sin(x)


def gaussian_eps(mu: float, s: float, acp: torch.Tensor):
    """The exact eps for data ~ N(mu, s^2) per element: E[eps | x_t] is linear in x_t."""
    def denoise(x, t):
        a = acp[t].reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return (1 - a) ** 0.5 * (x - a**0.5 * mu) / (a * s**2 + 1 - a)
    return denoise


def noise(seed: int = 0, shape=SHAPE) -> torch.Tensor:
    return initial_noise(shape, torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- schedule

@pytest.mark.parametrize("steps", [50, 20])
def test_schedule_matches_diffusers_ddim(steps):
    sched = ddim_scheduler()
    sched.set_timesteps(steps)
    assert torch.equal(vd_alphas_cumprod(), sched.alphas_cumprod)
    assert torch.equal(ddim_timesteps(steps), sched.timesteps)


def test_ddim_timesteps_vd_grid_and_errors():
    assert ddim_timesteps(50)[[0, 1, -1]].tolist() == [981, 961, 1]
    with pytest.raises(ValueError, match="num_steps"):
        ddim_timesteps(0)


# ----------------------------------------------------------------------------- DDIM

@pytest.mark.parametrize("eta", [0.0, 0.7])
@pytest.mark.parametrize("steps", [50, 20])
def test_ddim_matches_diffusers_step_for_step(steps, eta):
    sched = ddim_scheduler()
    sched.set_timesteps(steps)
    x_ref = noise(1)
    g_ref = torch.Generator().manual_seed(123)
    ref_states = []
    for t in sched.timesteps:
        x_ref = sched.step(fake_eps(x_ref, t), t, x_ref, eta=eta, generator=g_ref).prev_sample
        ref_states.append(x_ref)

    states: list[StepInfo] = []
    out = sample_ddim(fake_eps, noise(1), ddim_timesteps(steps), vd_alphas_cumprod(), eta=eta,
                      generator=torch.Generator().manual_seed(123), on_step=states.append)
    assert len(states) == steps
    for info, ref in zip(states, ref_states):
        assert (info.x - ref).abs().max().item() <= TOL
    assert (out - x_ref).abs().max().item() <= TOL


def test_ddim_recovers_point_mass_data():
    """Exact eps for a delta at x*: every x0 estimate is x*, and the trajectory stays on
    sqrt(a) x* + sqrt(1 - a) z, ending at a = alphas_cumprod[0]."""
    acp = vd_alphas_cumprod().double()
    x_star = torch.linspace(-1, 1, 256, dtype=torch.float64).reshape(1, 4, 8, 8)
    z = noise(3, (1, 4, 8, 8)).double()

    def exact(x, t):
        a = acp[t].reshape(-1, 1, 1, 1)
        return (x - a**0.5 * x_star) / (1 - a) ** 0.5

    ts = ddim_timesteps(50)
    x_start = q_sample(x_star, int(ts[0]), z, acp)
    states: list[StepInfo] = []
    out = sample_ddim(exact, x_start, ts, acp, on_step=states.append)
    for info in states:
        assert torch.allclose(info.x0_pred, x_star, atol=1e-9)
    assert torch.allclose(out, acp[0] ** 0.5 * x_star + (1 - acp[0]) ** 0.5 * z, atol=1e-9)
    out_dpm = sample_dpmpp_2m(exact, x_start, ts, acp)
    assert torch.allclose(out_dpm, x_star, atol=1e-9)


def test_ddim_eta_needs_generator():
    with pytest.raises(ValueError, match="Generator"):
        sample_ddim(fake_eps, noise(), ddim_timesteps(5), vd_alphas_cumprod(), eta=1.0)


# ----------------------------------------------------------------------------- DPM-Solver++ 2M

@pytest.mark.parametrize("steps", [20, 8])
def test_dpmpp_2m_matches_diffusers_leading_grid(steps):
    """diffusers' own "leading" grid (T // (S + 1) spacing) fed to our sampler."""
    sched = dpm_scheduler()
    sched.set_timesteps(steps)
    x_ref = noise(2)
    ref_states = []
    for t in sched.timesteps:
        x_ref = sched.step(fake_eps(x_ref, t), t, x_ref).prev_sample
        ref_states.append(x_ref)

    states: list[StepInfo] = []
    out = sample_dpmpp_2m(fake_eps, noise(2), sched.timesteps, vd_alphas_cumprod(),
                          on_step=states.append)
    assert [s.timestep for s in states] == sched.timesteps.tolist()
    for info, ref in zip(states, ref_states):
        assert (info.x - ref).abs().max().item() <= TOL
    assert (out - x_ref).abs().max().item() <= TOL


def test_dpmpp_2m_matches_diffusers_on_vd_grid():
    """Our grid (the one ``sample`` uses) passed to diffusers as custom timesteps."""
    ts = ddim_timesteps(20)
    sched = dpm_scheduler()
    sched.set_timesteps(timesteps=ts.tolist())
    x_ref = noise(4)
    for t in sched.timesteps:
        x_ref = sched.step(fake_eps(x_ref, t), t, x_ref).prev_sample
    out = sample("dpmpp_2m", fake_eps, noise(4), 20)
    assert (out - x_ref).abs().max().item() <= TOL


def test_convergence_order_on_gaussian_data():
    """For data ~ N(mu, s^2) the probability-flow ODE is solvable: (x_t - sqrt(a_t) mu) /
    sqrt(a_t s^2 + 1 - a_t) is constant along it. Halving the step on a grid 961 -> 161 must
    halve DDIM's error (first order) and quarter DPM-Solver++ 2M's (second order)."""
    acp = vd_alphas_cumprod().double()
    mu, s = 0.5, 0.3
    denoise = gaussian_eps(mu, s, acp)
    z = noise(5).double()  # the ODE's invariant coordinate

    def errors(spacing):
        ts = torch.arange(961, 160, -spacing)  # ends at 161
        a_start, a_end = acp[961], acp[161]
        x_start = a_start**0.5 * mu + (a_start * s**2 + 1 - a_start) ** 0.5 * z
        exact = a_end**0.5 * mu + (a_end * s**2 + 1 - a_end) ** 0.5 * z
        errs = []
        for sampler in (sample_ddim, sample_dpmpp_2m):
            infos: list[StepInfo] = []
            sampler(denoise, x_start, ts, acp, on_step=infos.append)
            errs.append((infos[-2].x - exact).abs().max().item())  # the state at t = 161
        return errs

    (ddim_40, dpm_40), (ddim_20, dpm_20) = errors(40), errors(20)
    assert 1.8 < ddim_40 / ddim_20 < 2.2
    assert dpm_40 / dpm_20 > 3.5
    assert dpm_20 < 0.1 * ddim_20


# ----------------------------------------------------------------------------- registry

def test_registry_and_entry_point():
    assert set(SAMPLERS) == set(SamplerName)
    for name in ["ddim", SamplerName.DPMPP_2M]:
        out = sample(name, fake_eps, noise(), 5)
        assert out.shape == SHAPE and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="unknown sampler 'euler'.*ddim"):
        sample("euler", fake_eps, noise(), 5)


def test_bad_denoiser_output_shape_is_reported():
    with pytest.raises(ValueError, match="denoiser returned shape"):
        sample("ddim", lambda x, t: x[:1], noise(), 3)


# ----------------------------------------------------------------------------- img2img

def test_img2img_strength_zero_returns_x0_unchanged():
    x0 = noise(7)
    x, ts = img2img_start(x0, 0.0, ddim_timesteps(50), vd_alphas_cumprod(), torch.Generator().manual_seed(0))
    assert x is x0 and len(ts) == 0
    for name in SamplerName:
        out = sample_img2img(name, fake_eps, x0, 50, 0.0, generator=torch.Generator().manual_seed(0))
        assert torch.equal(out, x0)


@pytest.mark.parametrize("name", list(SamplerName))
def test_img2img_strength_one_equals_sampling_from_noise(name):
    x0 = noise(7)
    opts = {"eta": 0.5} if name == SamplerName.DDIM else {}
    out = sample_img2img(name, fake_eps, x0, 10, 1.0, generator=torch.Generator().manual_seed(9), **opts)
    g = torch.Generator().manual_seed(9)
    ref = sample(name, fake_eps, initial_noise(SHAPE, g), 10, generator=g, **opts)
    assert torch.equal(out, ref)


def test_img2img_intermediate_strength_noises_to_first_kept_step():
    acp, grid, x0 = vd_alphas_cumprod(), ddim_timesteps(50), noise(7)
    x, ts = img2img_start(x0, 0.3, grid, acp, torch.Generator().manual_seed(1))
    assert ts.tolist() == grid[35:].tolist() and len(ts) == 15
    z = initial_noise(SHAPE, torch.Generator().manual_seed(1))
    ref = ddim_scheduler().add_noise(x0, z, torch.tensor([int(grid[35])]))
    assert (x - ref).abs().max().item() <= TOL

    calls: list[int] = []
    sample_img2img("ddim", fake_eps, x0, 50, 0.3, generator=torch.Generator().manual_seed(1),
                   on_step=lambda info: calls.append(info.timestep))
    assert calls == ts.tolist()
    # VD's fidelity 0.8 -> k = int(50 * 0.2) intends 10 steps despite 50 * (1 - 0.8) = 9.999...
    _, ts = img2img_start(x0, 1 - 0.8, grid, acp, torch.Generator().manual_seed(1))
    assert len(ts) == 10


def test_img2img_rejects_strength_outside_unit_interval():
    with pytest.raises(ValueError, match="strength"):
        img2img_start(noise(), 1.5, ddim_timesteps(10), vd_alphas_cumprod(), torch.Generator())


# ----------------------------------------------------------------------------- progress, cancel, seeds

@pytest.mark.parametrize("name", list(SamplerName))
def test_on_step_reports_every_step_in_order(name):
    infos: list[StepInfo] = []
    out = sample(name, fake_eps, noise(), 12, on_step=infos.append)
    assert [i.index for i in infos] == list(range(12))
    assert all(i.total == 12 for i in infos)
    assert [i.timestep for i in infos] == ddim_timesteps(12).tolist()
    assert torch.equal(infos[-1].x, out)
    assert infos[0].x0_pred.shape == SHAPE


@pytest.mark.parametrize("name", list(SamplerName))
def test_should_cancel_stops_before_the_next_step(name):
    model_calls: list[int] = []

    def counting(x, t):
        model_calls.append(int(t[0]))
        return fake_eps(x, t)

    with pytest.raises(SamplingCancelled):
        sample(name, counting, noise(), 20, should_cancel=lambda: len(model_calls) >= 3)
    assert len(model_calls) == 3
    with pytest.raises(SamplingCancelled):
        sample(name, counting, noise(), 20, should_cancel=lambda: True)
    assert len(model_calls) == 3


def test_same_seed_same_result_different_seed_different():
    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return sample("ddim", fake_eps, initial_noise(SHAPE, g), 10, generator=g, eta=1.0)

    assert torch.equal(run(11), run(11))
    assert not torch.allclose(run(11), run(12))


def test_initial_noise_is_drawn_on_cpu_then_cast():
    a = initial_noise(SHAPE, torch.Generator().manual_seed(0), torch.float64)
    b = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    assert a.dtype == torch.float64 and torch.equal(a, b.double())


# ----------------------------------------------------------------------------- CFG

class FakeUNet:
    """eps depends on x, t and every context (its weight, modality and tokens); records calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, xtype, contexts):
        assert xtype == "image"
        seen = [(c.modality, c.weight, c.tokens.clone()) for c in contexts]
        self.calls.append((x.shape[0], t.clone(), seen))
        B = x.shape[0]
        mix = sum((1.0 + (c.modality == "text")) * c.weight * c.tokens.reshape(B, -1).mean(1)
                  for c in contexts)  # [B]
        return x * mix.reshape(B, 1, 1, 1) + t.float().reshape(B, 1, 1, 1) / 1000


def ctx(modality, seed, B=2, T=3, D=5, weight=1.0):
    return ContextInput(torch.randn(B, T, D, generator=torch.Generator().manual_seed(seed)), modality, weight)


def test_cfg_one_batched_call_and_formula():
    unet = FakeUNet()
    cond, uncond = ctx("text", 1), ctx("text", 2)
    denoise = cfg_denoiser(unet, "image", [cond], [uncond], scale=7.5)
    x, t = noise(), torch.full((2,), 501, dtype=torch.long)
    eps = denoise(x, t)

    assert len(unet.calls) == 1
    batch, t_seen, contexts = unet.calls[0]
    assert batch == 4 and t_seen.dtype == torch.long and t_seen.tolist() == [501] * 4
    assert torch.equal(contexts[0][2], torch.cat([uncond.tokens, cond.tokens]))

    ref_u, ref_c = FakeUNet()(x, t, "image", [uncond]), FakeUNet()(x, t, "image", [cond])
    assert torch.allclose(eps, ref_u + 7.5 * (ref_c - ref_u), atol=1e-6)


def test_cfg_scale_one_skips_uncond_pass():
    unet = FakeUNet()
    cond = ctx("text", 1)
    eps = cfg_denoiser(unet, "image", [cond], [ctx("text", 2)], scale=1.0)(noise(), torch.full((2,), 41))
    assert len(unet.calls) == 1 and unet.calls[0][0] == 2
    assert torch.equal(unet.calls[0][2][0][2], cond.tokens)
    assert torch.allclose(eps, FakeUNet()(noise(), torch.full((2,), 41), "image", [cond]))


def test_cfg_dual_context_replaces_every_context_by_its_uncond():
    unet = FakeUNet()
    conds = [ctx("image", 1, T=4, weight=0.3), ctx("text", 2, weight=0.7)]
    unconds = [ctx("image", 3, T=4, weight=1.0), ctx("text", 4)]
    x, t = noise(), torch.full((2,), 101)
    eps = cfg_denoiser(unet, "image", conds, unconds, scale=5.0)(x, t)

    assert len(unet.calls) == 1
    _, _, seen = unet.calls[0]
    for (modality, weight, tokens), c, u in zip(seen, conds, unconds):
        assert modality == c.modality and weight == c.weight  # cond's mixing ratio in both halves
        assert torch.equal(tokens[:2], u.tokens) and torch.equal(tokens[2:], c.tokens)
    all_uncond = [c.with_tokens(u.tokens) for c, u in zip(conds, unconds)]
    ref_u, ref_c = FakeUNet()(x, t, "image", all_uncond), FakeUNet()(x, t, "image", conds)
    assert torch.allclose(eps, ref_u + 5.0 * (ref_c - ref_u), atol=1e-6)


def test_cfg_errors_name_the_problem():
    with pytest.raises(ValueError, match="same shape"):
        cfg_denoiser(FakeUNet(), "image", [ctx("text", 1, T=3)], [ctx("text", 2, T=4)], 7.5)
    with pytest.raises(ValueError, match="modality"):
        cfg_denoiser(FakeUNet(), "image", [ctx("text", 1)], [ctx("image", 2)], 7.5)
    with pytest.raises(ValueError, match="unconditional"):
        cfg_denoiser(FakeUNet(), "image", [ctx("text", 1), ctx("image", 2)], [ctx("text", 3)], 7.5)
    with pytest.raises(ValueError, match="batch"):
        cfg_denoiser(FakeUNet(), "image", [ctx("text", 1, B=3)], [ctx("text", 2, B=3)], 7.5)(
            noise(), torch.full((2,), 1))


def test_cfg_denoiser_drives_a_sampler_end_to_end():
    unet = FakeUNet()
    denoise = cfg_denoiser(unet, "image", [ctx("text", 1)], [ctx("text", 2)], scale=3.0)
    out = sample("dpmpp_2m", denoise, noise(), 6)
    assert out.shape == SHAPE and torch.isfinite(out).all()
    assert len(unet.calls) == 6 and all(c[0] == 4 for c in unet.calls)


def test_longest_grid_stays_inside_the_schedule():
    # Regression: 1000 steps with the +1 offset reached timestep 1000 (IndexError).
    from vdnodes.model.sampling import ddim_timesteps, vd_alphas_cumprod

    ts = ddim_timesteps(999)
    assert int(ts.max()) <= 999 and int(ts.min()) == 1
    vd_alphas_cumprod()[ts]  # indexable
    with pytest.raises(ValueError, match=r"\[1, 999\]"):
        ddim_timesteps(1000)
