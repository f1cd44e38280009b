"""VD's context and latent procedures: disentanglement, I2T2I reduction and arithmetic, blends."""

from __future__ import annotations

import pytest
import torch

from vdnodes.model.procedures import (
    _focus_weights,
    adjust_rank,
    edit_text_latent,
    keep_top_components,
    match_colors,
)
from vdnodes.nodes.blend import blend_contexts
from vdnodes.nodes.values import Conditioning


def test_focus_weights_match_vd_tables():
    s = torch.ones(20)
    style, keep = _focus_weights(s, 0.6)
    assert not keep and style[:5].tolist() == [1.0] * 5
    assert style[5].item() == pytest.approx(0.86, abs=0.01) and style[11].item() == pytest.approx(0.04, abs=0.01)
    assert style[12:].abs().sum() == 0
    semantic, keep = _focus_weights(s, 0.4)
    assert keep and semantic[0].item() == pytest.approx(0.43, abs=0.01)
    assert semantic[1].item() == pytest.approx(0.71, abs=0.01)
    assert semantic[2:].tolist() == [1.0] * 18  # VD's demo scales S0 and S1 only
    for focus, s1 in ((0.2, 0.29), (0.3, 0.48)):
        w, _ = _focus_weights(s, focus)
        assert w[0].item() == 0 and w[1].item() == pytest.approx(s1, abs=0.01) and w[2:].tolist() == [1.0] * 18
    zero, _ = _focus_weights(s, 0.0)
    assert zero[:2].abs().sum() == 0 and zero[2:].tolist() == [1.0] * 18


def test_adjust_rank_keeps_cls_and_spread_and_is_repeatable():
    torch.manual_seed(0)
    x = torch.randn(2, 65, 32)
    assert adjust_rank(x, 0.5) is x
    for focus in (0.1, 0.9):
        y = adjust_rank(x, focus)
        assert torch.equal(y[:, 0], x[:, 0])
        assert not torch.allclose(y[:, 1:], x[:, 1:])
        for b in range(2):
            assert y[b, 1:].std().item() == pytest.approx(x[b, 1:].std().item(), rel=1e-4)
        assert torch.equal(adjust_rank(x, focus), y)  # PCA is seeded locally
    with pytest.raises(ValueError):
        adjust_rank(x, 1.5)


def test_exact_adjust_rank_matches_vds_randomised_pca():
    # what vd-nano's training uses (a full SVD) is the decomposition VD's pca_lowrank approximates
    torch.manual_seed(0)
    x = torch.randn(3, 65, 64) + 2.0 * torch.randn(3, 1, 64)  # a shared component, as image contexts have
    for focus in (0.0, 0.15, 0.3, 0.7, 1.0):
        exact, randomised = adjust_rank(x, focus, exact=True), adjust_rank(x, focus)
        assert torch.allclose(exact, randomised, atol=1e-4), focus
        assert not torch.allclose(exact, x, atol=1e-2)


def test_style_focus_is_low_rank():
    torch.manual_seed(0)
    x = torch.randn(1, 65, 32)
    y = adjust_rank(x, 1.0)[0, 1:]
    centred = y - y.mean(dim=-1, keepdim=True)
    s = torch.linalg.svdvals(centred)
    assert (s[6:] / s[0]).max() < 1e-3  # only the top 5 components (+ the per-token mean) remain


def test_style_focus_leaves_a_two_part_layout_alone():
    # A one-object scene's tokens: a background vector everywhere, an object vector on the
    # silhouette, a little noise (docs/nano-history.md, semantic focus). Two components hold the energy,
    # so style focus (which keeps the top five) barely moves the context; semantic focus does.
    torch.manual_seed(0)
    background, obj = torch.randn(32), torch.randn(32)
    mask = torch.zeros(64, 1)
    mask[18:30] = 1.0
    patches = background + mask * (obj - background) + 0.01 * torch.randn(64, 32)
    x = torch.cat([torch.randn(1, 32), patches])[None]  # CLS token first
    s = torch.linalg.svdvals(patches - patches.mean(dim=-1, keepdim=True))  # adjust_rank's decomposition
    assert s[:2].square().sum() / s.square().sum() > 0.99
    moved = lambda focus: ((adjust_rank(x, focus) - x).norm() / x.norm()).item()  # noqa: E731
    assert moved(0.8) < 0.02 < 0.5 < moved(0.2)


def test_keep_top_components_drops_cls_and_reduces_rank():
    torch.manual_seed(0)
    x = torch.randn(1, 65, 32)
    y = keep_top_components(x, rank=3)
    assert y.shape == (1, 64, 32)
    s = torch.linalg.svdvals(y[0] - y[0].mean(dim=-1, keepdim=True))
    assert (s[4:] / s[0]).max() < 1e-3


def test_edit_text_latent_projects_out_and_adds():
    z = torch.tensor([[3.0, 4.0, 0.0]])
    remove = torch.tensor([[2.0, 0.0, 0.0]])
    add = torch.tensor([[0.0, 0.0, 1.0]])
    out = edit_text_latent(z, remove, add)
    assert torch.allclose(out, torch.tensor([[0.0, 4.0, 1.0]]))
    assert torch.allclose(edit_text_latent(z, None, None), z)
    vd_layout = edit_text_latent(z[:, :, None, None], remove[:, :, None, None], add)  # VD's [B, D, 1, 1]
    assert vd_layout.shape == (1, 3, 1, 1) and torch.allclose(vd_layout.flatten(1), out)


def _cond(modality: str, tokens: int, batch: int = 1, fill: float = 1.0) -> Conditioning:
    t = torch.full((batch, tokens, 8), fill)
    return Conditioning.single(t, torch.zeros_like(t), modality)


def test_blend_concat_joins_tokens_with_weights():
    out = blend_contexts(None, _cond("image", 5), _cond("image", 5, fill=2.0), None, None,
                         mode="concat", weight_a=1.0, weight_b=0.5, weight_c=1.0, weight_d=1.0)
    (part,) = out.parts
    assert part.tokens.shape == (1, 10, 8) and part.modality == "image"
    assert part.tokens[0, :5].eq(1.0).all() and part.tokens[0, 5:].eq(1.0).all()  # 2.0 * 0.5


def test_blend_concat_refuses_mixed_modalities_and_mix_keeps_parts():
    from vdnodes.core.errors import NodeInputError

    with pytest.raises(NodeInputError, match="one modality"):
        blend_contexts(None, _cond("image", 5), _cond("text", 7), None, None, mode="concat",
                       weight_a=1, weight_b=1, weight_c=1, weight_d=1)
    mixed = blend_contexts(None, _cond("image", 5), _cond("text", 7), None, None, mode="mix",
                           weight_a=0.25, weight_b=0.75, weight_c=1, weight_d=1)
    assert mixed.modalities == ("image", "text") and [p.weight for p in mixed.parts] == [0.25, 0.75]


def test_dual_guidance_gives_context2_the_share_mix_whatever_the_blend_in_front():
    from vdnodes.nodes.denoise import conditioning_inputs

    def ratios(context, context2, mix):
        conds, unconds = conditioning_inputs(context, context2, mix, batch=1)
        assert [c.weight for c in conds] == [u.weight for u in unconds]
        return [c.weight for c in conds]

    images = blend_contexts(None, _cond("image", 5), _cond("image", 5, fill=2.0), None, None, mode="mix",
                            weight_a=1.0, weight_b=0.6, weight_c=1.0, weight_d=1.0)
    text = _cond("text", 7)
    assert ratios(images, text, 0.3) == pytest.approx([0.7 / 1.6, 0.7 * 0.6 / 1.6, 0.3])
    half = blend_contexts(None, _cond("image", 5), None, None, None, mode="mix",
                          weight_a=0.5, weight_b=1.0, weight_c=1.0, weight_d=1.0)
    assert ratios(half, text, 0.5) == pytest.approx([0.5, 0.5])  # a lone part's weight is no share
    assert ratios(images, None, 0.3) == pytest.approx([1.0, 0.6])  # one context: the blend's weights


def test_blend_type_follows_inputs():
    from vdnodes.core.types import SocketType as T
    from vdnodes.nodes.blend import _blend_type

    assert str(_blend_type({"a": T("Context", ("image",)), "b": T("Context", ("image",))}, {})["context"]) == "Context[image]"
    assert str(_blend_type({"a": T("Context", ("image",)), "b": T("Context", ("text",))}, {})["context"]) == "Context"


def test_match_colors_moves_each_channels_mean_and_spread_to_the_reference():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 16, 16) * 0.5  # dark and flat
    reference = 0.3 + 0.4 * torch.rand(1, 3, 16, 16)  # one reference for the batch
    full = match_colors(image, reference, 1.0)
    dims = (-2, -1)
    assert torch.allclose(full.mean(dims), reference.mean(dims).expand(2, 3), atol=1e-4)
    assert torch.allclose(full.std(dims), reference.std(dims).expand(2, 3), atol=1e-4)
    assert torch.equal(match_colors(image, reference, 0.0), image)
    half = match_colors(image, reference, 0.5)
    assert torch.allclose(half, (image + full) / 2, atol=1e-6)  # no clamping needed here
    assert match_colors(image * 4, reference).max() <= 1.0  # outputs stay images

