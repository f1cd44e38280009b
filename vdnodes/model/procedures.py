"""VD's procedures on contexts, latents and images: disentanglement (v2 focus, v1 levels), I2T2I
editing, blending, colour matching (v2 "simple"; VD v1's 8-bit modes are in ``colour_v1``).

Plain tensor functions (vd-architecture.md section 6); the nodes are thin
wrappers around them. Randomised PCA (``torch.pca_lowrank``) runs in fp32 under a
fixed, local seed, so results are repeatable (pitfall 6: VD calls it before
seeding).
"""

from __future__ import annotations

import math

import torch

PCA_SEED = 0


def _pca(x: torch.Tensor, q: int, niter: int, exact: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Repeatable ``pca_lowrank`` (no centering) of one matrix ``[T, D]`` in fp32.

    ``exact``: the leading ``q`` components of a full SVD instead, what the randomised PCA
    approximates (equal up to each component's sign), and on small matrices ten times faster.
    """
    q = min(q, *x.shape)
    if exact:
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        return u[:, :q], s[:q], vh[:q].T
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(PCA_SEED)
        return torch.pca_lowrank(x, q=q, center=False, niter=niter)


def _focus_weights(s: torch.Tensor, focus: float, max_drop_rank: tuple[int, int] = (1, 5)) -> tuple[torch.Tensor, bool]:
    """Scaled singular values and whether the residual is kept (v2 ``adjust_rank``, §6.1).

    VD's demo ramps, written for any ``max_drop_rank = (lo, hi)`` and ``q``: semantic focus
    scales components ``0..lo`` (only the first two with VD's ``(1, 5)``) and keeps the rest;
    style focus scales components ``hi..q-1`` and drops the residual.
    """
    s = s.clone()
    lo, hi = max_drop_rank
    q = s.shape[0]
    ramp = (math.exp(2 * focus - 1) - math.exp(-1)) / (1 - math.exp(-1))  # 0 at focus 0, 1 at 0.5
    if focus < 0.5:  # semantic focus: shrink the leading components, keep the residual
        y0 = ramp * (1 + lo) - lo  # -lo at focus 0, 1 at 0.5
        for i in range(min(lo + 1, q)):  # lo = 1: S0 *= y0, S1 *= (1 + y0) / 2
            s[i] *= max(0.0, y0 + i / (lo + 1) * (1 - y0))
        return s, True
    drop = q - hi
    y0 = 1 - (drop + 1) * (math.exp(2 * focus - 1) - 1) / (math.e - 1)  # 1 at 0.5, -drop at 1
    for i in range(hi, q):  # VD (q=20): S_i *= max(0, y0 + (19 - i)/15 * (1 - y0)) for i = 5..19
        s[i] *= max(0.0, y0 + (q - 1 - i) / drop * (1 - y0))
    return s, False


def adjust_rank(context: torch.Tensor, focus: float, *, q: int = 20, niter: int = 100,
                keep_first_token: bool = True, exact: bool = False) -> torch.Tensor:
    """VD v2 semantic/style disentanglement of an image context ``[B, T, D]`` (§6.1).

    ``focus`` in [0, 1]: 0.5 returns the input; below 0.5 shrinks the leading principal
    components (semantic focus); above 0.5 keeps only the leading ones (style focus).
    Applied per sample to the patch tokens; the CLS token passes through. ``exact``: a full
    SVD in place of VD's randomised PCA (the same decomposition to float precision; vd-nano's
    training uses it, the nodes keep VD's).
    """
    if not 0.0 <= focus <= 1.0:
        raise ValueError(f"focus must be in [0, 1], got {focus}")
    if focus == 0.5:
        return context
    start = 1 if keep_first_token else 0
    out = context.clone()
    for b in range(context.shape[0]):
        x = context[b, start:].float()  # [T, D]
        std0 = x.std()
        mu = x.mean(dim=-1, keepdim=True)  # one scalar per token
        x = x - mu
        u, s, v = _pca(x, q, niter, exact)
        low = u @ torch.diag(s) @ v.T
        residual = x - low
        s2, keep_residual = _focus_weights(s, focus)
        new = u @ torch.diag(s2) @ v.T + mu + (residual if keep_residual else 0)
        new = new * (std0 / new.std().clamp_min(1e-12))
        out[b, start:] = new.to(context.dtype)
    return out


V1_LEVELS = {-2: ("remove", 2), -1: ("remove", 1), 1: ("keep", 10), 2: ("keep", 2)}


def low_rank_level(context: torch.Tensor, level: int, *, q_remove_rank: int = 50, niter: int = 10,
                   keep_first_token: bool = True, exact: bool = False) -> torch.Tensor:
    """VD v1 disentanglement levels -2..2 of an image context ``[B, T, D]`` (§6.1, v1 CLI).

    Follows SHI-Labs/Versatile-Diffusion ``inference.py`` at 51dcd3b (Dec 2022):
    ``application_disensemble`` lines 190-212, ``find_low_rank`` 228-250 and
    ``remove_low_rank`` 252-275. Per sample, on the patch tokens (the CLS token passes
    through), with the per-token mean removed: -1 / -2 take the rank-``q_remove_rank`` (50)
    PCA, zero its top 1 / 2 components and rebuild from the rest (semantic focus; the
    residual beyond rank 50 is dropped); +1 / +2 keep only the top 10 / 2 components (style
    focus); the mean is added back. No std re-normalisation. 0 returns the input.
    ``exact``: a full SVD in place of the randomised PCA (same result up to its accuracy).
    """
    if level not in (-2, -1, 0, 1, 2):
        raise ValueError(f"level must be an integer in -2..2, got {level}")
    if level == 0:
        return context
    kind, n = V1_LEVELS[level]
    q = q_remove_rank if kind == "remove" else n
    start = 1 if keep_first_token else 0
    out = context.clone()
    for b in range(context.shape[0]):
        x = context[b, start:].float()  # [T, D]
        mu = x.mean(dim=-1, keepdim=True)
        u, s, v = _pca(x - mu, q, niter, exact)
        if kind == "remove":
            s = s.clone()
            s[:n] = 0
        out[b, start:] = (u @ torch.diag(s) @ v.T + mu).to(context.dtype)
    return out


def keep_top_components(context: torch.Tensor, rank: int = 10, *, niter: int = 10,
                        drop_first_token: bool = True) -> torch.Tensor:
    """Patch tokens reduced to their top ``rank`` principal components plus the per-token mean.

    I2T2I's image context (§6.5 step 7): ``[B, 257, D] -> [B, 256, D]`` at full size.
    """
    x_all = context[:, 1:] if drop_first_token else context
    out = torch.empty_like(x_all)
    for b in range(x_all.shape[0]):
        x = x_all[b].float()
        mu = x.mean(dim=-1, keepdim=True)
        u, s, v = _pca(x - mu, rank, niter)
        out[b] = (u @ torch.diag(s) @ v.T + mu).to(context.dtype)
    return out


def edit_text_latent(z: torch.Tensor, remove: torch.Tensor | None, add: torch.Tensor | None,
                     *, add_scale: float = 1.0) -> torch.Tensor:
    """I2T2I latent arithmetic (§6.5 step 4): project out ``remove``'s direction, add ``add``.

    z: ``[B, D]`` (or VD's ``[B, D, 1, 1]``, kept as given); remove/add: ``[1, D]`` or
    ``[B, D]`` Optimus latents (μ), also in either layout.
    """
    out = z.float().flatten(1)
    if remove is not None:
        remove = remove.float().flatten(1)
        direction = remove / remove.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        out = out - (out * direction).sum(-1, keepdim=True) * direction
    if add is not None:
        out = out + add_scale * add.float().flatten(1)  # VD adds the phrase latent un-normalised
    return out.reshape(z.shape).to(z.dtype)


def match_colors(image: torch.Tensor, reference: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Match each channel's mean and std of ``image`` to ``reference`` (VD §6.3, "simple").

    image, reference: [B,3,H,W] in [0,1] (the reference batch broadcasts when it is 1).
    """
    dims = (-2, -1)
    mu, sd = image.mean(dims, keepdim=True), image.std(dims, keepdim=True)
    mu_r, sd_r = reference.mean(dims, keepdim=True), reference.std(dims, keepdim=True)
    matched = (image - mu) / sd.clamp_min(1e-6) * sd_r + mu_r
    return (strength * matched + (1 - strength) * image).clamp(0, 1)
