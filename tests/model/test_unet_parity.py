"""Numerical parity with diffusers' VD UNets (fp32, tiny random weights, max abs diff <= 1e-5).

The diffusers modules are the reference (diffusers is a test-only dependency):
``UNet2DConditionModel`` is VD's ``image_unet`` and ``UNetFlatConditionModel`` its
``text_unet``. Their weights go through ``unet_keys.diffusers_keymap`` into one UNet of
ours. Cross routing is reproduced the way diffusers' pipelines do it: text->image swaps
the attention modules between the two UNets, dual-guided wraps them in
``DualTransformer2DModel``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

diffusers = pytest.importorskip("diffusers")
from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.models.transformers.dual_transformer_2d import DualTransformer2DModel  # noqa: E402
from diffusers.models.transformers.transformer_2d import Transformer2DModel  # noqa: E402
from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import UNetFlatConditionModel  # noqa: E402

from vdnodes.model.conditioning import ContextInput  # noqa: E402
from vdnodes.model.keymap import fit_shape, remap  # noqa: E402
from vdnodes.model.unet import UNet, UNetConfig  # noqa: E402
from vdnodes.model.unet_keys import DIFFUSERS_TEXT_UNET_IGNORE, diffusers_keymap  # noqa: E402

TOL = 1e-5
WIDTHS = (32, 64, 64, 64)
CONFIG = UNetConfig(model_channels=32, channel_mult=(1, 2, 2, 2), heads=8, context_dim=32, norm_groups=8, text_dim=24)
# VD's structure at toy widths: 3 CrossAttn down + 1 plain down, 1 plain up + 3 CrossAttn up.
DIFFUSERS_KW = dict(
    block_out_channels=WIDTHS, layers_per_block=2, attention_head_dim=8, cross_attention_dim=32,
    norm_num_groups=8, flip_sin_to_cos=True, freq_shift=0,
)


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random weights everywhere (zero-init layers included) at a scale that keeps activations O(1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            else:
                base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
    return model


def swap_attentions(a: nn.Module, b: nn.Module) -> None:
    """What VersatileDiffusionTextToImagePipeline._swap_unet_attention_blocks does."""
    for name, module in list(a.named_modules()):
        if isinstance(module, Transformer2DModel):
            parent, index = name.rsplit(".", 1)
            pa, pb = a.get_submodule(parent), b.get_submodule(parent)
            pa[int(index)], pb[int(index)] = pb[int(index)], pa[int(index)]


class DualTransformer(DualTransformer2DModel):
    """Upstream bug (vd-architecture.md section 8.1): the cross-attention blocks pass
    ``encoder_attention_mask``, which ``DualTransformer2DModel.forward`` does not accept."""

    def forward(self, hidden_states, encoder_hidden_states, encoder_attention_mask=None, **kwargs):
        assert encoder_attention_mask is None
        return super().forward(hidden_states, encoder_hidden_states, **kwargs)


def to_dual_attention(image_unet: nn.Module, text_unet: nn.Module, mix: float, lengths: tuple[int, int]) -> None:
    """The dual-guided pipeline: `_convert_to_dual_attention` + `set_transformer_params(mix, ("text", "image"))`."""
    for name, module in list(image_unet.named_modules()):
        if isinstance(module, Transformer2DModel):
            parent, index = name.rsplit(".", 1)
            c = module.config
            dual = DualTransformer(
                num_attention_heads=c.num_attention_heads, attention_head_dim=c.attention_head_dim,
                in_channels=c.in_channels, num_layers=c.num_layers, norm_num_groups=c.norm_num_groups,
                cross_attention_dim=c.cross_attention_dim, attention_bias=c.attention_bias,
            )
            dual.transformers[0] = module
            dual.transformers[1] = text_unet.get_submodule(parent)[int(index)]
            dual.mix_ratio = mix
            dual.condition_lengths = list(lengths)  # [text tokens, image tokens]
            dual.transformer_index_for_condition = [1, 0]  # text -> text_unet's, image -> image_unet's
            image_unet.get_submodule(parent)[int(index)] = dual


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    image_unet = randomize(UNet2DConditionModel(sample_size=16, **DIFFUSERS_KW), seed=1).eval()
    text_unet = randomize(
        UNetFlatConditionModel(
            in_channels=(CONFIG.text_dim, 1, 1), out_channels=(CONFIG.text_dim, 1, 1),
            down_block_types=("CrossAttnDownBlockFlat",) * 3 + ("DownBlockFlat",),
            up_block_types=("UpBlockFlat",) + ("CrossAttnUpBlockFlat",) * 3,
            **DIFFUSERS_KW,
        ),
        seed=2,
    ).eval()
    # VD has one time MLP, "copied into both" diffusers UNets (section 7.3).
    text_unet.time_embedding.load_state_dict(image_unet.time_embedding.state_dict())

    ours = UNet(CONFIG).eval()
    mine = ours.state_dict()
    state = {}
    for modality, ref, ignore in (("image", image_unet, ()), ("text", text_unet, DIFFUSERS_TEXT_UNET_IGNORE)):
        renamed, unmatched = remap(ref.state_dict(), diffusers_keymap(modality, CONFIG), ignore=ignore)
        assert not unmatched
        state.update({k: fit_shape(v, tuple(mine[k].shape)) for k, v in renamed.items()})
    ours.load_state_dict(state, strict=True)
    return image_unet, text_unet, ours


def inputs(seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    return dict(
        image=torch.randn(2, 4, 16, 16, generator=g),
        text=torch.randn(2, CONFIG.text_dim, generator=g),
        t=torch.tensor([17.0, 803.0]),
        c_image=torch.randn(2, 9, 32, generator=g),  # stands in for CLIP image tokens
        c_text=torch.randn(2, 7, 32, generator=g),  # stands in for CLIP text tokens
    )


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


@torch.no_grad()
def test_image_flow_matches_image_unet(models):
    image_unet, _, ours = models
    d = inputs()
    ref = image_unet(d["image"], d["t"], d["c_image"]).sample
    got = ours(d["image"], d["t"], "image", [ContextInput(d["c_image"], "image")])
    assert ref.abs().max() > 0.1  # the comparison is not between two near-zero tensors
    assert max_diff(got, ref) <= TOL


@torch.no_grad()
def test_text_flow_matches_flat_unet(models):
    _, text_unet, ours = models
    d = inputs()
    ref = text_unet(d["text"][:, :, None, None], d["t"], d["c_text"]).sample  # [B, D, 1, 1]
    got = ours(d["text"], d["t"], "text", [ContextInput(d["c_text"], "text")])  # [B, D]
    assert ref.abs().max() > 0.1
    assert max_diff(got, ref.flatten(1)) <= TOL


@torch.no_grad()
def test_cross_routing_matches_swapped_attentions(models):
    """t2i (image x, text context) and i2t (text x, image context), as diffusers' swap builds them."""
    image_unet, text_unet, ours = models
    d = inputs()
    swap_attentions(image_unet, text_unet)
    try:
        ref_t2i = image_unet(d["image"], d["t"], d["c_text"]).sample
        ref_i2t = text_unet(d["text"][:, :, None, None], d["t"], d["c_image"]).sample
    finally:
        swap_attentions(image_unet, text_unet)
    got_t2i = ours(d["image"], d["t"], "image", [ContextInput(d["c_text"], "text")])
    got_i2t = ours(d["text"], d["t"], "text", [ContextInput(d["c_image"], "image")])
    assert max_diff(got_t2i, ref_t2i) <= TOL
    assert max_diff(got_i2t, ref_i2t.flatten(1)) <= TOL
    # ...and the routing matters: the same x with the image context differs.
    assert max_diff(got_t2i, ours(d["image"], d["t"], "image", [ContextInput(d["c_image"], "image")])) > 1e-2


@pytest.mark.parametrize("mix", [0.7, 0.25])
def test_dual_context_matches_dual_transformer(models, mix):
    """diffusers' dual-guided mixing: conditions [text | image], mix = text share."""
    image_unet, text_unet, ours = models
    d = inputs()
    dual_unet = UNet2DConditionModel(sample_size=16, **DIFFUSERS_KW).eval()
    dual_unet.load_state_dict(image_unet.state_dict())
    text_copy = UNetFlatConditionModel(
        in_channels=(CONFIG.text_dim, 1, 1), out_channels=(CONFIG.text_dim, 1, 1),
        down_block_types=("CrossAttnDownBlockFlat",) * 3 + ("DownBlockFlat",),
        up_block_types=("UpBlockFlat",) + ("CrossAttnUpBlockFlat",) * 3, **DIFFUSERS_KW,
    ).eval()
    text_copy.load_state_dict(text_unet.state_dict())
    to_dual_attention(dual_unet, text_copy, mix, (d["c_text"].shape[1], d["c_image"].shape[1]))
    with torch.no_grad():
        conditions = torch.cat([d["c_text"], d["c_image"]], dim=1)  # [B, 7 + 9, 32]
        ref = dual_unet(d["image"], d["t"], conditions).sample
        got = ours(d["image"], d["t"], "image",
                   [ContextInput(d["c_text"], "text", mix), ContextInput(d["c_image"], "image", 1 - mix)])
    assert max_diff(got, ref) <= TOL
