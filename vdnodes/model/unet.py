"""The multi-flow Versatile Diffusion UNet: one walk, three kinds of layer groups.

VD (arXiv 2211.08332) splits its denoiser into a *global* group (the timestep
MLP, one copy), *data* groups chosen by the modality being generated (image
ResBlocks or text FCResBlocks with their in/out/sampling layers) and *context*
groups chosen by the conditioning modality (the cross-attention transformers).
Every group follows one shared slot schedule (30 data slots d0..d29, 16 context
slots c0..c15, vd-architecture.md section 1.3), so any data group can be
combined with any context group, and several contexts can be mixed at every
context slot (section 1.5). The parts follow vd-architecture.md sections 1-2 (read
from SHI-Labs' ``openaimodel.py``, ``openai_unet_2d/0d``); numerical parity with
diffusers' ``UNet2DConditionModel`` / ``UNetFlatConditionModel`` is tested.

This module is the network only: no checkpoint names (see ``unet_keys.py``), no
loading, no sampling. There is no dropout (VD uses 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vdnodes.model.conditioning import ContextInput, normalised_weights

# ----------------------------------------------------------------------------
# Small parts


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos(t*f), sin(t*f)]`` with ``f_i = max_period^(-i/half)``.

    Cosine half first (diffusers: ``flip_sin_to_cos=True, freq_shift=0``). t: ``[B]``.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    args = t[:, None].float() * torch.exp(exponent)[None, :]  # [B, half]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # [B, dim]


class TimeEmbedding(nn.Module):
    """The global group: sinusoid -> Linear -> SiLU -> Linear (320 -> 1280 -> 1280 in VD)."""

    def __init__(self, channels: int, embed_dim: int):
        super().__init__()
        self.channels = channels
        self.linear_1 = nn.Linear(channels, embed_dim)
        self.linear_2 = nn.Linear(embed_dim, embed_dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = timestep_embedding(t, self.channels).to(self.linear_1.weight.dtype)  # [B, C]
        return self.linear_2(F.silu(self.linear_1(emb)))  # [B, E]


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` that runs as im2col + one GEMM on CPU when its weight dwarfs its output.

    oneDNN re-lays-out the weight on every call. At VD's low-resolution levels (8x8 and
    16x16 latents with 1280 channels) that copy costs more than the convolution itself,
    while an unfold + batched GEMM reads the weight once (benchmarks/unet_step.py).
    """

    GEMM_WEIGHT_PER_ROW = 16384  # measured crossover: weight elements per output position

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        (kh, kw), (ph, pw), (sh, sw) = self.kernel_size, self.padding, self.stride
        Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
        weight_bound = self.weight.numel() >= self.GEMM_WEIGHT_PER_ROW * B * Ho * Wo
        plain = self.groups == 1 and self.dilation == (1, 1) and self.padding_mode == "zeros"
        if x.device.type != "cpu" or not weight_bound or not plain:
            return super().forward(x)
        cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # [B, C*kh*kw, Ho*Wo]
        w = self.weight.flatten(1).expand(B, -1, -1)  # [B, O, C*kh*kw], no copy
        out = torch.bmm(w, cols) if self.bias is None else torch.baddbmm(self.bias[:, None], w, cols)
        return out.view(B, -1, Ho, Wo)  # [B, O, Ho, Wo]


class ResBlock(nn.Module):
    """Image ResBlock: GN-SiLU-conv3, + time, GN-SiLU-conv3 (zero-init), + skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in, eps=eps)
        self.conv1 = Conv2d(c_in, c_out, 3, padding=1)
        self.time_emb_proj = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out, eps=eps)
        self.conv2 = Conv2d(c_out, c_out, 3, padding=1)
        self.conv_shortcut = Conv2d(c_in, c_out, 1) if c_in != c_out else None
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x), inplace=True))  # [B, Co, H, W]
        h += self.time_emb_proj(F.silu(emb))[:, :, None, None]  # conv output is not saved for backward
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return h.add_(skip)


class FCResBlock(nn.Module):
    """Text ResBlock on ``[B, C, P, 1]`` features, run flat on ``[B, P*C]`` (section 2.2).

    The flat index is channel-major (``c*P + s``), GroupNorm runs over the P*C flat
    channels and its affine is per (c, s). The Linears are named like the 1x1 convs
    they are in the checkpoints, so image and text blocks share one rename table.
    """

    def __init__(self, c_in: int, c_out: int, positions: int, emb_dim: int, groups: int, eps: float):
        super().__init__()
        w_in, w_out = c_in * positions, c_out * positions
        self.out_shape = (c_out, positions, 1)
        self.norm1 = nn.GroupNorm(groups, w_in, eps=eps)
        self.conv1 = nn.Linear(w_in, w_out)
        self.time_emb_proj = nn.Linear(emb_dim, w_out)
        self.norm2 = nn.GroupNorm(groups, w_out, eps=eps)
        self.conv2 = nn.Linear(w_out, w_out)
        self.conv_shortcut = nn.Linear(w_in, w_out) if w_in != w_out else None
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)  # [B, C*P] channel-major
        h = self.conv1(F.silu(self.norm1(x), inplace=True))  # [B, Co*P]
        h += self.time_emb_proj(F.silu(emb))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return h.add_(skip).view(-1, *self.out_shape)  # [B, Co, P, 1]


class LinearMultiDim(nn.Linear):
    """One Linear over flattened trailing dims: ``[B, *in_shape] -> [B, *out_shape]``.

    VD's text input layer, its square "down/up samplers" and its output Linear.
    """

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int]):
        super().__init__(math.prod(in_shape), math.prod(out_shape))
        self.out_shape = tuple(out_shape)

    def forward(self, h: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(h.reshape(h.shape[0], -1)).view(-1, *self.out_shape)


class ConvIn(Conv2d):
    """Image input layer: 3x3 conv from latent channels to model channels."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 3, padding=1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(h)


class Downsample(Conv2d):
    """Image downsampler: stride-2 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, stride=2, padding=1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(h)


class Upsample(Conv2d):
    """Image upsampler: nearest x2, then 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(F.interpolate(h, scale_factor=2.0, mode="nearest"))


class OutputHead(nn.Module):
    """GroupNorm -> SiLU -> ``out`` (image: 3x3 conv; text: Linear to the latent width)."""

    def __init__(self, norm: nn.GroupNorm, out: nn.Module):
        super().__init__()
        self.norm = norm
        self.out = out
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(F.silu(self.norm(h), inplace=True))


class PointwiseConv(nn.Conv2d):
    """A 1x1 conv (checkpoint shape ``[C, C, 1, 1]``) applied to tokens ``[B, N, C]``.

    Lets the transformer run on any spatial layout without a permute copy.
    """

    def __init__(self, channels: int):
        super().__init__(channels, channels, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.linear(tokens, self.weight.flatten(1), self.bias)


class Attention(nn.Module):
    """Multi-head attention; q from ``x``, k/v from ``context`` (or ``x``). No q/k/v bias."""

    def __init__(self, dim: int, context_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])  # ".0" as in every VD checkpoint

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        context = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)  # [B, N|T, C]
        q, k, v = (a.unflatten(-1, (self.heads, -1)).transpose(1, 2) for a in (q, k, v))  # [B, h, N|T, d]
        out = F.scaled_dot_product_attention(q, k, v)  # [B, h, N, d], scale d^-0.5
        return self.to_out[0](out.transpose(1, 2).reshape(B, N, C))


class GEGLU(nn.Module):
    """``value * gelu(gate)`` from one Linear ``C -> 2*inner``."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)  # [B, N, inner] each
        return F.gelu(gate).mul_(value)  # in place on the fresh gelu output: one buffer fewer


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        # net.1 is the (zero-probability) dropout of the checkpoints; kept so names line up.
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Pre-LN self-attention, cross-attention and GEGLU feed-forward, each residual."""

    def __init__(self, dim: int, context_dim: int, heads: int, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn1 = Attention(dim, dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.attn2 = Attention(dim, context_dim, heads)
        self.norm3 = nn.LayerNorm(dim, eps=eps)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # add_ on a fresh Linear output keeps autograd intact and saves one buffer per residual.
        x = self.attn1(self.norm1(x)).add_(x)  # [B, N, C]
        x = self.attn2(self.norm2(x), context).add_(x)
        return self.ff(self.norm3(x)).add_(x)


class SpatialTransformer(nn.Module):
    """The context block: GN -> proj_in -> transformer block(s) -> proj_out (zero-init) -> + h.

    Runs on any layout ``[B, C, *spatial]`` (image ``[B,C,H,W]``, text ``[B,C,4,1]``):
    the spatial positions become the tokens.
    """

    def __init__(self, channels: int, context_dim: int, heads: int, groups: int, depth: int = 1):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = PointwiseConv(channels)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(channels, context_dim, heads, eps=1e-5) for _ in range(depth)
        )
        self.proj_out = PointwiseConv(channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, h: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        B, C, *spatial = h.shape
        x = self.proj_in(self.norm(h).flatten(2).transpose(1, 2))  # [B, N, C], N = prod(spatial)
        for block in self.transformer_blocks:
            x = block(x, context)
        x = self.proj_out(x).transpose(1, 2).unflatten(2, spatial)  # [B, C, *spatial], a strided view
        return h + x  # h first: the sum takes h's memory layout


# ----------------------------------------------------------------------------
# The shared slot schedule (section 1.3) and the layer groups


@dataclass(frozen=True)
class DataSlot:
    """One data slot: ``kind`` in in/res/down/up/head; widths are internal channel counts.

    ``c_in`` of an "in" slot and ``c_out`` of a "head" slot are 0: the modality decides.
    ``part``/``level``/``index`` locate the slot in the down/mid/up structure.
    """

    kind: str
    c_in: int
    c_out: int
    part: str
    level: int
    index: int


@dataclass(frozen=True)
class ContextSlot:
    """One context slot: the width of the features its transformer reads and returns."""

    channels: int
    part: str
    level: int
    index: int


@dataclass(frozen=True)
class Step:
    """One step of the walk: run data slot or context slot ``slot``; pop a skip first, push after."""

    kind: str  # "data" | "context"
    slot: int
    pop: bool = False
    push: bool = False


@dataclass(frozen=True)
class UNetLayout:
    """The shared schedule: every group of a UNet is built from, and walked by, one layout."""

    data_slots: tuple[DataSlot, ...]
    context_slots: tuple[ContextSlot, ...]
    steps: tuple[Step, ...]


def build_layout(
    model_channels: int, channel_mult: Sequence[int], num_res_blocks: int, attention_levels: Sequence[int]
) -> UNetLayout:
    """The slot schedule of ``openaimodel.UNetModel``; skip widths come from simulating the stack."""
    data: list[DataSlot] = []
    ctx: list[ContextSlot] = []
    steps: list[Step] = []
    stack: list[int] = []

    def run_data(kind: str, c_in: int, c_out: int, part: str, level: int, index: int, pop: bool = False) -> None:
        steps.append(Step("data", len(data), pop=pop))
        data.append(DataSlot(kind, c_in, c_out, part, level, index))

    def run_context(channels: int, part: str, level: int, index: int) -> None:
        steps.append(Step("context", len(ctx)))
        ctx.append(ContextSlot(channels, part, level, index))

    def push(channels: int) -> None:
        steps[-1] = Step(steps[-1].kind, steps[-1].slot, steps[-1].pop, push=True)
        stack.append(channels)

    last = len(channel_mult) - 1
    ch = model_channels * channel_mult[0]
    run_data("in", 0, ch, "in", 0, 0)
    push(ch)
    for level, mult in enumerate(channel_mult):  # encoder
        for i in range(num_res_blocks):
            run_data("res", ch, model_channels * mult, "down", level, i)
            ch = model_channels * mult
            if level in attention_levels:
                run_context(ch, "down", level, i)
            push(ch)
        if level != last:
            run_data("down", ch, ch, "down", level, num_res_blocks)
            push(ch)
    run_data("res", ch, ch, "mid", 0, 0)  # middle: always with attention
    run_context(ch, "mid", 0, 0)
    run_data("res", ch, ch, "mid", 0, 1)
    for level in reversed(range(len(channel_mult))):  # decoder
        for i in range(num_res_blocks + 1):
            c_out = model_channels * channel_mult[level]
            run_data("res", ch + stack.pop(), c_out, "up", level, i, pop=True)
            ch = c_out
            if level in attention_levels:
                run_context(ch, "up", level, i)
        if level != 0:
            run_data("up", ch, ch, "up", level, num_res_blocks + 1)
    run_data("head", ch, 0, "out", 0, 0)
    assert not stack
    return UNetLayout(tuple(data), tuple(ctx), tuple(steps))


class DataGroup(nn.Module):
    """Data layers of one modality: one block per data slot, run as ``block(h, emb)``.

    Subclasses build ``blocks`` from the layout and say how their latent becomes the
    tensor the first block reads (``to_features``) and back (``from_features``).
    """

    def __init__(self, layout: UNetLayout, blocks: Sequence[nn.Module]):
        super().__init__()
        self.layout = layout
        self.blocks = nn.ModuleList(blocks)

    def to_features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def from_features(self, h: torch.Tensor) -> torch.Tensor:
        return h


class ImageDataGroup(DataGroup):
    """conv_in, ResBlocks, stride-2 convs, nearest x2 + conv, GN-SiLU-conv head. Latent ``[B,4,H,W]``."""

    def __init__(self, layout: UNetLayout, channels: int, emb_dim: int, groups: int, eps: float):
        def make(s: DataSlot) -> nn.Module:
            if s.kind == "in":
                return ConvIn(channels, s.c_out)
            if s.kind == "res":
                return ResBlock(s.c_in, s.c_out, emb_dim, groups, eps)
            if s.kind == "down":
                return Downsample(s.c_out)
            if s.kind == "up":
                return Upsample(s.c_out)
            return OutputHead(nn.GroupNorm(groups, s.c_in, eps=eps), Conv2d(s.c_in, channels, 3, padding=1))

        super().__init__(layout, [make(s) for s in layout.data_slots])
        self.channels = channels
        self.factor = 2 ** sum(s.kind == "down" for s in layout.data_slots)
        self.memory_format = torch.contiguous_format  # accel.use_channels_last sets channels_last

    def to_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"image latent must be [B, {self.channels}, H, W], got {list(x.shape)}")
        if x.shape[2] % self.factor or x.shape[3] % self.factor:
            raise ValueError(f"image latent H and W must be multiples of {self.factor}, got {list(x.shape)}")
        return x.contiguous(memory_format=self.memory_format)


class TextDataGroup(DataGroup):
    """Linear in, FCResBlocks, square Linear samplers, GN-SiLU-Linear head. Latent ``[B, 768]``.

    Internal features are ``[B, C, P, 1]`` with P = ``positions`` (4 in VD) at every level.
    """

    def __init__(self, layout: UNetLayout, dim: int, positions: int, emb_dim: int, groups: int, eps: float):
        P = positions

        def make(s: DataSlot) -> nn.Module:
            if s.kind == "in":
                return LinearMultiDim((dim,), (s.c_out, P, 1))
            if s.kind == "res":
                return FCResBlock(s.c_in, s.c_out, P, emb_dim, groups, eps)
            if s.kind in ("down", "up"):
                return LinearMultiDim((s.c_out, P, 1), (s.c_out, P, 1))
            return OutputHead(nn.GroupNorm(groups, s.c_in, eps=eps), LinearMultiDim((s.c_in, P, 1), (dim,)))

        super().__init__(layout, [make(s) for s in layout.data_slots])
        self.dim = dim

    def to_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim not in (2, 4) or x[0].numel() != self.dim:
            raise ValueError(f"text latent must be [B, {self.dim}] (or [B, {self.dim}, 1, 1]), got {list(x.shape)}")
        return x.reshape(x.shape[0], self.dim)  # [B, D]


class ContextGroup(nn.Module):
    """Context layers of one modality: one SpatialTransformer per context slot, reading ``[B, T, context_dim]``."""

    def __init__(self, layout: UNetLayout, context_dim: int, heads: int, groups: int, depth: int = 1):
        super().__init__()
        self.layout = layout
        self.context_dim = context_dim
        self.blocks = nn.ModuleList(
            SpatialTransformer(s.channels, context_dim, heads, groups, depth) for s in layout.context_slots
        )


# ----------------------------------------------------------------------------
# Config and the UNet


@dataclass(frozen=True)
class UNetConfig:
    """Sizes of the multi-flow UNet; the defaults are full-size VD v1.0."""

    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2  # per encoder level; the decoder runs one more per level
    attention_levels: tuple[int, ...] = (0, 1, 2)  # LDM attention_resolutions {1,2,4}; the middle always attends
    heads: int = 8  # a fixed head count, so head dim grows with width: 40/80/160/160
    context_dim: int = 768  # CLIP ViT-L/14 token width, for both image and text contexts
    transformer_depth: int = 1
    image_channels: int = 4
    text_dim: int = 768  # Optimus latent width
    text_positions: int = 4  # text features are [B, C, 4, 1]: VD's second_dim
    norm_groups: int = 32
    norm_eps: float = 1e-5  # ResBlocks and heads; transformers use 1e-6 (GN) / 1e-5 (LN) as in SD

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels


ContextPlanEntry = tuple[ContextGroup, torch.Tensor, float]  # (group, tokens [B, T, D], normalised ratio)


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements (works on the ``meta`` device)."""
    return sum(p.numel() for p in module.parameters())


class UNet(nn.Module):
    """VD's denoiser: a global time MLP, ``data[modality]`` and ``context[modality]`` groups.

    ``data``/``context`` name the built-in groups to build ("image", "text"); a
    flow-aware loader builds only what a flow needs (t2i: data image + context text).
    Plugins add modalities with ``add_data_group`` / ``add_context_group``.
    """

    BUILTIN = ("image", "text")

    def __init__(
        self, config: UNetConfig = UNetConfig(), data: Sequence[str] = BUILTIN, context: Sequence[str] = BUILTIN
    ):
        super().__init__()
        c = config
        self.config = c
        self.layout = build_layout(c.model_channels, c.channel_mult, c.num_res_blocks, c.attention_levels)
        self.time_embed = TimeEmbedding(c.model_channels, c.time_embed_dim)
        self.data = nn.ModuleDict()
        self.context = nn.ModuleDict()
        builders: dict[str, Callable[[], DataGroup]] = {
            "image": lambda: ImageDataGroup(self.layout, c.image_channels, c.time_embed_dim, c.norm_groups, c.norm_eps),
            "text": lambda: TextDataGroup(
                self.layout, c.text_dim, c.text_positions, c.time_embed_dim, c.norm_groups, c.norm_eps
            ),
        }
        for name in data:
            if name not in builders:
                raise ValueError(f"unknown built-in data modality {name!r}; built-ins: {list(self.BUILTIN)}")
            self.add_data_group(name, builders[name]())
        for name in context:
            if name not in self.BUILTIN:
                raise ValueError(f"unknown built-in context modality {name!r}; built-ins: {list(self.BUILTIN)}")
            self.add_context_group(
                name, ContextGroup(self.layout, c.context_dim, c.heads, c.norm_groups, c.transformer_depth)
            )

    # -- groups ------------------------------------------------------------

    def add_data_group(self, name: str, group: DataGroup) -> None:
        """Register the data layers of modality ``name`` (a ``DataGroup`` built on ``self.layout``)."""
        self._check_group("data", name, group, DataGroup, group_slots=lambda g: g.layout.data_slots)
        self.data[name] = group

    def add_context_group(self, name: str, group: ContextGroup) -> None:
        """Register the context layers reading modality ``name`` (a ``ContextGroup`` built on ``self.layout``)."""
        self._check_group("context", name, group, ContextGroup, group_slots=lambda g: g.layout.context_slots)
        self.context[name] = group

    def _check_group(self, kind: str, name: str, group: nn.Module, cls: type, group_slots: Callable) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{kind} group name must be an identifier, got {name!r}")
        if not isinstance(group, cls):
            raise TypeError(f"{kind} group {name!r} must be a {cls.__name__}, got {type(group).__name__}")
        slots = group_slots(self)
        if len(group.blocks) != len(slots):
            raise ValueError(f"{kind} group {name!r} has {len(group.blocks)} blocks, "
                             f"this UNet has {len(slots)} {kind} slots")
        if group_slots(group) != slots:
            raise ValueError(f"{kind} group {name!r} was built for other channel widths than this UNet's")

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per group: ``time``, ``data.<name>``, ``context.<name>`` and ``total``."""
        counts = {"time": count_parameters(self.time_embed)}
        counts.update({f"data.{k}": count_parameters(g) for k, g in self.data.items()})
        counts.update({f"context.{k}": count_parameters(g) for k, g in self.context.items()})
        counts["total"] = count_parameters(self)
        return counts

    # -- forward -----------------------------------------------------------

    def _context_plan(self, contexts: Sequence[ContextInput], batch: int) -> list[ContextPlanEntry]:
        """(group, tokens, ratio) per entry with a non-zero normalised ratio; checks every entry."""
        entries = list(contexts)
        ratios = normalised_weights(entries)
        plan = []
        for entry, r in zip(entries, ratios):
            if entry.modality not in self.context:
                raise ValueError(f"no context group {entry.modality!r}; available: {list(self.context)}")
            group = self.context[entry.modality]
            tokens = entry.tokens
            if tokens.ndim != 3 or tokens.shape[0] != batch or tokens.shape[2] != group.context_dim:
                raise ValueError(
                    f"{entry.modality} context must be [{batch}, T, {group.context_dim}] to match x, "
                    f"got {list(tokens.shape)}"
                )
            if r > 0:
                plan.append((group, tokens, r))
        return plan

    @staticmethod
    def _context_step(slot: int, h: torch.Tensor, plan: list[ContextPlanEntry]) -> torch.Tensor:
        """Context slot ``slot``: ``sum_i r_i * T_i(h, c_i)``; one entry is plain routing."""
        if len(plan) == 1:
            group, tokens, _ = plan[0]
            return group.blocks[slot](h, tokens)
        mixed = None
        for group, tokens, r in plan:
            out = group.blocks[slot](h, tokens).mul_(r)  # every T_i reads the same h
            mixed = out if mixed is None else mixed.add_(out)
        return mixed

    def forward(
        self, x: torch.Tensor, t: torch.Tensor | float, xtype: str, contexts: Sequence[ContextInput]
    ) -> torch.Tensor:
        """Predict eps for ``x`` (same shape) at timestep(s) ``t`` given weighted contexts.

        One context routes each context slot to its modality's transformer (section
        1.4). Several are mixed at every context slot as ``h <- sum_i r_i * T_i(h, c_i)``
        with the ratios normalised to sum to 1 (section 1.5).
        """
        if xtype not in self.data:
            raise ValueError(f"no data group {xtype!r}; available: {list(self.data)}")
        data = self.data[xtype]
        B = x.shape[0]
        plan = self._context_plan(contexts, B)
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(B) if t.ndim == 0 else t
        if t.shape != (B,):
            raise ValueError(f"t must be a scalar or [{B}], got {list(t.shape)}")

        # 1. time: one shared embedding for every data block
        emb = self.time_embed(t)  # [B, 4*C0]
        # 2. latent -> features
        h = data.to_features(x)  # image [B, 4, H, W]; text [B, 768]
        # 3. walk the slot schedule: down, middle, up
        skips: list[torch.Tensor] = []
        for step in self.layout.steps:
            if step.kind == "data":
                if step.pop:
                    h = torch.cat([h, skips.pop()], dim=1)  # [B, C + C_skip, ...]
                h = data.blocks[step.slot](h, emb)  # image [B, C, H, W]; text [B, C, 4, 1]
            else:
                h = self._context_step(step.slot, h, plan)  # same shape as h
            if step.push:
                skips.append(h)
        # 4. features -> eps, shaped like x
        return data.from_features(h).reshape(x.shape)
