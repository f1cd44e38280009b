"""Checkpoint key maps for the multi-flow UNet, generated from its slot schedule.

Three naming schemes hold VD's UNet weights (vd-architecture.md sections 7.2-7.5):
- v1 ``.pth``: ``model.diffusion_model.{time_embed, unet_image, unet_text}.*`` in the
  LDM ``input_blocks / middle_block / output_blocks / out`` layout;
- v2 ``.pth``: ``diffuser.{image,text}.{data_blocks.N.0, context_blocks.N.0}.*``;
- diffusers: ``image_unet`` (``UNet2DConditionModel``) and ``text_unet``
  (``UNetFlatConditionModel``), whose attentions are the *context* group of their
  own modality and whose ``time_embedding`` is the global group (the text UNet's
  copy is ignorable: ``DIFFUSERS_TEXT_UNET_IGNORE``).

Each function returns a ``KeyMap`` (source prefix -> our prefix, see ``keymap.py``).
Shapes that differ only by singleton dims (text 1x1 convs vs our Linears) are left to
``keymap.fit_shape``. Only key names live here: no tensors, no loading.
"""

from __future__ import annotations

from collections.abc import Sequence

from vdnodes.model.keymap import KeyMap
from vdnodes.model.unet import ContextSlot, DataSlot, UNetConfig, UNetLayout, build_layout

# LDM ResBlock sub-module names -> ours (ours are diffusers' names).
LDM_RESBLOCK = {
    "in_layers.0.": "norm1.",
    "in_layers.2.": "conv1.",
    "emb_layers.1.": "time_emb_proj.",
    "out_layers.0.": "norm2.",
    "out_layers.3.": "conv2.",
    "skip_connection.": "conv_shortcut.",
}

# Where the weight of each sampling layer sits below its slot prefix. Our in/down/up
# layers hold a bare weight/bias; the image checkpoints nest the conv one level deeper.
SAMPLER_SUFFIX = {
    ("ldm", "image"): {"in": "", "down": "op.", "up": "conv."},
    ("diffusers", "image"): {"in": "", "down": "conv.", "up": "conv."},
    ("ldm", "text"): {"in": "", "down": "", "up": ""},
    ("diffusers", "text"): {"in": "", "down": "", "up": ""},
}

DIFFUSERS_TEXT_UNET_IGNORE = ("time_embedding.",)

Modalities = Sequence[str]
BOTH = ("image", "text")


def layout_of(config: UNetConfig) -> UNetLayout:
    """The slot schedule a UNet of ``config`` is built on (the same one ``UNet`` builds)."""
    return build_layout(config.model_channels, config.channel_mult, config.num_res_blocks, config.attention_levels)


def _data_entries(family: str, modality: str, slot: DataSlot, src: str, dst: str, head: tuple[str, str]) -> KeyMap:
    """Map one data slot. ``src`` is the slot's source prefix; ``head`` = source (norm, out) prefixes."""
    if slot.kind == "res":
        if family == "ldm":
            return {src + a: dst + b for a, b in LDM_RESBLOCK.items()}
        return {src: dst}
    if slot.kind == "head":
        return {head[0]: dst + "norm.", head[1]: dst + "out."}
    return {src + SAMPLER_SUFFIX[(family, modality)][slot.kind]: dst}


def ldm_slot_names(layout: UNetLayout) -> tuple[list[str], list[str]]:
    """LDM prefixes of every data slot and context slot, by walking the schedule.

    Each encoder push closes one ``input_blocks`` entry, the middle is one
    ``middle_block``, each decoder pop opens one ``output_blocks`` entry. The head's
    prefix is ``out.`` (its norm/conv are ``out.0`` / ``out.2``).
    """
    data = [""] * len(layout.data_slots)
    ctx = [""] * len(layout.context_slots)
    in_block, out_block, sub, mid_sub = 0, -1, 0, 0
    for step in layout.steps:
        slot = layout.data_slots[step.slot] if step.kind == "data" else layout.context_slots[step.slot]
        names = data if step.kind == "data" else ctx
        if slot.part in ("in", "down"):
            names[step.slot] = f"input_blocks.{in_block}.{sub}."
            sub += 1
            if step.push:
                in_block, sub = in_block + 1, 0
        elif slot.part == "mid":
            names[step.slot] = f"middle_block.{mid_sub}."
            mid_sub += 1
        elif slot.part == "up":
            if step.pop:
                out_block, sub = out_block + 1, 0
            names[step.slot] = f"output_blocks.{out_block}.{sub}."
            sub += 1
        else:
            names[step.slot] = "out."
    return data, ctx


def diffusers_slot_names(layout: UNetLayout) -> tuple[list[str], list[str]]:
    """diffusers prefixes of every data slot and context slot (head: ``conv_out.``)."""
    last = max(s.level for s in layout.data_slots)

    def name(s: DataSlot | ContextSlot, leaf: str) -> str:
        if s.part == "in":
            return "conv_in."
        if s.part == "out":
            return "conv_out."
        if s.part == "mid":
            return f"mid_block.{leaf}.{s.index}."
        block = f"down_blocks.{s.level}" if s.part == "down" else f"up_blocks.{last - s.level}"
        if leaf.endswith("samplers"):
            return f"{block}.{leaf}.0."
        return f"{block}.{leaf}.{s.index}."

    leaves = {"down": "downsamplers", "up": "upsamplers"}
    data = [name(s, leaves.get(s.kind, "resnets")) for s in layout.data_slots]
    ctx = [name(s, "attentions") for s in layout.context_slots]
    return data, ctx


def vd_v1_keymap(
    config: UNetConfig = UNetConfig(),
    *,
    data: Modalities = BOTH,
    context: Modalities = BOTH,
    prefix: str = "model.diffusion_model.",
) -> KeyMap:
    """The original Nov 2022 ``.pth`` (``model.diffusion_model.unet_{image,text}.*``)."""
    layout = layout_of(config)
    data_names, ctx_names = ldm_slot_names(layout)
    keymap: KeyMap = {
        prefix + "time_embed.0.": "time_embed.linear_1.",
        prefix + "time_embed.2.": "time_embed.linear_2.",
    }
    for m in data:
        base = f"{prefix}unet_{m}."
        for i, (slot, name) in enumerate(zip(layout.data_slots, data_names)):
            head = (base + "out.0.", base + "out.2.")
            keymap.update(_data_entries("ldm", m, slot, base + name, f"data.{m}.blocks.{i}.", head))
    for m in context:
        for j, name in enumerate(ctx_names):
            keymap[f"{prefix}unet_{m}.{name}"] = f"context.{m}.blocks.{j}."
    return keymap


def vd_v2_keymap(
    config: UNetConfig = UNetConfig(),
    *,
    data: Modalities = BOTH,
    context: Modalities = BOTH,
    prefix: str = "diffuser.",
) -> KeyMap:
    """The Feb 2023 ``.pth`` (``diffuser.{image,text}.{data,context}_blocks.N.0.*``)."""
    layout = layout_of(config)
    keymap: KeyMap = {
        prefix + "image.time_embed.0.": "time_embed.linear_1.",
        prefix + "image.time_embed.2.": "time_embed.linear_2.",
    }
    for m in data:
        for i, slot in enumerate(layout.data_slots):
            src = f"{prefix}{m}.data_blocks.{i}.0."
            keymap.update(_data_entries("ldm", m, slot, src, f"data.{m}.blocks.{i}.", (src + "0.", src + "2.")))
    for m in context:
        for j in range(len(layout.context_slots)):
            keymap[f"{prefix}{m}.context_blocks.{j}.0."] = f"context.{m}.blocks.{j}."
    return keymap


def diffusers_keymap(
    modality: str,
    config: UNetConfig = UNetConfig(),
    *,
    data: bool = True,
    context: bool = True,
    time: bool | None = None,
    prefix: str = "",
) -> KeyMap:
    """One diffusers VD UNet: ``modality`` "image" (``image_unet``) or "text" (``text_unet``).

    Its resnets/samplers/conv_in/conv_out are ``data.<modality>``, its attentions are
    ``context.<modality>``. ``time`` (default: only for the image UNet) maps its
    ``time_embedding`` to our single global copy.
    """
    if modality not in BOTH:
        raise ValueError(f"diffusers VD UNets exist for {list(BOTH)}, not {modality!r}")
    layout = layout_of(config)
    data_names, ctx_names = diffusers_slot_names(layout)
    keymap: KeyMap = {}
    if time if time is not None else modality == "image":
        keymap[prefix + "time_embedding.linear_1."] = "time_embed.linear_1."
        keymap[prefix + "time_embedding.linear_2."] = "time_embed.linear_2."
    if data:
        head = (prefix + "conv_norm_out.", prefix + "conv_out.")
        for i, (slot, name) in enumerate(zip(layout.data_slots, data_names)):
            dst = f"data.{modality}.blocks.{i}."
            keymap.update(_data_entries("diffusers", modality, slot, prefix + name, dst, head))
    if context:
        for j, name in enumerate(ctx_names):
            keymap[prefix + name] = f"context.{modality}.blocks.{j}."
    return keymap
