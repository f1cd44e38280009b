"""UNet key maps: every layout covers every parameter of ours exactly once, with the right shapes.

References: diffusers' own modules on ``meta`` (their key sets), diffusers' LDM->diffusers
converter (an independent reading of the v1 names), and the tables of vd-architecture.md
sections 7.3 and 7.5 typed in by hand below.
"""

from __future__ import annotations

import pytest
import torch

from vdnodes.model.keymap import fit_shape, remap, rename_key
from vdnodes.model.unet import UNet, UNetConfig
from vdnodes.model.unet_keys import DIFFUSERS_TEXT_UNET_IGNORE, diffusers_keymap, vd_v1_keymap, vd_v2_keymap

diffusers = pytest.importorskip("diffusers")
from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint  # noqa: E402
from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import UNetFlatConditionModel  # noqa: E402

FULL = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, attention_head_dim=8,
            cross_attention_dim=768, flip_sin_to_cos=True, freq_shift=0)


@pytest.fixture(scope="module")
def ours() -> dict[str, torch.Size]:
    with torch.device("meta"):
        return {k: v.shape for k, v in UNet(UNetConfig()).state_dict().items()}


@pytest.fixture(scope="module")
def reference() -> dict[str, dict[str, torch.Tensor]]:
    with torch.device("meta"):
        image = UNet2DConditionModel(sample_size=64, **FULL)
        text = UNetFlatConditionModel(
            in_channels=(768, 1, 1), out_channels=(768, 1, 1),
            down_block_types=("CrossAttnDownBlockFlat",) * 3 + ("DownBlockFlat",),
            up_block_types=("UpBlockFlat",) + ("CrossAttnUpBlockFlat",) * 3, **FULL,
        )
    return {"image": image.state_dict(), "text": text.state_dict()}


def invert(keymap: dict[str, str], keys) -> dict[str, str]:
    """Source name of each of our keys (longest destination prefix wins)."""
    index = sorted(keymap.items(), key=lambda kv: len(kv[1]), reverse=True)
    out = {}
    for key in keys:
        src, dst = next((s, d) for s, d in index if key.startswith(d))
        out[src + key[len(dst):]] = key
    return out


def meta(shape) -> torch.Tensor:
    return torch.empty(shape, device="meta")


def test_diffusers_layouts_cover_every_parameter_once(ours, reference):
    renamed: dict[str, torch.Tensor] = {}
    for modality in ("image", "text"):
        prefix = f"{modality}_unet."
        source = {prefix + k: v for k, v in reference[modality].items()}
        ignore = [prefix + p for p in DIFFUSERS_TEXT_UNET_IGNORE] if modality == "text" else []
        part, unmatched = remap(source, diffusers_keymap(modality, prefix=prefix), ignore=ignore)
        assert unmatched == []
        assert not set(part) & set(renamed), "two sources give the same weight"
        renamed.update(part)
    assert set(renamed) == set(ours)
    wrong = {k: (tuple(v.shape), tuple(ours[k])) for k, v in renamed.items()
             if fit_shape(v, tuple(ours[k])).shape != ours[k]}
    assert wrong == {}
    # Only the text UNet's own copy of the time MLP is left out.
    assert sum(k.startswith("time_embedding.") for k in reference["text"]) == 4


def test_v1_image_names_agree_with_diffusers_ldm_converter(ours):
    """Our v1 names, converted by diffusers' SD (LDM) converter, land back on the same weights."""
    image_keys = [k for k in ours if k.startswith(("time_embed.", "data.image.", "context.image."))]
    v1 = invert(vd_v1_keymap(data=("image",), context=("image",)), image_keys)
    assert len(v1) == len(image_keys)
    ldm = {k.replace("unet_image.", ""): ours_key for k, ours_key in v1.items()}  # SD layout: no unet_image.
    converted = convert_ldm_unet_checkpoint(ldm, {"layers_per_block": 2})
    back, unmatched = remap(converted, diffusers_keymap("image"))
    assert unmatched == [] and len(converted) == len(image_keys)
    assert all(back[k] == k for k in image_keys)


@pytest.mark.parametrize("make", [vd_v1_keymap, vd_v2_keymap])
def test_original_layouts_are_a_bijection_onto_ours(ours, make):
    source = invert(make(), ours)
    assert len(source) == len(ours)  # no two of our weights share a source name
    renamed, unmatched = remap({src: src for src in source}, make())  # value: where it came from
    assert unmatched == [] and renamed == {ours_key: src for src, ours_key in source.items()}


REPRESENTATIVE = {  # section 7.5
    "model.diffusion_model.time_embed.0.weight": (1280, 320),
    "model.diffusion_model.unet_image.input_blocks.0.0.weight": (320, 4, 3, 3),
    "model.diffusion_model.unet_image.input_blocks.1.0.in_layers.2.weight": (320, 320, 3, 3),
    "model.diffusion_model.unet_image.input_blocks.1.0.emb_layers.1.weight": (320, 1280),
    "model.diffusion_model.unet_image.input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
    "model.diffusion_model.unet_image.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
    "model.diffusion_model.unet_image.input_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight": (2560, 320),
    "model.diffusion_model.unet_image.input_blocks.3.0.op.weight": (320, 320, 3, 3),
    "model.diffusion_model.unet_image.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
    "model.diffusion_model.unet_image.out.2.weight": (4, 320, 3, 3),
    "model.diffusion_model.unet_text.input_blocks.0.0.weight": (1280, 768),
    "model.diffusion_model.unet_text.input_blocks.1.0.in_layers.0.weight": (1280,),
    "model.diffusion_model.unet_text.input_blocks.1.0.in_layers.2.weight": (1280, 1280, 1, 1),
    "model.diffusion_model.unet_text.input_blocks.1.0.emb_layers.1.weight": (1280, 1280),
    "model.diffusion_model.unet_text.input_blocks.1.1.norm.weight": (320,),
    "model.diffusion_model.unet_text.input_blocks.1.1.transformer_blocks.0.attn2.to_v.weight": (320, 768),
    "model.diffusion_model.unet_text.input_blocks.3.0.weight": (1280, 1280),
    "model.diffusion_model.unet_text.middle_block.0.in_layers.2.weight": (5120, 5120, 1, 1),
    "model.diffusion_model.unet_text.output_blocks.0.0.skip_connection.weight": (5120, 10240, 1, 1),
    "model.diffusion_model.unet_text.out.0.weight": (320,),
    "model.diffusion_model.unet_text.out.2.weight": (768, 1280),
    "diffuser.image.data_blocks.3.0.op.weight": (320, 320, 3, 3),
    "diffuser.image.data_blocks.17.0.conv.weight": (1280, 1280, 3, 3),
    "diffuser.image.data_blocks.29.0.2.weight": (4, 320, 3, 3),
    "diffuser.image.context_blocks.6.0.proj_in.weight": (1280, 1280, 1, 1),
    "diffuser.text.data_blocks.0.0.weight": (1280, 768),
    "diffuser.text.data_blocks.9.0.weight": (5120, 5120),
    "diffuser.text.data_blocks.29.0.2.weight": (768, 1280),
    "diffuser.text.context_blocks.6.0.transformer_blocks.0.attn2.to_v.weight": (1280, 768),
    "text_unet.conv_in.weight": (1280, 768),
    "text_unet.down_blocks.0.downsamplers.0.weight": (1280, 1280),
    "text_unet.up_blocks.0.upsamplers.0.weight": (5120, 5120),
    "text_unet.up_blocks.1.resnets.0.conv_shortcut.weight": (5120, 10240, 1, 1),
    "text_unet.conv_out.weight": (768, 1280),
    "image_unet.down_blocks.0.downsamplers.0.conv.weight": (320, 320, 3, 3),
}


def test_representative_keys_of_section_7_5(ours):
    keymap = {**vd_v1_keymap(), **vd_v2_keymap(),
              **diffusers_keymap("image", prefix="image_unet."), **diffusers_keymap("text", prefix="text_unet.")}
    for key, shape in REPRESENTATIVE.items():
        name = rename_key(key, keymap)
        assert name in ours, f"{key} -> {name}"
        assert fit_shape(meta(shape), tuple(ours[name])).shape == ours[name], f"{key}: {shape} vs {ours[name]}"


# Section 7.3, typed from the table: (v2 slot, v1 block, diffusers module), identical for image and text.
SLOT_TABLE = (
    [("data_blocks.0.0", "input_blocks.0.0", "conv_in")]
    + [(f"data_blocks.{d}.0", f"input_blocks.{d}.0", f"down_blocks.{i // 2}.resnets.{i % 2}")
       for i, d in enumerate((1, 2, 4, 5, 7, 8, 10, 11))]
    + [(f"data_blocks.{d}.0", f"input_blocks.{d}.0", f"down_blocks.{i}.downsamplers.0")
       for i, d in enumerate((3, 6, 9))]
    + [("data_blocks.12.0", "middle_block.0", "mid_block.resnets.0"),
       ("data_blocks.13.0", "middle_block.2", "mid_block.resnets.1")]
    + [(f"data_blocks.{d}.0", f"output_blocks.{i}.0", f"up_blocks.{i // 3}.resnets.{i % 3}")
       for i, d in enumerate((14, 15, 16, 18, 19, 20, 22, 23, 24, 26, 27, 28))]
    + [(f"data_blocks.{d}.0", f"output_blocks.{b}.{s}", f"up_blocks.{i}.upsamplers.0")
       for i, (d, b, s) in enumerate(((17, 2, 1), (21, 5, 2), (25, 8, 2)))]
    + [("data_blocks.29.0.0", "out.0", "conv_norm_out"), ("data_blocks.29.0.2", "out.2", "conv_out")]
    + [(f"context_blocks.{c}.0", f"input_blocks.{b}.1", f"down_blocks.{c // 2}.attentions.{c % 2}")
       for c, b in enumerate((1, 2, 4, 5, 7, 8))]
    + [("context_blocks.6.0", "middle_block.1", "mid_block.attentions.0")]
    + [(f"context_blocks.{7 + i}.0", f"output_blocks.{3 + i}.1", f"up_blocks.{1 + i // 3}.attentions.{i % 3}")
       for i in range(9)]
)


def leaf(row: tuple[str, str, str], modality: str, scheme: str) -> str:
    """A parameter name below the slot's prefix, in the naming of ``scheme``."""
    v2, _, dif = row
    if "context" in v2:
        return "norm.weight"
    if v2.startswith("data_blocks.29"):
        return "weight"
    if "resnets" in dif:
        return "norm1.weight" if scheme == "diffusers" else "in_layers.0.weight"
    if modality == "text" or dif == "conv_in":
        return "weight"
    if "downsamplers" in dif:
        return "conv.weight" if scheme == "diffusers" else "op.weight"
    return "conv.weight"  # upsamplers


@pytest.mark.parametrize("modality", ["image", "text"])
def test_three_layouts_agree_on_the_slot_table_of_section_7_3(ours, modality):
    v1, v2 = vd_v1_keymap(), vd_v2_keymap()
    dif = diffusers_keymap(modality)
    for row in SLOT_TABLE:
        names = {
            rename_key(f"diffuser.{modality}.{row[0]}.{leaf(row, modality, 'ldm')}", v2),
            rename_key(f"model.diffusion_model.unet_{modality}.{row[1]}.{leaf(row, modality, 'ldm')}", v1),
            rename_key(f"{row[2]}.{leaf(row, modality, 'diffusers')}", dif),
        }
        assert len(names) == 1 and names.pop() in ours, row


def test_flow_subsets_map_only_their_groups():
    keymap = vd_v2_keymap(data=("image",), context=("text",))
    groups = {".".join(v.split(".")[:2]) for v in keymap.values()}
    assert groups == {"time_embed.linear_1", "time_embed.linear_2", "data.image", "context.text"}
    with pytest.raises(ValueError, match="not 'audio'"):
        diffusers_keymap("audio")
