"""Versatile Diffusion model configs: the full-size model, a tiny one for tests, presets.

What it is: ``VDConfig`` composes the config of every component (UNet, image VAE,
CLIP text and vision towers, Optimus text VAE) and checks that their widths agree
(the UNet reads CLIP tokens, denoises VAE/Optimus latents). ``full_config()`` is
VD v1.0 exactly (vd-architecture.md sections 2-4; the tests build it on ``meta``
and compare parameter counts). ``tiny_config()`` has the same structure (4 levels,
30 data / 16 context slots, both VAEs, both CLIP towers) at toy widths so tests run
in seconds on CPU. ``config_from_diffusers`` turns a diffusers folder's
``config.json`` files into a ``VDConfig``. Presets are looked up by name; the
embedded nano model registers its own (another module).

What it is not: no file I/O (``checkpoints.py`` reads the JSON), no modules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from transformers import CLIPTextConfig, CLIPVisionConfig

from vdnodes.model.clip import clip_text_config, clip_vision_config, tiny_clip_text_config, tiny_clip_vision_config
from vdnodes.model.optimus import OptimusConfig, tiny_optimus_config
from vdnodes.model.unet import UNetConfig
from vdnodes.model.vae import VAEConfig


def _dataclass_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a config dataclass from JSON: lists back to tuples, unknown keys rejected."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kwargs)


@dataclass
class VDConfig:
    """Every component's config. ``name`` says which preset it came from."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    clip_text: CLIPTextConfig = field(default_factory=clip_text_config)
    clip_vision: CLIPVisionConfig = field(default_factory=clip_vision_config)
    optimus: OptimusConfig = field(default_factory=OptimusConfig)
    name: str = "full"

    def __post_init__(self) -> None:
        # The widths that different components must agree on (section 1.1 shapes).
        u = self.unet
        checks = [
            ("CLIP text projection_dim", self.clip_text.projection_dim, "UNet context_dim", u.context_dim),
            ("CLIP vision projection_dim", self.clip_vision.projection_dim, "UNet context_dim", u.context_dim),
            ("image VAE embed_dim", self.vae.embed_dim, "UNet image_channels", u.image_channels),
            ("Optimus latent_dim", self.optimus.latent_dim, "UNet text_dim", u.text_dim),
        ]
        for a_name, a, b_name, b in checks:
            if a != b:
                raise ValueError(f"VDConfig {self.name!r}: {a_name} ({a}) must equal {b_name} ({b})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``VDConfig.from_dict`` inverts it."""
        return {
            "name": self.name,
            "unet": dataclasses.asdict(self.unet),
            "vae": dataclasses.asdict(self.vae),
            "clip_text": self.clip_text.to_diff_dict(),
            "clip_vision": self.clip_vision.to_diff_dict(),
            "optimus": dataclasses.asdict(self.optimus),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "VDConfig":
        missing = [k for k in ("unet", "vae", "clip_text", "clip_vision", "optimus") if k not in data]
        if missing:
            raise ValueError(f"VD config is missing section(s) {missing}")
        return cls(
            unet=_dataclass_from_dict(UNetConfig, data["unet"]),
            vae=_dataclass_from_dict(VAEConfig, data["vae"]),
            clip_text=CLIPTextConfig.from_dict(dict(data["clip_text"])),
            clip_vision=CLIPVisionConfig.from_dict(dict(data["clip_vision"])),
            optimus=_dataclass_from_dict(OptimusConfig, data["optimus"]),
            name=str(data.get("name", "custom")),
        )


# ---------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------

def full_config() -> VDConfig:
    """VD v1.0 at full size: 2,566,318,852 UNet params (section 2), kl-f8, CLIP ViT-L/14, Optimus."""
    return VDConfig(name="full")


def tiny_config() -> VDConfig:
    """Same structure as VD at toy widths; every test-size forward runs in milliseconds on CPU.

    UNet widths 32/64/64/64 with 2 heads and GroupNorm(8); image VAE with two levels
    (8 px -> 4 px latent); CLIP towers 32 wide (real 49,408-id text vocabulary, 65 image
    tokens); Optimus with small vocabularies and a 32-d latent.
    """
    width = 32
    return VDConfig(
        unet=UNetConfig(
            model_channels=width, channel_mult=(1, 2, 2, 2), num_res_blocks=2, attention_levels=(0, 1, 2),
            heads=2, context_dim=width, image_channels=4, text_dim=width, text_positions=4, norm_groups=8,
        ),
        vae=VAEConfig(ch=16, ch_mult=(1, 2), num_res_blocks=1, z_channels=4, embed_dim=4, norm_groups=8),
        clip_text=tiny_clip_text_config(hidden_size=width, projection_dim=width, layers=2),
        clip_vision=tiny_clip_vision_config(hidden_size=width, projection_dim=width, layers=2),
        optimus=tiny_optimus_config(enc_vocab_size=100, dec_vocab_size=103, hidden=width, layers=2, heads=4,
                                    latent_dim=width),
        name="tiny",
    )


PRESETS: dict[str, Callable[[], VDConfig]] = {"full": full_config, "tiny": tiny_config}


def register_preset(name: str, make: Callable[[], VDConfig]) -> None:
    """Add a named preset (the nano model registers ``"nano"``)."""
    if name in PRESETS and PRESETS[name] is not make:
        raise ValueError(f"a VD config preset named {name!r} already exists")
    PRESETS[name] = make


def preset(name: str) -> VDConfig:
    """A fresh config for a named preset ("full", "tiny", ...)."""
    if name not in PRESETS:
        raise ValueError(f"unknown VD config preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]()


# ---------------------------------------------------------------------------
# From a diffusers folder's config.json files
# ---------------------------------------------------------------------------

# diffusers UNet options that change the network in ways our UNet does not implement.
_UNSUPPORTED_UNET = {
    "use_linear_projection": False, "dual_cross_attention": False, "only_cross_attention": False,
    "class_embed_type": None, "addition_embed_type": None, "time_embedding_type": "positional",
    "resnet_time_scale_shift": "default", "flip_sin_to_cos": True, "freq_shift": 0,
    "upcast_attention": False, "encoder_hid_dim": None, "num_class_embeds": None,
    "center_input_sample": False, "act_fn": "silu", "mid_block_scale_factor": 1, "downsample_padding": 1,
    "conv_in_kernel": 3, "conv_out_kernel": 3,
}
_MID_BLOCKS = (None, "UNetMidBlock2DCrossAttn", "UNetMidBlockFlatCrossAttn")


def _unet_fields(cfg: Mapping[str, Any], what: str) -> dict[str, Any]:
    for key, ok in _UNSUPPORTED_UNET.items():
        value = cfg.get(key, ok)
        values = value if isinstance(value, (list, tuple)) else [value]  # per-level lists
        if any(v != ok for v in values):
            raise ValueError(f"{what} config.json sets {key}={value!r}, which vdnodes' UNet does not "
                             f"implement (VD uses {ok!r})")
    if cfg.get("mid_block_type") not in _MID_BLOCKS:
        raise ValueError(f"{what}: mid_block_type {cfg['mid_block_type']!r} is not supported")
    channels = list(cfg.get("block_out_channels", (320, 640, 1280, 1280)))
    base = channels[0]
    if any(c % base for c in channels):
        raise ValueError(f"{what}: block_out_channels {channels} are not multiples of the first")
    heads = cfg.get("attention_head_dim", 8)  # diffusers' historical name for the head count
    if isinstance(heads, (list, tuple)):
        if len(set(heads)) != 1:
            raise ValueError(f"{what}: per-level head counts {heads} are not supported")
        heads = heads[0]
    depth = cfg.get("transformer_layers_per_block", 1)
    if not isinstance(depth, int):
        raise ValueError(f"{what}: per-level transformer depths {depth} are not supported")
    down = list(cfg.get("down_block_types", ()))
    return dict(
        model_channels=base,
        channel_mult=tuple(c // base for c in channels),
        num_res_blocks=int(cfg.get("layers_per_block", 2)),
        attention_levels=tuple(i for i, t in enumerate(down) if "CrossAttn" in t),
        heads=int(heads),
        context_dim=int(cfg.get("cross_attention_dim", 768)),
        transformer_depth=depth,
        norm_groups=int(cfg.get("norm_num_groups", 32)),
        norm_eps=float(cfg.get("norm_eps", 1e-5)),
    )


def unet_config_from_diffusers(image_unet: Mapping[str, Any], text_unet: Mapping[str, Any] | None,
                               text_positions: int = 4) -> UNetConfig:
    """``UNetConfig`` from ``image_unet/config.json`` (+ ``text_unet/config.json``)."""
    fields = _unet_fields(image_unet, "image_unet")
    if image_unet.get("in_channels", 4) != image_unet.get("out_channels", 4):
        raise ValueError("image_unet: in_channels and out_channels differ; VD predicts eps of its input")
    fields["image_channels"] = int(image_unet.get("in_channels", 4))
    if text_unet is not None:
        other = _unet_fields(text_unet, "text_unet")
        differ = sorted(k for k in fields if k in other and other[k] != fields[k])
        if differ:
            raise ValueError(f"image_unet and text_unet configs differ in {differ}; VD's two UNets "
                             "must share one slot schedule")
        dim = text_unet.get("in_channels", 768)
        fields["text_dim"] = int(dim[0] if isinstance(dim, (list, tuple)) else dim)
    fields["text_positions"] = text_positions
    return UNetConfig(**fields)


def vae_config_from_diffusers(vae: Mapping[str, Any]) -> VAEConfig:
    """``VAEConfig`` from a diffusers ``AutoencoderKL`` ``config.json``."""
    channels = list(vae.get("block_out_channels", (128, 256, 512, 512)))
    base = channels[0]
    latent = int(vae.get("latent_channels", 4))
    return VAEConfig(
        in_channels=int(vae.get("in_channels", 3)), out_channels=int(vae.get("out_channels", 3)),
        ch=base, ch_mult=tuple(c // base for c in channels), num_res_blocks=int(vae.get("layers_per_block", 2)),
        z_channels=latent, embed_dim=latent, norm_groups=int(vae.get("norm_num_groups", 32)),
        scale_factor=float(vae.get("scaling_factor", 0.18215)),
    )


def config_from_diffusers(configs: Mapping[str, Mapping[str, Any]], *, base: VDConfig | None = None) -> VDConfig:
    """``VDConfig`` from the ``config.json`` dicts of a diffusers VD folder, by component name.

    Components that are absent (diffusers has no Optimus at all) keep ``base``'s
    config (default: full size).
    """
    base = base or full_config()
    unet = base.unet
    if "image_unet" in configs:
        unet = unet_config_from_diffusers(configs["image_unet"], configs.get("text_unet"), base.unet.text_positions)
    return VDConfig(
        unet=unet,
        vae=vae_config_from_diffusers(configs["vae"]) if "vae" in configs else base.vae,
        clip_text=(CLIPTextConfig.from_dict(dict(configs["text_encoder"]))
                   if "text_encoder" in configs else base.clip_text),
        clip_vision=(CLIPVisionConfig.from_dict(dict(configs["image_encoder"]))
                     if "image_encoder" in configs else base.clip_vision),
        optimus=base.optimus,
        name="diffusers",
    )
