"""Image VAE of Versatile Diffusion: the LDM "kl-f8" autoencoder (our own implementation).

What it is: a convolutional encoder/decoder with a diagonal-Gaussian latent, the same network as
VD's `autokl_v1` and the Stable Diffusion v1 VAE (Rombach et al. 2022, arXiv 2112.10752; VD spec
`vd-architecture.md` §3.1). Pixels in [0, 1] ([B, 3, H, W]) <-> scaled latents ([B, 4, H/8, W/8]).
It follows LDM's `ldm/modules/diffusionmodules/model.py` (Encoder, Decoder, AttnBlock) and
`ldm/models/autoencoder.py` (AutoencoderKL); VD v2 adds the [0,1] <-> [-1,1] mapping and the
0.18215 scale used here.

What it is not: no checkpoint formats (key maps live in `vae_keys.py`), no file I/O, no training
losses. Our state-dict names are diffusers-like and are our public checkpoint format.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------
# Small parts
# ---------------------------------------------------------------------------------------------


def _group_norm(channels: int, groups: int) -> nn.GroupNorm:
    # LDM's Normalize(): eps 1e-6, not torch's default 1e-5.
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3, twice, plus a (1x1-projected when channels change) skip."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.norm1 = _group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = _group_norm(out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # [B, C_out, H, W]
        h = self.conv2(F.silu(self.norm2(h)))  # [B, C_out, H, W]  (LDM dropout is 0 for kl-f8)
        return self.shortcut(x) + h


ATTENTION_CHUNK_BYTES = 32 << 20  # CPU: the most a chunk's [B, rows, N] score matrix may take


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``scaled_dot_product_attention`` over query chunks on CPU, so no kernel ever holds an N x N matrix.

    At 2048 px the mid-block attends over 65,536 positions: a full score matrix would take
    16 GiB in fp32. Chunks of queries bound it to ``ATTENTION_CHUNK_BYTES`` whichever kernel
    PyTorch picks; each chunk is exact (softmax runs over all keys). CUDA uses the fused kernels.
    """
    B, N, _ = q.shape
    rows = max(1, ATTENTION_CHUNK_BYTES // (B * k.shape[1] * q.element_size()))
    if q.device.type != "cpu" or rows >= N:
        return F.scaled_dot_product_attention(q, k, v)
    return torch.cat([F.scaled_dot_product_attention(q[:, i:i + rows], k, v) for i in range(0, N, rows)], dim=1)


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, with a residual connection.

    LDM stores q/k/v/proj_out as 1x1 convs; they are the same matrices as these Linears
    (`keymap.fit_shape` reshapes them when loading).
    """

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = _group_norm(channels, groups)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)  # [B, H*W, C]
        q, k, v = self.to_q(h), self.to_k(h), self.to_v(h)  # [B, H*W, C] each
        h = chunked_attention(q, k, v)  # [B, H*W, C], scale 1/sqrt(C) as in LDM
        h = self.to_out(h).transpose(1, 2).reshape(B, C, H, W)  # [B, C, H, W]
        return x + h


class Downsample(nn.Module):
    """Stride-2 conv3x3 after an asymmetric zero pad (right and bottom only), as in LDM."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 1, 0, 1))  # [B, C, H+1, W+1]
        return self.conv(x)  # [B, C, H/2, W/2]


class Upsample(nn.Module):
    """Nearest-neighbour x2, then conv3x3."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")  # [B, C, 2H, 2W]
        return self.conv(x)


class MidBlock(nn.Module):
    """ResnetBlock -> AttnBlock -> ResnetBlock at the lowest resolution (the only attention)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock(channels, channels, groups), ResnetBlock(channels, channels, groups)]
        )
        self.attn = AttnBlock(channels, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnets[1](self.attn(self.resnets[0](x)))


class DownLevel(nn.Module):
    """One encoder resolution: `n` ResnetBlocks, then an optional Downsample."""

    def __init__(
        self, in_channels: int, out_channels: int, n: int, groups: int, down: bool
    ) -> None:
        super().__init__()
        chans = [in_channels] + [out_channels] * n
        self.resnets = nn.ModuleList(ResnetBlock(a, b, groups) for a, b in zip(chans, chans[1:]))
        self.downsample = Downsample(out_channels) if down else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        return self.downsample(x)


class UpLevel(nn.Module):
    """One decoder resolution: `n` ResnetBlocks, then an optional Upsample."""

    def __init__(
        self, in_channels: int, out_channels: int, n: int, groups: int, up: bool
    ) -> None:
        super().__init__()
        chans = [in_channels] + [out_channels] * n
        self.resnets = nn.ModuleList(ResnetBlock(a, b, groups) for a, b in zip(chans, chans[1:]))
        self.upsample = Upsample(out_channels) if up else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        return self.upsample(x)


class DiagonalGaussian:
    """The posterior q(z|x) = N(mean, exp(logvar)), split from the 2*C moment channels."""

    def __init__(self, moments: torch.Tensor) -> None:
        self.moments = moments  # [B, 2C, h, w]
        self.mean, logvar = moments.chunk(2, dim=1)  # [B, C, h, w] each
        # Clamp as LDM does, so exp() stays finite for untrained or extreme inputs.
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * eps, with eps drawn from `generator` (on the generator's device)."""
        device = generator.device if generator is not None else self.mean.device
        shape, dtype = self.mean.shape, self.mean.dtype
        eps = torch.randn(shape, generator=generator, device=device, dtype=dtype)  # [B, C, h, w]
        return self.mean + self.std * eps.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        return self.mean


# ---------------------------------------------------------------------------------------------
# Encoder and decoder
# ---------------------------------------------------------------------------------------------


@dataclass
class VAEConfig:
    """kl-f8 by default (VD `autokl_v1`, 83,653,863 params). Tiny configs work too."""

    in_channels: int = 3
    out_channels: int = 3
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)  # one level per entry; len-1 halvings -> "f8"
    num_res_blocks: int = 2  # per encoder level; decoder levels have one more (LDM)
    z_channels: int = 4  # the encoder emits 2*z_channels moments ("double_z")
    embed_dim: int = 4  # latent channels after quant_conv
    norm_groups: int = 32
    scale_factor: float = 0.18215  # makes SD/VD latents roughly unit variance

    def __post_init__(self) -> None:
        self.ch_mult = tuple(self.ch_mult)
        if not self.ch_mult:
            raise ValueError("VAEConfig.ch_mult must have at least one level")
        for c in [self.ch * m for m in self.ch_mult]:
            if c % self.norm_groups:
                raise ValueError(
                    f"VAEConfig: {c} channels are not divisible by norm_groups={self.norm_groups}"
                )

    @property
    def downsample_factor(self) -> int:
        """How much smaller the latent is than the image along H and W (8 for kl-f8)."""
        return 2 ** (len(self.ch_mult) - 1)


class Encoder(nn.Module):
    """Pixels in [-1, 1] -> Gaussian moments: [B, in, H, W] -> [B, 2*z, H/f, W/f]."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        chans = [config.ch * m for m in config.ch_mult]
        g, n_levels = config.norm_groups, len(chans)
        self.conv_in = nn.Conv2d(config.in_channels, chans[0], kernel_size=3, padding=1)
        self.down_blocks = nn.ModuleList(
            DownLevel(c_in, c_out, config.num_res_blocks, g, down=i < n_levels - 1)
            for i, (c_in, c_out) in enumerate(zip([chans[0]] + chans[:-1], chans))
        )
        self.mid_block = MidBlock(chans[-1], g)
        self.norm_out = _group_norm(chans[-1], g)
        self.conv_out = nn.Conv2d(chans[-1], 2 * config.z_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """The convolutional part above the latent resolution (tiled for large images)."""
        h = self.conv_in(x)  # [B, ch, H, W]
        for level in self.down_blocks:
            h = level(h)  # ... -> [B, ch*mult[-1], H/f, W/f]
        return h

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Mid block (with the attention) and output, at the latent resolution."""
        h = self.mid_block(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # [B, 2*z, H/f, W/f]


class Decoder(nn.Module):
    """Latent z -> pixels in about [-1, 1]: [B, z, h, w] -> [B, out, h*f, w*f]."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        chans = [config.ch * m for m in reversed(config.ch_mult)]  # lowest resolution first
        g, n_levels = config.norm_groups, len(chans)
        self.conv_in = nn.Conv2d(config.z_channels, chans[0], kernel_size=3, padding=1)
        self.mid_block = MidBlock(chans[0], g)
        self.up_blocks = nn.ModuleList(
            UpLevel(c_in, c_out, config.num_res_blocks + 1, g, up=i < n_levels - 1)
            for i, (c_in, c_out) in enumerate(zip([chans[0]] + chans[:-1], chans))
        )
        self.norm_out = _group_norm(chans[-1], g)
        self.conv_out = nn.Conv2d(chans[-1], config.out_channels, kernel_size=3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.head(z))

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Input and mid block (with the attention), at the latent resolution."""
        return self.mid_block(self.conv_in(z))  # [B, ch*mult[-1], h, w]

    def body(self, h: torch.Tensor) -> torch.Tensor:
        """The upsampling convolutional part (tiled for large images)."""
        for level in self.up_blocks:
            h = level(h)  # ... -> [B, ch*mult[0], h*f, w*f]
        return self.conv_out(F.silu(self.norm_out(h)))  # [B, out, h*f, w*f]


# ---------------------------------------------------------------------------------------------
# The VAE
# ---------------------------------------------------------------------------------------------


class ImageVAE(nn.Module):
    """kl-f8 image autoencoder with VD v2's pixel range ([0, 1]) and latent scale (0.18215).

    ``tile_size`` / ``tile_overlap``: latent tile side and overlap of tiled passes (512 / 128 px).
    """

    tile_size = 64
    tile_overlap = 16

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or VAEConfig()
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv2d(2 * config.z_channels, 2 * config.embed_dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, kernel_size=1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check(self, x: torch.Tensor, what: str, channels: int, multiple: int) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"ImageVAE: {what} must be a [B, {channels}, H, W] tensor, got {got}")
        if x.shape[1] != channels:
            raise ValueError(
                f"ImageVAE: {what} must have {channels} channels, got shape {tuple(x.shape)}"
            )
        if x.shape[2] % multiple or x.shape[3] % multiple:
            raise ValueError(
                f"ImageVAE: {what} height and width must be multiples of {multiple}, "
                f"got {x.shape[2]}x{x.shape[3]}"
            )
        if not x.is_floating_point():
            raise ValueError(f"ImageVAE: {what} must be a floating-point tensor, got {x.dtype}")

    def _tiled(self, tiled: bool | None, x: torch.Tensor, pixels: int) -> bool:
        """``tiled`` as given, or (None) whether an untiled pass would exceed the memory budget."""
        if tiled is not None:
            return tiled
        from vdnodes.model.vae_tiling import needs_tiling

        return needs_tiling(x.shape[0], pixels, x.element_size(), x.device)

    def posterior(self, images: torch.Tensor, *, tiled: bool | None = None) -> DiagonalGaussian:
        """Images [B, 3, H, W] in [0, 1] -> q(z|x) over *unscaled* latents [B, 4, H/8, W/8].

        ``tiled``: encode in overlapping tiles with blended moments (bounded memory); None
        chooses by the memory budget (``vae_tiling.memory_budget``).
        """
        self._check(images, "images", self.config.in_channels, self.config.downsample_factor)
        x = images.to(self.quant_conv.weight.dtype) * 2.0 - 1.0  # [B, 3, H, W] in [-1, 1]
        if self._tiled(tiled, x, x.shape[2] * x.shape[3]):
            from vdnodes.model.vae_tiling import tiled_map

            f = self.config.downsample_factor
            h = tiled_map(x, self.encoder.body, 1 / f, self.tile_size * f, self.tile_overlap * f, self.encoder)
            moments = self.quant_conv(self.encoder.head(h.to(x.dtype)))
        else:
            moments = self.quant_conv(self.encoder(x))  # [B, 2*embed, H/8, W/8]
        return DiagonalGaussian(moments)

    def encode(
        self,
        images: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        sample: bool = True,
        tiled: bool | None = None,
    ) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> scaled latent [B, 4, H/8, W/8].

        VD v2 *samples* the posterior (`sample=True`, noise from `generator`); `sample=False`
        returns the mean. H and W must be multiples of `config.downsample_factor`.
        """
        posterior = self.posterior(images, tiled=tiled)
        z = posterior.sample(generator) if sample else posterior.mode()  # [B, 4, H/8, W/8]
        return z * self.config.scale_factor

    def decode(self, latent: torch.Tensor, *, tiled: bool | None = None) -> torch.Tensor:
        """Scaled latent [B, 4, h, w] -> images [B, 3, 8h, 8w] clamped to [0, 1].

        ``tiled``: decode overlapping latent tiles and cross-fade them (bounded memory); None
        chooses by the memory budget (``vae_tiling.memory_budget``).
        """
        self._check(latent, "latent", self.config.embed_dim, 1)
        z = latent.to(self.post_quant_conv.weight.dtype) / self.config.scale_factor
        f = self.config.downsample_factor
        if self._tiled(tiled, z, z.shape[2] * z.shape[3] * f * f):
            from vdnodes.model.vae_tiling import tiled_map

            h = self.decoder.head(self.post_quant_conv(z))  # [B, C, h, w]: the attention sees the whole image
            x = tiled_map(h, self.decoder.body, f, self.tile_size, self.tile_overlap, self.decoder).to(z.dtype)
        else:
            x = self.decoder(self.post_quant_conv(z))  # [B, 3, 8h, 8w], about [-1, 1]
        return ((x + 1.0) / 2.0).clamp(0.0, 1.0)
