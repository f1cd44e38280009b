"""Samplers and guidance for VD, k-diffusion style (vd-architecture.md section 5).

What is here:
- the training schedule (LDM "linear", diffusers ``scaled_linear``) and VD's DDIM timestep grid;
- one contract between the math and the network: a ``Denoiser`` maps ``(x, t)`` to the
  predicted noise eps; samplers never see a UNet;
- one function per sampler with a shared signature (``sample_ddim``, ``sample_dpmpp_2m``),
  a registry ``SAMPLERS`` and the entry points ``sample`` / ``sample_img2img``;
- image-to-image starts (``img2img_start``, diffusers' convention; ``img2img_start_vd``, VD's
  fidelity slider, section 6.2);
- guidance as wrappers that return a new ``Denoiser`` (``cfg_denoiser``).

What is not here: no UNet, no VAE, no progress bars, no global RNG. Randomness comes only
from the ``generator`` argument; progress, previews and cancel travel through ``on_step``
and ``should_cancel``.

Conventions (checked against diffusers in tests/model/test_sampling.py):
- ``alphas_cumprod[t]`` is DDPM's alpha-bar_t (DDIM's paper calls it alpha_t).
- Timesteps are integers in ``[0, T)``, in *sampling* order (descending).
- DDIM ends at ``alphas_cumprod[0]``, not at 1 (VD's ``ddim.py``; diffusers
  ``set_alpha_to_one=False``). DPM-Solver++ 2M ends at sigma = 0 (diffusers
  ``final_sigmas_type="zero"``), so its last step returns the model's x0 estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import torch
from torch import Tensor

from vdnodes.model.conditioning import ContextInput

Denoiser = Callable[[Tensor, Tensor], Tensor]  # (x [B,...], t [B] long) -> eps [B,...]
UNetFn = Callable[[Tensor, Tensor, str, list[ContextInput]], Tensor]  # (x, t, xtype, contexts) -> eps
Timesteps = Tensor | Sequence[int]


# ----------------------------------------------------------------------------- schedule

def vd_alphas_cumprod(
    num_train_steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> Tensor:
    """alpha-bar_t of VD's training schedule: betas = linspace(sqrt(b0), sqrt(b1), T)^2 (LDM "linear").

    Computed in fp32 exactly as diffusers' ``scaled_linear`` schedule does. Returns ``[T]``.
    """
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_steps, dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)  # [T]


def ddim_timesteps(num_steps: int, num_train_steps: int = 1000) -> Tensor:
    """DDIM grid: c = T // S, timesteps {0, c, ..., (S-1)c} + 1, in descending (sampling) order.

    For S = 50 that is 981, 961, ..., 1 (diffusers "leading" spacing with steps_offset=1).
    Returns a ``[S]`` long tensor. The +1 offset leaves room for at most T - 1 steps.
    This is VD's grid when S divides T (50, 20, 25, 100, ...). Otherwise VD's
    ``make_ddim_timesteps`` runs ``range(0, T, c) + 1``, that is ceil(T / c) steps, one or
    more beyond what was asked (31 for 30, starting at 991 instead of 958 here), and for S = 3
    it reaches t = T and fails; here S steps are S steps.
    """
    if not 1 <= num_steps < num_train_steps:
        raise ValueError(f"num_steps must be in [1, {num_train_steps - 1}], got {num_steps}")
    c = num_train_steps // num_steps
    return (torch.arange(num_steps, dtype=torch.long) * c + 1).flip(0)  # [S]


def initial_noise(
    shape: Sequence[int],
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Standard normal noise drawn in fp32 on the generator's device (CPU for a CPU generator),
    then cast and moved, so CPU and GPU runs from one seed start from the same noise."""
    if generator is None:
        raise ValueError("initial_noise needs a torch.Generator (no global RNG is used)")
    z = torch.randn(tuple(shape), generator=generator, dtype=torch.float32, device=generator.device)
    return z.to(device=device, dtype=dtype)


def q_sample(x0: Tensor, t: int, noise: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """Forward process q(x_t | x_0): sqrt(a_t) x0 + sqrt(1 - a_t) noise (DDPM eq. 4)."""
    a = alphas_cumprod[t].to(device=x0.device, dtype=x0.dtype)
    return a**0.5 * x0 + (1 - a) ** 0.5 * noise


# ----------------------------------------------------------------------------- step records

@dataclass(frozen=True)
class StepInfo:
    """What a sampler reports after each step (for progress bars and live previews).

    index:    0-based number of the step just finished; total: steps in this run.
    timestep: the t the model was evaluated at.
    x:        the latent after the step; x0_pred: the model's clean estimate at this step.
    """

    index: int
    total: int
    timestep: int
    x: Tensor
    x0_pred: Tensor


class SamplingCancelled(Exception):
    """Raised by a sampler when ``should_cancel()`` returned True before a step."""


class Sampler(Protocol):
    """The shared sampler signature; method-specific knobs come after the shared ones."""

    def __call__(
        self,
        denoise: Denoiser,
        x: Tensor,
        timesteps: Timesteps,
        alphas_cumprod: Tensor,
        *,
        generator: torch.Generator | None = None,
        on_step: Callable[[StepInfo], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Tensor: ...


# ----------------------------------------------------------------------------- shared helpers

def _as_int_list(timesteps: Timesteps) -> list[int]:
    return [int(t) for t in timesteps]


def _check_cancel(should_cancel: Callable[[], bool] | None, index: int, total: int) -> None:
    if should_cancel is not None and should_cancel():
        raise SamplingCancelled(f"sampling cancelled before step {index + 1} of {total}")


def _model_eps(denoise: Denoiser, x: Tensor, t: int) -> Tensor:
    """Call the denoiser with t as a [B] long tensor and check that eps has x's shape."""
    t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)  # [B]
    eps = denoise(x, t_batch)
    if eps.shape != x.shape:
        raise ValueError(f"denoiser returned shape {tuple(eps.shape)} for input {tuple(x.shape)}")
    return eps


def _eps_to_x0(x: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)  (DDIM eq. 12, "predicted x_0")."""
    return (x - (1 - alpha_bar) ** 0.5 * eps) / alpha_bar**0.5


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is None:
        raise ValueError("this sampler setting draws noise: pass a torch.Generator")
    return initial_noise(x.shape, generator, x.dtype, x.device)


# ----------------------------------------------------------------------------- samplers

def sample_ddim(
    denoise: Denoiser,
    x: Tensor,
    timesteps: Timesteps,
    alphas_cumprod: Tensor,
    *,
    generator: torch.Generator | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    eta: float = 0.0,
) -> Tensor:
    """DDIM (Song et al. 2020, arXiv 2010.02502, eqs. 12 and 16) from ``x`` at ``timesteps[0]``.

    Legend (variable -> paper symbol; DDIM's alpha is DDPM's cumulative alpha-bar):
        alpha, alpha_prev -> alpha_t, alpha_{t-1}  (alpha_prev of the last step = alphas_cumprod[0])
        eps               -> eps_theta(x_t, t)
        x0_pred           -> "predicted x_0", f_theta(x_t) in eq. 12
        sigma             -> sigma_t(eta) of eq. 16
        z                 -> eps_t ~ N(0, I), drawn from ``generator`` only when eta > 0
    With ``eta > 0`` one noise tensor is drawn per step after the model call, exactly as
    diffusers' ``DDIMScheduler.step`` draws it. An empty ``timesteps`` returns ``x`` unchanged.
    """
    ts = _as_int_list(timesteps)
    acp = alphas_cumprod.to(x.device)
    for i, t in enumerate(ts):
        _check_cancel(should_cancel, i, len(ts))
        alpha = acp[t]
        alpha_prev = acp[ts[i + 1]] if i + 1 < len(ts) else acp[0]

        eps = _model_eps(denoise, x, t)
        x0_pred = _eps_to_x0(x, eps, alpha)
        sigma = eta * ((1 - alpha_prev) / (1 - alpha) * (1 - alpha / alpha_prev)) ** 0.5  # eq. 16
        x = alpha_prev**0.5 * x0_pred + (1 - alpha_prev - sigma**2) ** 0.5 * eps  # eq. 12
        if eta > 0:
            x = x + sigma * _randn_like(x, generator)

        if on_step is not None:
            on_step(StepInfo(i, len(ts), t, x, x0_pred))
    return x


def _alpha_sigma_lambda(alpha_bar: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """VP coefficients: alpha_t = sqrt(a), sigma_t = sqrt(1 - a), lambda_t = log(alpha_t / sigma_t)."""
    alpha, sigma = alpha_bar**0.5, (1 - alpha_bar) ** 0.5
    return alpha, sigma, torch.log(alpha) - torch.log(sigma)


def sample_dpmpp_2m(
    denoise: Denoiser,
    x: Tensor,
    timesteps: Timesteps,
    alphas_cumprod: Tensor,
    *,
    generator: torch.Generator | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095, Algorithm 2) from ``x`` at ``timesteps[0]``.

    The eps model is turned into a data-prediction model x0 = (x - sigma_t eps) / alpha_t.
    The first step is first order (no history yet); the last step goes to sigma = 0, where the
    update reduces to x = x0_pred. Matches diffusers' ``DPMSolverMultistepScheduler`` with
    ``algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
    final_sigmas_type="zero", lower_order_final=True`` on the same timesteps.
    Legend (variable -> paper symbol):
        alpha_s, sigma_s, lam_s -> alpha_{t_{i-1}}, sigma_{t_{i-1}}, lambda_{t_{i-1}} (current point)
        alpha_t, sigma_t, lam_t -> alpha_{t_i}, sigma_{t_i}, lambda_{t_i}             (next point)
        h, h_last               -> h_i, h_{i-1};   r = h_{i-1} / h_i
        x0_pred, x0_last        -> x_theta(x~_{t_{i-1}}), x_theta(x~_{t_{i-2}})
        d                       -> D_i = (1 + 1/(2r)) x0_pred - 1/(2r) x0_last
    Deterministic: ``generator`` is accepted for the shared signature and not used.
    """
    ts = _as_int_list(timesteps)
    acp = alphas_cumprod.to(x.device)
    x0_last: Tensor | None = None
    h_last: Tensor | None = None
    for i, t in enumerate(ts):
        _check_cancel(should_cancel, i, len(ts))
        alpha_s, sigma_s, lam_s = _alpha_sigma_lambda(acp[t])

        eps = _model_eps(denoise, x, t)
        x0_pred = (x - sigma_s * eps) / alpha_s

        if i + 1 == len(ts):
            x = x0_pred  # sigma_t = 0: (sigma_t/sigma_s) x - alpha_t (e^{-h} - 1) x0 = x0
        else:
            alpha_t, sigma_t, lam_t = _alpha_sigma_lambda(acp[ts[i + 1]])
            h = lam_t - lam_s
            if x0_last is None:
                d = x0_pred  # first order (= DDIM with eta 0)
            else:
                r = h_last / h
                d = (1 + 1 / (2 * r)) * x0_pred - (1 / (2 * r)) * x0_last
            x = (sigma_t / sigma_s) * x - alpha_t * torch.expm1(-h) * d
            x0_last, h_last = x0_pred, h

        if on_step is not None:
            on_step(StepInfo(i, len(ts), t, x, x0_pred))
    return x


class SamplerName(str, Enum):
    """The samplers a node can choose from."""

    DDIM = "ddim"
    DPMPP_2M = "dpmpp_2m"


SAMPLERS: dict[SamplerName, Sampler] = {
    SamplerName.DDIM: sample_ddim,
    SamplerName.DPMPP_2M: sample_dpmpp_2m,
}


def _lookup(name: str | SamplerName) -> Sampler:
    try:
        return SAMPLERS[SamplerName(name)]
    except ValueError:
        known = ", ".join(n.value for n in SamplerName)
        raise ValueError(f"unknown sampler {name!r}; choose one of: {known}") from None


# ----------------------------------------------------------------------------- image-to-image

def _start_inputs(x0: Tensor, strength: float, timesteps: Timesteps,
                  generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The checked grid ``[S]`` (descending) and the one noise draw every start takes."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    ts = torch.as_tensor(_as_int_list(timesteps), dtype=torch.long)  # [S]
    return ts, initial_noise(x0.shape, generator, x0.dtype, x0.device)


def img2img_start(
    x0: Tensor,
    strength: float,
    timesteps: Timesteps,
    alphas_cumprod: Tensor,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Noised start latent and the timesteps left to run, for partial denoising (section 5, 6.2).

    ``timesteps`` is the full grid in sampling order (S steps). We keep
    ``k = floor(S * strength + 1e-6)`` steps (VD's ``k = int(50 * (1 - fidelity))``; the tiny
    tolerance makes 50 * (1 - 0.8) give 10, not 9), noise ``x0`` with ``q_sample`` to the
    *first kept* timestep ``timesteps[S - k]`` and return ``timesteps[S - k:]``. VD instead
    noises one grid step higher than where it starts denoising (section 8.5); we start where we
    noised, as diffusers' img2img does.
    - strength 0 -> ``(x0, [])``: nothing to run, x0 comes back unchanged.
    - strength 1 -> pure noise and the full grid, identical to sampling from
      ``initial_noise(x0.shape, generator)`` (VD's fidelity 0).
    One noise draw is taken from ``generator`` in every case, so later draws do not depend on
    ``strength``.
    """
    ts, noise = _start_inputs(x0, strength, timesteps, generator)
    k = min(int(math.floor(len(ts) * strength + 1e-6)), len(ts))
    if k == 0:
        return x0, ts[:0]
    if k == len(ts) and strength >= 1.0:
        return noise, ts
    start = len(ts) - k
    return q_sample(x0, int(ts[start]), noise, alphas_cumprod), ts[start:]


def img2img_start_vd(
    x0: Tensor,
    strength: float,
    timesteps: Timesteps,
    alphas_cumprod: Tensor,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """VD's own partial-denoising start (fidelity = 1 - strength), as its demo runs it.

    Follows SHI-Labs/Versatile-Diffusion ``app.py`` (Feb 2023 HEAD) lines 350-352 and
    ``lib/model_zoo/ddim.py`` lines 97-103: with VD's ascending grid ``asc`` (1, 1 + c, ...),
    ``k = int(S * (1 - fidelity))`` (truncation, so fidelity 0.8 at 50 steps keeps 9 steps),
    the clean latent is noised with ``q_sample`` to ``asc[k]`` and DDIM then runs over
    ``asc[:k]`` in reverse: the first model call is at ``asc[k-1]``, one grid step *below* the
    noise level the latent has. ``img2img_start`` (diffusers' convention) noises to
    ``asc[k-1]`` instead.
    - strength 1 (fidelity 0) -> pure noise and the full grid (VD's ``fid_lvl == 0`` branch);
    - strength 0 (fidelity 1) -> ``(x0, [])`` (VD returns the input image itself);
    - ``0 < k`` small: when ``k == 0`` VD returns the latent noised to ``asc[0]`` undenoised,
      and so does this.
    One noise draw is taken from ``generator`` in every case, as in ``img2img_start``.
    """
    ts, noise = _start_inputs(x0, strength, timesteps, generator)
    fidelity = 1.0 - strength
    if fidelity == 0.0:
        return noise, ts
    if fidelity == 1.0:
        return x0, ts[:0]
    asc = ts.flip(0)
    k = int(len(ts) * (1.0 - fidelity))  # VD: step = int(self.ddim_steps * (1 - fid_lvl))
    return q_sample(x0, int(asc[k]), noise, alphas_cumprod), asc[:k].flip(0)


IMG2IMG_STARTS = {"diffusers": img2img_start, "vd": img2img_start_vd}


# ----------------------------------------------------------------------------- entry points

def sample(
    name: str | SamplerName,
    denoise: Denoiser,
    x: Tensor,
    steps: int,
    *,
    alphas_cumprod: Tensor | None = None,
    generator: torch.Generator | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    **options: float,
) -> Tensor:
    """Run sampler ``name`` from the noise ``x`` over VD's ``steps``-step grid (text-to-X).

    ``options`` are the sampler's own knobs (``eta`` for DDIM); ``alphas_cumprod`` defaults to
    VD's schedule.
    """
    sampler = _lookup(name)
    acp = vd_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod
    ts = ddim_timesteps(steps, len(acp))
    return sampler(denoise, x, ts, acp, generator=generator, on_step=on_step,
                   should_cancel=should_cancel, **options)


def sample_img2img(
    name: str | SamplerName,
    denoise: Denoiser,
    x0: Tensor,
    steps: int,
    strength: float,
    *,
    generator: torch.Generator,
    alphas_cumprod: Tensor | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    convention: str = "diffusers",
    **options: float,
) -> Tensor:
    """Partially denoise the clean latent ``x0``: a start (``IMG2IMG_STARTS``) then sampler ``name``.

    ``convention``: "diffusers" (``img2img_start``: ``floor(steps * strength)`` steps from
    where it noised) or "vd" (``img2img_start_vd``: VD's fidelity, noised one grid step
    higher). Strength 0 returns x0, strength 1 ignores it, in both.
    """
    sampler = _lookup(name)
    if convention not in IMG2IMG_STARTS:
        raise ValueError(f"unknown start convention {convention!r}; choose one of: {', '.join(IMG2IMG_STARTS)}")
    acp = vd_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod
    x, ts = IMG2IMG_STARTS[convention](x0, strength, ddim_timesteps(steps, len(acp)), acp, generator)
    return sampler(denoise, x, ts, acp, generator=generator, on_step=on_step,
                   should_cancel=should_cancel, **options)


# ----------------------------------------------------------------------------- guidance

def _batch_contexts(
    conds: Sequence[ContextInput], unconds: Sequence[ContextInput]
) -> list[ContextInput]:
    """[uncond; cond] along the batch axis for every entry, keeping the cond's modality and weight."""
    if len(conds) == 0:
        raise ValueError("classifier-free guidance needs at least one context entry")
    if len(conds) != len(unconds):
        raise ValueError(f"got {len(conds)} cond contexts but {len(unconds)} unconds; "
                         "every context needs its own unconditional")
    batched = []
    for i, (c, u) in enumerate(zip(conds, unconds)):
        if c.modality != u.modality:
            raise ValueError(f"context {i}: cond modality {c.modality!r} != uncond modality {u.modality!r}")
        if c.tokens.shape != u.tokens.shape:
            raise ValueError(f"context {i} ({c.modality}): cond tokens {tuple(c.tokens.shape)} and uncond "
                             f"tokens {tuple(u.tokens.shape)} must have the same shape")
        batched.append(c.with_tokens(torch.cat([u.tokens, c.tokens], dim=0)))  # [2B, T, D]
    return batched


def cfg_denoiser(
    unet: UNetFn,
    xtype: str,
    conds: Sequence[ContextInput],
    unconds: Sequence[ContextInput],
    scale: float,
) -> Denoiser:
    """Classifier-free guidance as a Denoiser: eps = eps_u + scale * (eps_c - eps_u).

    ``unet(x, t, xtype, contexts)`` is called once per step on a ``[uncond; cond]`` batch of 2B.
    With several context entries (dual-guided, blenders) the unconditional half replaces *every*
    context by its own unconditional at once, with the cond's mixing weights (section 1.5);
    the uncond entries' weights are ignored. ``scale == 1`` skips the unconditional pass.
    Cond and uncond tokens of each entry must have the same shape. eps is returned in x's dtype.
    """
    batched = _batch_contexts(conds, unconds)
    conds = list(conds)

    def denoise(x: Tensor, t: Tensor) -> Tensor:
        B = x.shape[0]
        t = t.to(device=x.device, dtype=torch.long).expand(B)  # [B]
        for c in conds:
            if c.tokens.shape[0] != B:
                raise ValueError(f"{c.modality} context has batch {c.tokens.shape[0]} but x has batch {B}")
        if scale == 1.0:
            return unet(x, t, xtype, conds).to(x.dtype)
        eps = unet(torch.cat([x, x]), torch.cat([t, t]), xtype, batched)  # [2B, ...]
        eps_u, eps_c = eps.to(x.dtype).chunk(2)  # [B, ...] each
        return eps_u + scale * (eps_c - eps_u)

    return denoise
