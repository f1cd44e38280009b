"""The multi-flow UNet: full-size sizes on ``meta``, routing, context mixing, plugin groups, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vdnodes.model.conditioning import ContextInput
from vdnodes.model.unet import (
    ContextGroup,
    DataGroup,
    FCResBlock,
    LinearMultiDim,
    OutputHead,
    UNet,
    UNetConfig,
    count_parameters,
)

TINY = UNetConfig(model_channels=32, channel_mult=(1, 2, 2, 2), heads=8, context_dim=32, norm_groups=8, text_dim=24)


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
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


@pytest.fixture(scope="module")
def tiny() -> UNet:
    return randomize(UNet(TINY)).eval()


def ctx(modality: str, tokens: int = 5, batch: int = 2, dim: int = 32, seed: int = 1, weight: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    return ContextInput(torch.randn(batch, tokens, dim, generator=g), modality, weight)


# -- full size on meta ------------------------------------------------------


def test_full_size_parameter_counts_on_meta():
    with torch.device("meta"):
        unet = UNet(UNetConfig())
    counts = unet.parameter_counts()
    assert counts == {
        "time": 2_050_560,
        "data.image": 590_231_044,
        "data.text": 1_439_558_528,
        "context.image": 267_239_360,
        "context.text": 267_239_360,
        "total": 2_566_318_852,
    }
    # The image diffuser alone is SD v1's UNet (section 2.1); the text diffuser has no time MLP.
    assert counts["time"] + counts["data.image"] + counts["context.image"] == 859_520_964
    assert counts["data.text"] + counts["context.text"] == 1_706_797_888


def test_flow_aware_build_has_only_the_groups_asked_for():
    with torch.device("meta"):
        t2i = UNet(UNetConfig(), data=("image",), context=("text",))
    assert list(t2i.data) == ["image"] and list(t2i.context) == ["text"]
    assert count_parameters(t2i) == 2_050_560 + 590_231_044 + 267_239_360


def test_full_size_shapes_on_meta():
    """The cross routings run at full size on meta; text features are [B, C, 4, 1] (section 2.2)."""
    with torch.device("meta"):
        unet = UNet(UNetConfig())
        img, txt = torch.empty(2, 4, 64, 64), torch.empty(2, 768)
        c_img, c_txt = ContextInput(torch.empty(2, 257, 768), "image"), ContextInput(torch.empty(2, 77, 768), "text")
        assert unet(img, torch.empty(2), "image", [c_txt]).shape == img.shape  # t2i
        assert unet(txt, torch.empty(2), "text", [c_img]).shape == txt.shape  # i2t
        # The text data blocks keep 4 positions at every level.
        h = unet.data.text.blocks[0](txt, None)
        assert h.shape == (2, 320, 4, 1)


# -- the slot schedule --------------------------------------------------------


def test_slot_schedule_matches_section_1_3():
    with torch.device("meta"):
        layout = UNet(UNetConfig(), data=(), context=()).layout
    assert len(layout.data_slots) == 30 and len(layout.context_slots) == 16
    assert sum(s.push for s in layout.steps) == 12 and sum(s.pop for s in layout.steps) == 12
    kinds = "".join(s.kind[0] if s.kind != "down" else "v" for s in layout.data_slots)
    assert kinds == "irrvrrvrrvrrrrrrrurrrurrrurrrh"
    # Decoder ResBlock input widths (output + skip) as listed in section 1.3.
    c_in = {i: layout.data_slots[i].c_in for i in (14, 15, 16, 18, 19, 20, 22, 23, 24, 26, 27, 28)}
    assert c_in == {14: 2560, 15: 2560, 16: 2560, 18: 2560, 19: 2560, 20: 1920,
                    22: 1920, 23: 1280, 24: 960, 26: 960, 27: 640, 28: 640}
    # Context slot c_k follows d_k's level: c0 after d1, c6 in the middle, c15 after d28.
    order = [(s.kind[0], s.slot) for s in layout.steps]
    assert order[1:3] == [("d", 1), ("c", 0)] and order[-3:] == [("d", 28), ("c", 15), ("d", 29)]
    assert ("d", 12) in order and order[order.index(("d", 12)) + 1] == ("c", 6)


# -- forward --------------------------------------------------------------------


@pytest.mark.parametrize("xtype", ["image", "text"])
@pytest.mark.parametrize("ctype", ["image", "text"])
def test_all_four_routings_run(tiny, xtype, ctype):
    x = torch.randn(2, 4, 16, 16) if xtype == "image" else torch.randn(2, 24)
    with torch.no_grad():
        eps = tiny(x, torch.tensor([3.0, 900.0]), xtype, [ctx(ctype)])
    assert eps.shape == x.shape and torch.isfinite(eps).all()


def test_context_modality_changes_the_output(tiny):
    x = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        a = tiny(x, 10, "image", [ctx("image")])
        b = tiny(x, 10, "image", [ctx("text")])
    assert (a - b).abs().max() > 1e-3


def test_scalar_t_equals_batched_t(tiny):
    x = torch.randn(2, 24)
    with torch.no_grad():
        a = tiny(x, 250, "text", [ctx("image")])
        b = tiny(x, torch.tensor([250.0, 250.0]), "text", [ctx("image")])
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_text_latent_accepts_the_diffusers_layout(tiny):
    x = torch.randn(2, 24)
    with torch.no_grad():
        a = tiny(x, 5, "text", [ctx("text")])
        b = tiny(x[:, :, None, None], 5, "text", [ctx("text")])
    assert b.shape == (2, 24, 1, 1)
    torch.testing.assert_close(a, b.flatten(1), rtol=0, atol=0)


def test_dual_context_with_weights_one_zero_equals_single(tiny):
    x = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        single = tiny(x, 10, "image", [ctx("image")])
        dual = tiny(x, 10, "image", [ctx("image", weight=1.0), ctx("text", weight=0.0)])
    torch.testing.assert_close(dual, single, rtol=0, atol=0)


def test_context_weights_are_normalised(tiny):
    x = torch.randn(2, 24)
    with torch.no_grad():
        a = tiny(x, 10, "text", [ctx("image", weight=0.3), ctx("text", weight=0.7)])
        b = tiny(x, 10, "text", [ctx("image", weight=3.0), ctx("text", weight=7.0)])
        pure = tiny(x, 10, "text", [ctx("image")])
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert (a - pure).abs().max() > 1e-3


def test_mixing_equals_weighted_sum_at_every_slot():
    """With one context slot in the whole net, the mix is exactly r*T_a + (1-r)*T_b of that slot."""
    cfg = UNetConfig(model_channels=16, channel_mult=(1,), num_res_blocks=1, attention_levels=(),
                     heads=2, context_dim=8, norm_groups=4, text_dim=8)
    unet = randomize(UNet(cfg)).eval()
    assert len(unet.layout.context_slots) == 1  # only the middle one
    x, ca, cb = torch.randn(1, 4, 8, 8), ctx("image", batch=1, dim=8), ctx("text", batch=1, dim=8, seed=2)
    steps = unet.layout.steps
    after = steps[[s.kind for s in steps].index("context") + 1]  # the data block that reads T(h)
    captured = {}
    unet.data.image.blocks[after.slot].register_forward_hook(lambda m, i, o: captured.setdefault("h_in", i[0]))
    with torch.no_grad():
        unet(x, 1, "image", [ca])
        ta = captured.pop("h_in")
        unet(x, 1, "image", [cb])
        tb = captured.pop("h_in")
        unet(x, 1, "image", [ContextInput(ca.tokens, "image", 1.0), ContextInput(cb.tokens, "text", 3.0)])
        mixed = captured.pop("h_in")
    torch.testing.assert_close(mixed, 0.25 * ta + 0.75 * tb, rtol=1e-5, atol=1e-6)


# -- errors ---------------------------------------------------------------------


def test_unknown_modalities_name_what_is_available(tiny):
    x = torch.randn(2, 24)
    with pytest.raises(ValueError, match=r"no context group 'audio'; available: \['image', 'text'\]"):
        tiny(x, 1, "text", [ctx("audio")])
    with pytest.raises(ValueError, match=r"no data group 'audio'; available: \['image', 'text'\]"):
        tiny(x, 1, "audio", [ctx("text")])
    with pytest.raises(ValueError, match="unknown built-in data modality 'audio'"):
        UNet(TINY, data=("audio",))


def test_bad_inputs_give_clear_errors(tiny):
    x = torch.randn(2, 4, 16, 16)
    with pytest.raises(ValueError, match=r"text context must be \[2, T, 32\]"):
        tiny(x, 1, "image", [ctx("text", batch=3)])
    with pytest.raises(ValueError, match=r"t must be a scalar or \[2\]"):
        tiny(x, torch.ones(3), "image", [ctx("text")])
    with pytest.raises(ValueError, match="multiples of 8"):
        tiny(torch.randn(2, 4, 12, 12), 1, "image", [ctx("text")])
    with pytest.raises(ValueError, match=r"image latent must be \[B, 4, H, W\]"):
        tiny(torch.randn(2, 3, 16, 16), 1, "image", [ctx("text")])
    with pytest.raises(ValueError, match="at least one context"):
        tiny(x, 1, "image", [])
    with pytest.raises(ValueError, match="sum to a positive number"):
        tiny(x, 1, "image", [ctx("text", weight=0.0)])


# -- plugin modalities ------------------------------------------------------------


class Keep(nn.Module):
    """A sampler slot that leaves the features alone."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h


class ToyDataGroup(DataGroup):
    """A 'signal' modality: latent [B, 6], features [B, C, 2, 1], built only from public parts."""

    def __init__(self, unet: UNet, dim: int = 6, positions: int = 2):
        c = unet.config

        def make(s):
            if s.kind == "in":
                return LinearMultiDim((dim,), (s.c_out, positions, 1))
            if s.kind == "res":
                return FCResBlock(s.c_in, s.c_out, positions, c.time_embed_dim, c.norm_groups, c.norm_eps)
            if s.kind in ("down", "up"):
                return Keep()
            return OutputHead(nn.GroupNorm(c.norm_groups, s.c_in), LinearMultiDim((s.c_in, positions, 1), (dim,)))

        super().__init__(unet.layout, [make(s) for s in unet.layout.data_slots])


def test_plugin_groups_register_without_core_edits():
    unet = UNet(TINY, data=("image",), context=("text",))
    unet.add_context_group("depth", ContextGroup(unet.layout, context_dim=12, heads=TINY.heads, groups=8))
    unet.add_data_group("signal", ToyDataGroup(unet))
    randomize(unet).eval()
    depth = ctx("depth", tokens=3, dim=12)
    x_img, x_sig = torch.randn(2, 4, 16, 16), torch.randn(2, 6)
    with torch.no_grad():
        assert unet(x_img, 7, "image", [depth]).shape == x_img.shape
        eps = unet(x_sig, 7, "signal", [ctx("text"), depth])
        assert eps.shape == (2, 6) and torch.isfinite(eps).all()
        single = unet(x_sig, 7, "signal", [depth])
        dual = unet(x_sig, 7, "signal", [depth, ctx("text", weight=0.0)])
    torch.testing.assert_close(dual, single, rtol=0, atol=0)
    assert "context.depth" in unet.parameter_counts() and "data.signal" in unet.parameter_counts()


def test_plugin_groups_are_validated():
    unet = UNet(TINY, data=(), context=())
    other = UNet(UNetConfig(model_channels=16, channel_mult=(1, 2, 2, 2), context_dim=32, norm_groups=8),
                 data=(), context=())
    with pytest.raises(ValueError, match="other channel widths"):
        unet.add_context_group("depth", ContextGroup(other.layout, context_dim=12, heads=8, groups=8))
    short = ToyDataGroup(unet)
    del short.blocks[-1]
    with pytest.raises(ValueError, match="has 29 blocks, this UNet has 30 data slots"):
        unet.add_data_group("signal", short)
    with pytest.raises(ValueError, match="identifier"):
        unet.add_data_group("my signal", ToyDataGroup(unet))
    with pytest.raises(TypeError, match="must be a ContextGroup, got ToyDataGroup"):
        unet.add_context_group("signal", ToyDataGroup(unet))
