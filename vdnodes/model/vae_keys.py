"""Checkpoint key maps for the image VAE (kl-f8): other people's names -> our `ImageVAE` names.

What it is: prefix maps (see `keymap.py`) generated from two small tables. `_slots` lists every
weight-holding module of the VAE once, with its name in each naming scheme side by side (VD spec
`vd-architecture.md` §7.3, last paragraph); the `_*_RESNET` / `_*_ATTN` tables rename the leaves
inside a ResnetBlock or the mid-block attention. Layouts:

- ``ldm``: LDM / original `kl-f8.pth` (`encoder.down.0.block.0.nin_shortcut`,
  `mid.attn_1.{norm,q,k,v,proj_out}` stored as 1x1 convs, decoder `up.{n-1-i}`, `norm_out`).
- ``vd-v1``: the same names under `autokl.`, as in VD's v1 full checkpoint.
- ``diffusers``: `AutoencoderKL` (`down_blocks.i.resnets.j`, `downsamplers.0`,
  `mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}`), plus the legacy attention names
  `query/key/value/proj_attn` that old diffusers folders (VD's, saved with diffusers 0.8) use.

The attention 1x1-conv vs Linear difference is a shape difference, not a name difference: the
loader reconciles it with `keymap.fit_shape`.

What it is not: no torch, no file I/O, no loading (that is `checkpoints.py`).
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from vdnodes.model.keymap import KeyMap

if TYPE_CHECKING:
    from vdnodes.model.vae import VAEConfig


class VAELayout(str, Enum):
    LDM = "ldm"
    VD_V1 = "vd-v1"
    DIFFUSERS = "diffusers"


# Leaves inside one ResnetBlock / the mid AttnBlock: (source leaf, our leaf).
_LDM_RESNET = (("norm1", "norm1"), ("conv1", "conv1"), ("norm2", "norm2"), ("conv2", "conv2"))
_LDM_SHORTCUT = ("nin_shortcut", "shortcut")
_LDM_ATTN = (("norm", "norm"), ("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out"))

_DIFFUSERS_RESNET = _LDM_RESNET
_DIFFUSERS_SHORTCUT = ("conv_shortcut", "shortcut")
_DIFFUSERS_ATTN = (
    ("group_norm", "norm"),
    ("to_q", "to_q"),
    ("to_k", "to_k"),
    ("to_v", "to_v"),
    ("to_out.0", "to_out"),
    # Older diffusers `AttentionBlock` names (VD's folder); group_norm kept its name.
    ("query", "to_q"),
    ("key", "to_k"),
    ("value", "to_v"),
    ("proj_attn", "to_out"),
)

_LEAVES = {
    VAELayout.LDM: (_LDM_RESNET, _LDM_SHORTCUT, _LDM_ATTN),
    VAELayout.DIFFUSERS: (_DIFFUSERS_RESNET, _DIFFUSERS_SHORTCUT, _DIFFUSERS_ATTN),
}

# A slot: (kind, ours, ldm, diffusers). kind is "module" (renamed as a whole), "resnet",
# "resnet+shortcut" (in != out channels, so it has a 1x1 skip conv) or "attn".
Slot = tuple[str, str, str, str]


def _resnet_kind(c_in: int, c_out: int) -> str:
    return "resnet" if c_in == c_out else "resnet+shortcut"


def _mid_slots(part: str) -> list[Slot]:
    # The mid block keeps its width, so its ResnetBlocks have no shortcut conv.
    mid, ldm = f"{part}.mid_block", f"{part}.mid"
    return [
        ("resnet", f"{mid}.resnets.0", f"{ldm}.block_1", f"{mid}.resnets.0"),
        ("attn", f"{mid}.attn", f"{ldm}.attn_1", f"{mid}.attentions.0"),
        ("resnet", f"{mid}.resnets.1", f"{ldm}.block_2", f"{mid}.resnets.1"),
    ]


def _slots(config: VAEConfig) -> list[Slot]:
    """Every weight-holding module of `ImageVAE(config)`, named in each layout."""
    chans = [config.ch * m for m in config.ch_mult]
    n = len(chans)
    slots: list[Slot] = [("module", "encoder.conv_in", "encoder.conv_in", "encoder.conv_in")]

    # Encoder: level i is LDM `down.i` and diffusers `down_blocks.i`.
    c_in = chans[0]
    for i, c in enumerate(chans):
        for j in range(config.num_res_blocks):
            slots.append((
                _resnet_kind(c_in, c),
                f"encoder.down_blocks.{i}.resnets.{j}",
                f"encoder.down.{i}.block.{j}",
                f"encoder.down_blocks.{i}.resnets.{j}",
            ))
            c_in = c
        if i < n - 1:
            slots.append((
                "module",
                f"encoder.down_blocks.{i}.downsample.conv",
                f"encoder.down.{i}.downsample.conv",
                f"encoder.down_blocks.{i}.downsamplers.0.conv",
            ))
    slots += _mid_slots("encoder")
    slots += [
        ("module", "encoder.norm_out", "encoder.norm_out", "encoder.conv_norm_out"),
        ("module", "encoder.conv_out", "encoder.conv_out", "encoder.conv_out"),
        ("module", "quant_conv", "quant_conv", "quant_conv"),
        ("module", "post_quant_conv", "post_quant_conv", "post_quant_conv"),
        ("module", "decoder.conv_in", "decoder.conv_in", "decoder.conv_in"),
    ]
    slots += _mid_slots("decoder")

    # Decoder: our/diffusers level i runs i-th (lowest resolution first) and is LDM `up.{n-1-i}`.
    c_in = chans[-1]
    for i in range(n):
        c, ldm_level = chans[n - 1 - i], n - 1 - i
        for j in range(config.num_res_blocks + 1):
            slots.append((
                _resnet_kind(c_in, c),
                f"decoder.up_blocks.{i}.resnets.{j}",
                f"decoder.up.{ldm_level}.block.{j}",
                f"decoder.up_blocks.{i}.resnets.{j}",
            ))
            c_in = c
        if i < n - 1:
            slots.append((
                "module",
                f"decoder.up_blocks.{i}.upsample.conv",
                f"decoder.up.{ldm_level}.upsample.conv",
                f"decoder.up_blocks.{i}.upsamplers.0.conv",
            ))
    slots += [
        ("module", "decoder.norm_out", "decoder.norm_out", "decoder.conv_norm_out"),
        ("module", "decoder.conv_out", "decoder.conv_out", "decoder.conv_out"),
    ]
    return slots


def vae_keymap(layout: VAELayout | str, config: VAEConfig, *, prefix: str = "") -> KeyMap:
    """Source prefix -> our prefix for every module of `ImageVAE(config)` in `layout`.

    `prefix` is prepended to every source name (e.g. "first_stage_model." for SD-style LDM
    checkpoints, "vae." for a whole diffusers pipeline state); layout "vd-v1" implies "autokl.".
    Attention weights may need `keymap.fit_shape` (LDM stores them as 1x1 convs).
    """
    try:
        layout = VAELayout(layout)
    except ValueError:
        known = ", ".join(repr(x.value) for x in VAELayout)
        raise ValueError(f"unknown VAE key layout {layout!r}; known layouts: {known}") from None
    if layout is VAELayout.VD_V1:
        layout, prefix = VAELayout.LDM, prefix + "autokl."
    resnet, shortcut, attn = _LEAVES[layout]
    leaves_of_kind = {
        "module": (("", ""),),
        "resnet": resnet,
        "resnet+shortcut": resnet + (shortcut,),
        "attn": attn,
    }
    column = 2 if layout is VAELayout.LDM else 3

    keymap: KeyMap = {}
    for slot in _slots(config):
        kind, ours, src = slot[0], slot[1], slot[column]
        for src_leaf, our_leaf in leaves_of_kind[kind]:
            s = f"{src}.{src_leaf}." if src_leaf else f"{src}."
            o = f"{ours}.{our_leaf}." if our_leaf else f"{ours}."
            keymap[prefix + s] = o
    return keymap
