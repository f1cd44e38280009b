"""Generate the key/shape manifests of the real Versatile Diffusion checkpoints.

A manifest is the sorted ``{key: shape}`` of one checkpoint layout. The tests in
``tests/model/test_checkpoints.py`` check that every layout maps onto our
full-size model (built on ``meta``) with every parameter covered exactly once
and every shape equal. No weights are needed: every module here is built on the
``meta`` device.

Where the keys come from
- **Measured** (built from the reference classes at the real full-size configs,
  vd-architecture.md sections 2-4 and 7.4):
  ``diffusers_image_unet`` (``UNet2DConditionModel``), ``diffusers_text_unet``
  (``UNetFlatConditionModel``), ``diffusers_vae`` (``AutoencoderKL``),
  ``diffusers_text_encoder`` (``CLIPTextModelWithProjection``),
  ``diffusers_image_encoder`` (``CLIPVisionModelWithProjection``).
- **Derived** (the original SHI-Labs code cannot be installed, so these key sets
  are obtained by applying the documented renaming of section 7.3 to the
  measured diffusers/transformers key sets; they have *not* been compared with
  the real files byte for byte):
  ``vd_v2`` (``vd-four-flow-v1-0.pth``, Feb 2023: the two UNets),
  ``vd_v1_full`` (``vd-four-flow-v1-0-deprecated.pth``: UNets + kl-f8 + Optimus +
  CLIP + the DDPM schedule buffers), ``kl_f8`` (``kl-f8.pth``) and
  ``vd_v2_complete`` (a whole v2 model's ``state_dict()``: the UNets, kl-f8, Optimus
  and two CLIPModels), ``optimus_vae`` (``optimus-vae.pth``, from transformers ``BertModel`` and
  ``GPT2LMHeadModel`` plus Optimus' ``linear``/``linear_emb`` adapters and the
  old GPT-2 causal-mask buffers).

The renaming below is written from the section 7.3 table on purpose, apart from
the key maps in ``vdnodes/model``: the manifest tests then compare two
independent readings of the same table.

Usage: ``python scripts/make_manifests.py [--out tests/model/manifests]``.
diffusers is a dev dependency; this script is not part of the package.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
from pathlib import Path

Shape = tuple[int, ...]
Manifest = dict[str, Shape]

GZIP_ABOVE = 200_000  # bytes; bigger manifests are stored as .json.gz

# DDPM schedule buffers that LDM-style wrappers register at the top level
# (SHI-Labs lib/model_zoo/sd.py DDPM.register_schedule; lvlb_weights is not
# persistent). 1000 timesteps.
SCHEDULE_BUFFERS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
    "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
)


# ---------------------------------------------------------------------------
# 1. Measured manifests: reference classes on the meta device
# ---------------------------------------------------------------------------

def shapes_of(module) -> Manifest:
    """``{key: shape}`` of a module's state dict (persistent buffers included)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def clip_configs():
    """CLIP ViT-L/14 (``openai/clip-vit-large-patch14``) text and vision configs."""
    from transformers import CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, projection_dim=768,
        hidden_act="quick_gelu", layer_norm_eps=1e-5)
    vision = CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu",
        layer_norm_eps=1e-5)
    return text, vision


def measured() -> dict[str, Manifest]:
    """The five diffusers-folder components plus BERT/GPT-2/CLIPModel references."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import (
        UNetFlatConditionModel,
    )
    from transformers import (
        BertConfig, BertModel, CLIPConfig, CLIPModel, CLIPTextModelWithProjection,
        CLIPVisionModelWithProjection, GPT2Config, GPT2LMHeadModel,
    )

    # The fields of the shi-labs/versatile-diffusion image_unet/text_unet/vae config.json
    # (diffusers' convert_versatile_diffusion_to_diffusers.py writes them).
    unet_common = dict(
        sample_size=None, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
        cross_attention_dim=768, attention_head_dim=8)
    text_cfg, vision_cfg = clip_configs()
    with torch.device("meta"):
        image_unet = UNet2DConditionModel(
            in_channels=4, out_channels=4,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, **unet_common)
        text_unet = UNetFlatConditionModel(
            in_channels=(768, 1, 1), out_channels=(768, 1, 1),
            down_block_types=("CrossAttnDownBlockFlat",) * 3 + ("DownBlockFlat",),
            up_block_types=("UpBlockFlat",) + ("CrossAttnUpBlockFlat",) * 3, **unet_common)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512), sample_size=256)
        text_encoder = CLIPTextModelWithProjection(text_cfg)
        image_encoder = CLIPVisionModelWithProjection(vision_cfg)
        clip_model = CLIPModel(CLIPConfig(
            text_config=text_cfg.to_dict(), vision_config=vision_cfg.to_dict(), projection_dim=768))
        # Optimus: BERT-base cased encoder, GPT-2 small decoder with 3 added tokens.
        bert = BertModel(BertConfig(vocab_size=28996), add_pooling_layer=True)
        gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50260))
    return {
        "diffusers_image_unet": shapes_of(image_unet),
        "diffusers_text_unet": shapes_of(text_unet),
        "diffusers_vae": shapes_of(vae),
        "diffusers_text_encoder": shapes_of(text_encoder),
        "diffusers_image_encoder": shapes_of(image_encoder),
        "_clip_model": shapes_of(clip_model),
        "_bert": shapes_of(bert),
        "_gpt2": shapes_of(gpt2),
    }


# ---------------------------------------------------------------------------
# 2. diffusers UNet -> original VD (v1 and v2) names, from the section 7.3 table
# ---------------------------------------------------------------------------

# ResBlock renames, diffusers -> LDM/VD (both code bases use LDM names).
RESNET_RENAMES = (
    ("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("time_emb_proj.", "emb_layers.1."),
    ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection."),
)


def unet_slot_table(flat: bool) -> list[tuple[str, str, str]]:
    """``(diffusers prefix, v1 prefix, v2 prefix)`` for every data/context slot.

    v1 prefixes are relative to ``unet_image.``/``unet_text.``; v2 prefixes to
    ``diffuser.<modality>.``. The time embedding is handled by the caller.
    """
    conv = "" if flat else "conv."   # image resamplers wrap a conv; text ones are bare Linears
    op = "" if flat else "op."       # the LDM image Downsample calls its conv "op"
    rows = [("conv_in.", "input_blocks.0.0.", "data_blocks.0.0.")]
    for level in range(4):
        for j in range(2):
            block = 3 * level + j + 1  # v1 input block index == v2 data slot index
            rows.append((f"down_blocks.{level}.resnets.{j}.", f"input_blocks.{block}.0.",
                         f"data_blocks.{block}.0."))
            if level < 3:
                rows.append((f"down_blocks.{level}.attentions.{j}.", f"input_blocks.{block}.1.",
                             f"context_blocks.{2 * level + j}.0."))
        if level < 3:
            block = 3 * level + 3
            rows.append((f"down_blocks.{level}.downsamplers.0.{conv}", f"input_blocks.{block}.0.{op}",
                         f"data_blocks.{block}.0.{op}"))
    rows += [
        ("mid_block.resnets.0.", "middle_block.0.", "data_blocks.12.0."),
        ("mid_block.attentions.0.", "middle_block.1.", "context_blocks.6.0."),
        ("mid_block.resnets.1.", "middle_block.2.", "data_blocks.13.0."),
    ]
    for level in range(4):  # diffusers up level 0 is the deepest
        for j in range(3):
            block = 3 * level + j
            rows.append((f"up_blocks.{level}.resnets.{j}.", f"output_blocks.{block}.0.",
                         f"data_blocks.{14 + 4 * level + j}.0."))
            if level > 0:
                rows.append((f"up_blocks.{level}.attentions.{j}.", f"output_blocks.{block}.1.",
                             f"context_blocks.{7 + 3 * (level - 1) + j}.0."))
        if level < 3:
            slot = 1 if level == 0 else 2  # after the attention block when there is one
            rows.append((f"up_blocks.{level}.upsamplers.0.{conv}",
                         f"output_blocks.{3 * level + 2}.{slot}.{conv}",
                         f"data_blocks.{17 + 4 * level}.0.{conv}"))
    rows += [
        ("conv_norm_out.", "out.0.", "data_blocks.29.0.0."),
        ("conv_out.", "out.2.", "data_blocks.29.0.2."),
    ]
    return rows


def _rename(key: str, rows: list[tuple[str, str]]) -> str | None:
    for src, dst in sorted(rows, key=lambda r: len(r[0]), reverse=True):
        if key.startswith(src):
            return dst + key[len(src):]
    return None


def unet_key_to_vd(key: str, flat: bool, version: str) -> str:
    """One diffusers UNet key in VD ``version`` ("v1"/"v2") names, relative to the UNet.

    The time embedding comes back as ``time_embed.{0,2}.*`` (the caller puts it on
    the v1 wrapper or the v2 image diffuser).
    """
    if key.startswith("time_embedding."):
        return (key.replace("time_embedding.linear_1.", "time_embed.0.")
                .replace("time_embedding.linear_2.", "time_embed.2."))
    col = {"v1": 1, "v2": 2}[version]
    new = _rename(key, [(r[0], r[col]) for r in unet_slot_table(flat)])
    if new is None:
        raise KeyError(f"no section 7.3 slot for diffusers key {key!r}")
    if ".resnets." in key:
        for a, b in RESNET_RENAMES:
            new = new.replace("." + a, "." + b)
    return new


def diffusers_unet_to_vd(manifest: Manifest, flat: bool, version: str) -> tuple[Manifest, Manifest]:
    """Split a diffusers UNet manifest into (time embedding, blocks) in VD v1/v2 names."""
    time: Manifest = {}
    blocks: Manifest = {}
    for key, shape in manifest.items():
        target = time if key.startswith("time_embedding.") else blocks
        target[unet_key_to_vd(key, flat, version)] = shape
    return time, blocks


# ---------------------------------------------------------------------------
# 3. diffusers AutoencoderKL -> LDM kl-f8 names
# ---------------------------------------------------------------------------

VAE_ATTN = (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."),
            ("to_out.0.", "proj_out."))


def vae_key_to_ldm(key: str, shape: Shape, n_levels: int = 4) -> tuple[str, Shape]:
    """One ``AutoencoderKL`` key (and shape) in LDM/kl-f8 names (attention as 1x1 convs)."""
    k = key
    k = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2.", k)
    k = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", k)
    k = re.sub(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.",
               lambda m: f"decoder.up.{n_levels - 1 - int(m[1])}.block.{m[2]}.", k)
    k = re.sub(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
               lambda m: f"decoder.up.{n_levels - 1 - int(m[1])}.upsample.", k)
    k = re.sub(r"\.mid_block\.resnets\.(\d+)\.", lambda m: f".mid.block_{int(m[1]) + 1}.", k)
    if ".mid_block.attentions.0." in k:
        k = k.replace(".mid_block.attentions.0.", ".mid.attn_1.")
        for a, b in VAE_ATTN:
            k = k.replace(".attn_1." + a, ".attn_1." + b)
        if k.endswith(".weight") and len(shape) == 2:
            shape = (*shape, 1, 1)  # LDM keeps q/k/v/proj_out as 1x1 convs
    k = k.replace(".conv_norm_out.", ".norm_out.").replace(".conv_shortcut.", ".nin_shortcut.")
    return k, shape


def diffusers_vae_to_ldm(manifest: Manifest, n_levels: int = 4) -> Manifest:
    """Rename an ``AutoencoderKL`` manifest to LDM/kl-f8 keys."""
    return dict(vae_key_to_ldm(k, s, n_levels) for k, s in manifest.items())


# ---------------------------------------------------------------------------
# 4. Assemble the derived layouts
# ---------------------------------------------------------------------------

def optimus_manifest(bert: Manifest, gpt2: Manifest) -> Manifest:
    """``optimus-vae.pth`` keys: BERT encoder + ``linear``, GPT-2 decoder + adapters."""
    out: Manifest = {}
    for key, shape in bert.items():
        if key.endswith(("position_ids", "token_type_ids")):  # absent in old BERT code
            continue
        out["encoder." + key] = shape
    out["encoder.linear.weight"] = (1536, 768)  # -> (mu, logvar); no bias
    for key, shape in gpt2.items():
        out["decoder." + key] = shape
    out["decoder.transformer.linear.weight"] = (9216, 768)      # latent -> 12 memory slots
    out["decoder.transformer.linear_emb.weight"] = (768, 768)   # latent -> embedding offset
    for layer in range(12):  # old GPT-2 registered its causal mask as a persistent buffer
        out[f"decoder.transformer.h.{layer}.attn.bias"] = (1, 1, 1024, 1024)
    return out


def derived(m: dict[str, Manifest]) -> dict[str, Manifest]:
    time_img, img_v2 = diffusers_unet_to_vd(m["diffusers_image_unet"], flat=False, version="v2")
    _, txt_v2 = diffusers_unet_to_vd(m["diffusers_text_unet"], flat=True, version="v2")
    _, img_v1 = diffusers_unet_to_vd(m["diffusers_image_unet"], flat=False, version="v1")
    _, txt_v1 = diffusers_unet_to_vd(m["diffusers_text_unet"], flat=True, version="v1")
    kl_f8 = diffusers_vae_to_ldm(m["diffusers_vae"])
    optimus = optimus_manifest(m["_bert"], m["_gpt2"])

    v2: Manifest = {}
    v2.update({"diffuser.image." + k: s for k, s in time_img.items()})
    v2.update({"diffuser.image." + k: s for k, s in img_v2.items()})
    v2.update({"diffuser.text." + k: s for k, s in txt_v2.items()})

    v1: Manifest = {}
    v1.update({"model.diffusion_model." + k: s for k, s in time_img.items()})
    v1.update({"model.diffusion_model.unet_image." + k: s for k, s in img_v1.items()})
    v1.update({"model.diffusion_model.unet_text." + k: s for k, s in txt_v1.items()})
    v1.update({"autokl." + k: s for k, s in kl_f8.items()})
    v1.update({"optimus." + k: s for k, s in optimus.items()})
    v1.update({"clip.model." + k: s for k, s in m["_clip_model"].items()})
    # transformers < 4.31 saved CLIP's position ids as persistent buffers.
    v1["clip.model.text_model.embeddings.position_ids"] = (1, 77)
    v1["clip.model.vision_model.embeddings.position_ids"] = (1, 257)
    v1.update({name: (1000,) for name in SCHEDULE_BUFFERS})

    # A complete VD_v2_0 model's state_dict() (SHI-Labs lib/model_zoo/vd.py at HEAD, lines 73-75):
    # the UNets, kl-f8 under vae.image., Optimus under vae.text., and one whole CLIPModel in each
    # of the two context encoders (lib/model_zoo/clip.py: both hold CLIPModel.from_pretrained).
    complete = dict(v2)
    complete.update({"vae.image." + k: s for k, s in kl_f8.items()})
    complete.update({"vae.text." + k: s for k, s in optimus.items()})
    for which in ("text", "image"):
        complete.update({f"ctx.{which}.model." + k[len("clip.model."):]: s
                         for k, s in v1.items() if k.startswith("clip.model.")})
    complete.update({name: (1000,) for name in SCHEDULE_BUFFERS})
    return {"vd_v2": v2, "vd_v1_full": v1, "kl_f8": kl_f8, "optimus_vae": optimus, "vd_v2_complete": complete}


SOURCES = {
    "diffusers_image_unet": "measured: diffusers UNet2DConditionModel (meta)",
    "diffusers_text_unet": "measured: diffusers UNetFlatConditionModel (meta)",
    "diffusers_vae": "measured: diffusers AutoencoderKL (meta)",
    "diffusers_text_encoder": "measured: transformers CLIPTextModelWithProjection (meta)",
    "diffusers_image_encoder": "measured: transformers CLIPVisionModelWithProjection (meta)",
    "vd_v2": "derived: diffusers UNets renamed by vd-architecture.md 7.3 (v2 slots)",
    "vd_v1_full": "derived: 7.3 renaming of diffusers UNets/VAE + Optimus + transformers CLIPModel "
                  "+ DDPM schedule buffers",
    "vd_v2_complete": "derived: vd_v2 + kl_f8 under vae.image. + optimus_vae under vae.text. + a "
                      "transformers CLIPModel under each of ctx.text.model. and ctx.image.model. "
                      "+ DDPM schedule buffers (a whole VD_v2_0 state_dict())",
    "kl_f8": "derived: diffusers AutoencoderKL renamed to LDM names (7.3)",
    "optimus_vae": "derived: transformers BertModel + GPT2LMHeadModel + Optimus adapters",
}


# ---------------------------------------------------------------------------
# 5. Writing
# ---------------------------------------------------------------------------

def dump(name: str, manifest: Manifest) -> str:
    """Compact, diff-friendly JSON: a header line then one key per line, sorted."""
    lines = [f'  {json.dumps(k)}: {json.dumps(list(s))}' for k, s in sorted(manifest.items())]
    head = json.dumps({"layout": name, "source": SOURCES[name], "count": len(manifest)})
    return "{\"meta\": " + head + ",\n\"keys\": {\n" + ",\n".join(lines) + "\n}}\n"


def write(out_dir: Path, name: str, manifest: Manifest) -> Path:
    text = dump(name, manifest).encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in (out_dir / f"{name}.json", out_dir / f"{name}.json.gz"):
        if stale.exists():
            stale.unlink()
    if len(text) > GZIP_ABOVE:
        path = out_dir / f"{name}.json.gz"
        path.write_bytes(gzip.compress(text, compresslevel=9, mtime=0))
    else:
        path = out_dir / f"{name}.json"
        path.write_bytes(text)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests/model/manifests"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    m = measured()
    layouts = {k: v for k, v in m.items() if not k.startswith("_")}
    layouts.update(derived(m))
    for name, manifest in layouts.items():
        path = write(Path(args.out), name, manifest)
        print(f"{path}: {len(manifest)} keys")


if __name__ == "__main__":
    main()
