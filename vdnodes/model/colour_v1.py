"""VD v1's colour adjustment on 8-bit data: mean/std match or histogram (pdf) transfer, then a
blend with the raw image (vd-architecture.md §6.3).

Follows SHI-Labs/Versatile-Diffusion ``lib/experiments/sd_default.py`` at 51dcd3b (Dec 2022),
class ``color_adjust`` lines 156-230, as ``inference.py`` ``decode`` lines 80-90 calls it
(``keep`` 0.5, ``simple`` for "simple", the histogram transfer otherwise). The arithmetic is
VD's, in float64 numpy on 0..255 values: images enter as ``torchvision``'s ``ToPILImage``
makes them (clamp to [0, 1], ``* 255``, truncated to uint8) and leave as uint8.
"""

from __future__ import annotations

import numpy as np
import torch

PDF_BINS = 600  # color_adjust.pdf_transfer_1d(n=600)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` in [0, 1] -> ``[H, W, 3]`` uint8 exactly as ``ToPILImage`` converts a float tensor."""
    return (image.float().clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = x.reshape(-1, 3)
    return flat.mean(0), flat.std(0)  # numpy's population std, as VD


def pdf_transfer_1d(arr_from: np.ndarray, arr_to: np.ndarray, arr_in: np.ndarray, n: int = PDF_BINS) -> np.ndarray:
    """Map ``arr_in`` through the CDF of ``arr_from`` onto that of ``arr_to`` (sd_default.py 209-230)."""
    both = np.concatenate((arr_from, arr_to))
    min_v, max_v = both.min() - 1e-6, both.max() + 1e-6
    min_to, max_to = arr_to.min() - 1e-6, arr_to.max() + 1e-6
    xs = min_v + (max_v - min_v) * np.arange(n + 1) / n
    hist_from, _ = np.histogram(arr_from, xs)
    hist_to, _ = np.histogram(arr_to, xs)
    xs = xs[:-1]
    cdf_from = np.cumsum(hist_from) / hist_from.sum()
    cdf_to = np.cumsum(hist_to) / hist_to.sum()
    mapped = np.interp(cdf_from, cdf_to, xs)
    mapped[cdf_from <= cdf_to[0]] = min_to
    mapped[cdf_from >= cdf_to[-1]] = max_to
    return np.interp(arr_in, xs, mapped)


def adjust_one(image: np.ndarray, reference: np.ndarray, *, histogram: bool, keep: float = 0.5) -> np.ndarray:
    """One ``[H, W, 3]`` uint8 image adjusted toward ``reference`` (any size); uint8 out.

    Mean/std match per channel (``preprocess``); with ``histogram`` each channel of the matched
    image then goes through ``pdf_transfer_1d`` from its own distribution to the reference's;
    the result is blended ``(1 - keep) * adjusted + keep * image``, clipped and truncated.
    """
    x0, x1 = image.astype(float), reference.astype(float)
    (m0, s0), (m1, s1) = _stats(x0), _stats(x1)
    x = (x0 - m0) / np.maximum(s0, 1e-12) * s1 + m1  # VD divides by s0 as is (NaN for a flat channel)
    if histogram:
        h, w = x.shape[:2]
        flat, ref = x.reshape(-1, 3), x1.reshape(-1, 3)
        x = np.stack([pdf_transfer_1d(flat[:, c], ref[:, c], flat[:, c]) for c in range(3)], axis=1)
        x = x.reshape(h, w, 3)
    y = x * (1 - keep) + x0 * keep
    return np.clip(y, 0, 255).astype(np.uint8)


def match_colors_v1(image: torch.Tensor, reference: torch.Tensor, *, histogram: bool,
                    keep: float = 0.5) -> torch.Tensor:
    """``[B, 3, H, W]`` in [0, 1] adjusted toward ``reference`` (batch 1 or B); [0, 1] floats of
    the uint8 result (so values are multiples of 1/255)."""
    refs = [to_uint8(r) for r in reference]
    out = []
    for b, img in enumerate(image):
        ref = refs[b if len(refs) > 1 else 0]
        y = adjust_one(to_uint8(img), ref, histogram=histogram, keep=keep)
        out.append(torch.from_numpy(y).permute(2, 0, 1).float() / 255)
    return torch.stack(out).to(image.device)
