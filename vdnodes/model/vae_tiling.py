"""Bounded memory for large images: tiled VAE encode/decode with blended seams, and the memory budget.

The kl-f8 decoder holds several ``[B, 128, H, W]`` float tensors at full resolution, so its
peak grows with the pixel count (measured: benchmarks/vae_memory.py, docs/performance.md).
Above a budget the image is decoded in overlapping latent tiles; each tile's pixels are
weighted by a ramp that rises across the overlap, and the weighted sum is normalised, so
neighbouring tiles cross-fade and no edge is visible. Only the convolutional part above the
latent resolution is tiled: the mid block (with the only attention) runs on the whole latent.
The encoder is tiled the same way (its features are blended at the latent resolution).

The budget: ``VDNODES_MAX_MEMORY`` (GB; ``vdnodes run --max-memory``) or, when unset, half the
memory available now (CPU: ``MemAvailable``; CUDA: free device memory).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

ENV = "VDNODES_MAX_MEMORY"
STAT_PASSES = 1  # passes gathering GroupNorm moments before the blended pass (2 halve the error, 1.5x the time)
# Peak bytes of an untiled fp32 pass per output pixel and batch item: the kl-f8 decoder grew the
# resident set by 971.5 MiB at 512 x 512 (benchmarks/vae_memory.py, 2026-12-08); the encoder needs less.
DECODE_BYTES_PER_PIXEL = 3900


def memory_budget(device: torch.device | str) -> int:
    """Bytes an untiled VAE pass may use: ``VDNODES_MAX_MEMORY`` GB, else half of what is free now."""
    value = os.environ.get(ENV, "").strip()
    if value:
        return int(float(value) * 1e9)
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free // 2
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024 // 2
    except (OSError, KeyError, ValueError):
        return 8 * 10**9  # no /proc: assume a modest machine


def needs_tiling(batch: int, pixels: int, element_size: int, device: torch.device | str) -> bool:
    """Whether an untiled pass over ``batch`` images of ``pixels`` pixels would exceed the budget."""
    return batch * pixels * DECODE_BYTES_PER_PIXEL * element_size // 4 > memory_budget(device)


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering ``size``: stride ``tile - overlap``, the last tile flush with the end."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _ramp(length: int, ramp: int, before: bool, after: bool, device: torch.device) -> torch.Tensor:
    """Weights ``[length]``: rising over ``ramp`` samples where a tile precedes, falling where one follows."""
    i = torch.arange(length, dtype=torch.float32, device=device) + 0.5
    w = torch.ones(length, device=device)
    if before:
        w = torch.minimum(w, i / ramp)
    if after:
        w = torch.minimum(w, (length - i) / ramp)
    return w


class _SharedGroupNorm:
    """Makes every ``GroupNorm`` of a module use statistics gathered over all tiles.

    A tile alone would normalise by its own statistics, so a flat tile (sky) and a busy one
    would come out with different contrast. Pass 1 (``record``) runs every tile and sums each
    layer's per-group moments over the tile's core (the part no other tile owns); pass 2
    (``apply``) normalises with those whole-image moments. Upstream layers in pass 1 still used
    tile statistics, so this is close to, not exactly, the untiled result.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        # Passes after the first normalise by the previous pass's moments while recording new ones.
        self.layers = [m for m in module.modules() if isinstance(m, torch.nn.GroupNorm)]
        self.sums: dict[int, torch.Tensor] = {}  # per layer: [sum, sum of squares, count] x [B, G]
        self.new: dict[int, torch.Tensor] = {}  # the same, being recorded
        self.mode = "record"
        self.core: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 1.0)  # fractions of the tile

    def __enter__(self) -> _SharedGroupNorm:
        self.handles = [m.register_forward_hook(self._hook) for m in self.layers]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()

    def _hook(self, m: torch.nn.GroupNorm, args: tuple[torch.Tensor], out: torch.Tensor) -> torch.Tensor | None:
        x = args[0]
        B, C, H, W = x.shape
        xg = x.float().view(B, m.num_groups, C // m.num_groups, H, W)
        if self.mode == "record":
            t0, t1, l0, l1 = self.core
            core = xg[..., round(t0 * H):round(t1 * H), round(l0 * W):round(l1 * W)]
            s = torch.stack([core.sum((2, 3, 4)), core.square().sum((2, 3, 4)),
                             torch.full((B, m.num_groups), float(core[0, 0].numel()), device=x.device)])
            self.new[id(m)] = self.new[id(m)] + s if id(m) in self.new else s
            if id(m) not in self.sums:
                return None
        total, squares, count = self.sums[id(m)]  # [B, G] each
        mean = total / count
        var = (squares / count - mean.square()).clamp_min(0)
        y = (xg - mean[:, :, None, None, None]) * torch.rsqrt(var + m.eps)[:, :, None, None, None]
        y = y.view(B, C, H, W) * m.weight.float()[:, None, None] + m.bias.float()[:, None, None]
        return y.to(out.dtype)


def tiled_map(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], scale: float,
              tile: int, overlap: int, module: torch.nn.Module | None = None) -> torch.Tensor:
    """``fn`` over overlapping spatial tiles of ``x`` (side ``tile``, overlap ``overlap``), cross-faded.

    ``fn`` maps ``[B, C, h, w]`` to ``[B, C', h*scale, w*scale]`` (decoder: 8, encoder: 1/8).
    The output is the ramp-weighted, normalised sum of the tiles' outputs. With ``module`` (the
    network ``fn`` runs) its GroupNorms share whole-image statistics: two passes over the tiles.
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, {tile}), got {overlap}")
    _, _, H, W = x.shape
    rows, cols = _starts(H, tile, overlap), _starts(W, tile, overlap)
    tiles = [(a, b, top, left) for a, top in enumerate(rows) for b, left in enumerate(cols)]
    if module is None or len(tiles) == 1:
        return _blend(x, fn, scale, tile, overlap, rows, cols, tiles)
    with _SharedGroupNorm(module) as shared:
        for _ in range(STAT_PASSES):
            for a, b, top, left in tiles:  # each tile's core moments
                th, tw = min(tile, H - top), min(tile, W - left)
                t0 = 0 if a == 0 else (rows[a - 1] + min(tile, H - rows[a - 1]) + top) / 2 - top
                t1 = th if a == len(rows) - 1 else (top + th + rows[a + 1]) / 2 - top
                l0 = 0 if b == 0 else (cols[b - 1] + min(tile, W - cols[b - 1]) + left) / 2 - left
                l1 = tw if b == len(cols) - 1 else (left + tw + cols[b + 1]) / 2 - left
                shared.core = (t0 / th, t1 / th, l0 / tw, l1 / tw)
                fn(x[:, :, top:top + tile, left:left + tile])
            shared.sums, shared.new = shared.new, {}
        shared.mode = "apply"
        return _blend(x, fn, scale, tile, overlap, rows, cols, tiles)


def _blend(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], scale: float, tile: int, overlap: int,
           rows: list[int], cols: list[int], tiles: list[tuple[int, int, int, int]]) -> torch.Tensor:
    _, _, H, W = x.shape
    out = weight = None
    ramp = max(1, round(overlap * scale))
    for a, b, top, left in tiles:
        piece = fn(x[:, :, top:top + tile, left:left + tile]).float()  # [B, C', th, tw]
        if out is None:
            out = torch.zeros(*piece.shape[:2], round(H * scale), round(W * scale), device=piece.device)
            weight = torch.zeros(round(H * scale), round(W * scale), device=piece.device)
        th, tw = piece.shape[2:]
        w = (_ramp(th, ramp, a > 0, a < len(rows) - 1, piece.device)[:, None]
             * _ramp(tw, ramp, b > 0, b < len(cols) - 1, piece.device)[None, :])  # [th, tw]
        t0, l0 = round(top * scale), round(left * scale)
        out[:, :, t0:t0 + th, l0:l0 + tw] += piece * w
        weight[t0:t0 + th, l0:l0 + tw] += w
        del piece
    return out / weight
