"""Tests for the image VAE (`vdnodes/model/vae.py`) and its key maps (`vae_keys.py`).

Parity is against diffusers' `AutoencoderKL` with tiny random weights (fp32, max abs error 1e-5);
full-size structure is checked on the `meta` device against the exact kl-f8 parameter counts and
the key/shape manifests in `tests/model/manifests/`.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from vdnodes.model.keymap import fit_shape, remap, rename_key
from vdnodes.model.vae import ImageVAE, VAEConfig
from vdnodes.model.vae_keys import VAELayout, vae_keymap

MANIFESTS = Path(__file__).parent / "manifests"
TOL = 1e-5

# Mirrors kl-f8 (4 levels, 2 res blocks, mid attention, 4 latent channels), only narrower.
TINY = VAEConfig(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=2, norm_groups=8)


def _diffusers_vae(config: VAEConfig):
    from diffusers import AutoencoderKL

    n = len(config.ch_mult)
    return AutoencoderKL(
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(config.ch * m for m in config.ch_mult),
        layers_per_block=config.num_res_blocks,
        latent_channels=config.z_channels,
        norm_num_groups=config.norm_groups,
        scaling_factor=config.scale_factor,
    )


def _load(model: ImageVAE, state: dict, layout: str) -> None:
    """Rename `state` from `layout` to ours, fit 1x1-conv/Linear shapes, load strictly."""
    renamed, unmatched = remap(state, vae_keymap(layout, model.config))
    assert unmatched == []
    ours = model.state_dict()
    model.load_state_dict({k: fit_shape(v, tuple(ours[k].shape)) for k, v in renamed.items()})


def _to_ldm(model: ImageVAE) -> dict[str, torch.Tensor]:
    """Our state dict under LDM names, attention weights as 1x1 convs like `kl-f8.pth`."""
    inverse = {ours: src for src, ours in vae_keymap("ldm", model.config).items()}
    renamed, unmatched = remap(model.state_dict(), inverse)
    assert unmatched == []
    attn = (".q.weight", ".k.weight", ".v.weight", ".proj_out.weight")
    return {k: v[:, :, None, None] if k.endswith(attn) else v for k, v in renamed.items()}


def _manifest(name: str) -> dict[str, list[int]]:
    path = MANIFESTS / name
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)["keys"]


@pytest.fixture(scope="module")
def pair():
    """(diffusers AutoencoderKL, our ImageVAE) with the same random tiny weights."""
    torch.manual_seed(0)
    ref = _diffusers_vae(TINY).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # GroupNorms start at 1/0; randomise them so they are really tested
        for name, p in ref.named_parameters():
            if "norm" in name:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
    ours = ImageVAE(TINY).eval()
    _load(ours, ref.state_dict(), "diffusers")
    return ref, ours


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(2)
    return torch.rand(2, 3, 40, 24, generator=g)  # non-square catches H/W mix-ups


# --- structure --------------------------------------------------------------------------------


def test_full_size_param_counts_on_meta():
    with torch.device("meta"):
        vae = ImageVAE(VAEConfig())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert vae.num_params() == 83_653_863
    assert count(vae.encoder) == 34_163_592
    assert count(vae.decoder) == 49_490_179
    assert vae.config.downsample_factor == 8


@pytest.mark.parametrize(
    ("layout", "manifest", "prefix"),
    [
        ("ldm", "kl_f8.json", ""),
        ("diffusers", "diffusers_vae.json", ""),
        ("vd-v1", "vd_v1_full.json.gz", "autokl."),
    ],
)
def test_full_size_manifest_maps_onto_our_params(layout, manifest, prefix):
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in ImageVAE().state_dict().items()}
    keys = {k: tuple(s) for k, s in _manifest(manifest).items() if k.startswith(prefix)}
    renamed, unmatched = remap(keys, vae_keymap(layout, VAEConfig()))
    assert unmatched == []
    assert len(renamed) == len(keys) == len(ours)  # nothing renamed onto the same name twice
    assert set(renamed) == set(ours)
    for k, shape in renamed.items():
        fitted = fit_shape(torch.empty(shape, device="meta"), ours[k])
        assert tuple(fitted.shape) == ours[k], k


# The representative kl-f8 keys of vd-architecture.md §7.5, with their shapes.
SPEC_KL_F8 = {
    "encoder.conv_in.weight": (128, 3, 3, 3),
    "encoder.down.0.block.0.conv1.weight": (128, 128, 3, 3),
    "encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
    "encoder.conv_out.weight": (8, 512, 3, 3),
    "quant_conv.weight": (8, 8, 1, 1),
    "post_quant_conv.weight": (4, 4, 1, 1),
    "decoder.up.3.block.0.conv1.weight": (512, 512, 3, 3),
    "decoder.conv_out.weight": (3, 128, 3, 3),
}


def test_spec_kl_f8_keys_map_to_our_params():
    with torch.device("meta"):
        ours = ImageVAE().state_dict()
    keymap = vae_keymap("ldm", VAEConfig())
    for key, shape in SPEC_KL_F8.items():
        name = rename_key(key, keymap)
        assert name in ours, key
        fitted = fit_shape(torch.empty(shape, device="meta"), tuple(ours[name].shape))
        assert fitted.shape == ours[name].shape, key
    # LDM's decoder counts levels from the top resolution: its up.3 runs first (our up_blocks.0).
    assert rename_key("decoder.up.3.block.0.conv1.weight", keymap) == (
        "decoder.up_blocks.0.resnets.0.conv1.weight"
    )
    assert rename_key("encoder.mid.attn_1.proj_out.weight", keymap) == (
        "encoder.mid_block.attn.to_out.weight"
    )


@pytest.mark.parametrize("config", [VAEConfig(), TINY], ids=["kl-f8", "tiny"])
def test_ldm_map_covers_every_param_exactly_once(config):
    with torch.device("meta"):
        ours = list(ImageVAE(config).state_dict())
    keymap = vae_keymap("ldm", config)
    assert len(set(keymap.values())) == len(keymap)  # one LDM name per module of ours
    hits = {dst: 0 for dst in keymap.values()}
    for key in ours:
        matches = [dst for dst in keymap.values() if key.startswith(dst)]
        assert len(matches) == 1, (key, matches)
        hits[matches[0]] += 1
    assert all(hits.values()), [dst for dst, n in hits.items() if n == 0]  # no dead entries
    # kl-f8 has 1x1 skips exactly where the width changes (known from the real checkpoint).
    if config == VAEConfig():
        shortcuts = sorted(src for src in keymap if "nin_shortcut" in src)
        assert shortcuts == [
            "decoder.up.0.block.0.nin_shortcut.",
            "decoder.up.1.block.0.nin_shortcut.",
            "encoder.down.1.block.0.nin_shortcut.",
            "encoder.down.2.block.0.nin_shortcut.",
        ]


def test_keymap_prefixes_and_bad_layout():
    assert all(k.startswith("autokl.") for k in vae_keymap("vd-v1", TINY))
    assert vae_keymap(VAELayout.VD_V1, TINY) == vae_keymap("ldm", TINY, prefix="autokl.")
    assert all(k.startswith("vae.") for k in vae_keymap("diffusers", TINY, prefix="vae."))
    with pytest.raises(ValueError, match="unknown VAE key layout 'sd'"):
        vae_keymap("sd", TINY)


# --- parity with diffusers --------------------------------------------------------------------


@torch.no_grad()
def test_encode_moments_match_diffusers(pair, images):
    ref, ours = pair
    dist = ref.encode(images * 2 - 1).latent_dist
    post = ours.posterior(images)
    assert post.mean.shape == (2, 4, 5, 3)
    assert (post.mean - dist.mean).abs().max() < TOL
    assert (post.logvar - dist.logvar).abs().max() < TOL
    assert (post.std - dist.std).abs().max() < TOL
    latent = ours.encode(images, sample=False)
    assert (latent - dist.mean * 0.18215).abs().max() < TOL


@torch.no_grad()
def test_sampled_encode_matches_diffusers_sample(pair, images):
    # diffusers samples mean + std * randn(shape, generator, dtype): the same formula and draw.
    ref, ours = pair
    expected = ref.encode(images * 2 - 1).latent_dist.sample(torch.Generator().manual_seed(7))
    latent = ours.encode(images, generator=torch.Generator().manual_seed(7))
    assert (latent - expected * 0.18215).abs().max() < TOL


@torch.no_grad()
def test_decode_matches_diffusers(pair):
    ref, ours = pair
    latent = torch.randn(2, 4, 5, 3, generator=torch.Generator().manual_seed(3))
    expected = ref.decode(latent / 0.18215).sample  # [-1, 1]-ish, unclamped
    raw = ours.decoder(ours.post_quant_conv(latent / 0.18215))
    assert raw.shape == (2, 3, 40, 24)
    assert (raw - expected).abs().max() < TOL
    out = ours.decode(latent)
    assert (out - ((expected + 1) / 2).clamp(0, 1)).abs().max() < TOL
    inside = ((out > 0) & (out < 1)).float().mean()
    assert inside > 0.5  # the comparison is not all clamped away


def test_legacy_diffusers_attention_names_load(pair):
    ref, ours = pair
    old_names = (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn"))
    legacy = {}
    for k, v in ref.state_dict().items():
        for new, old in old_names:
            k = k.replace(f"attentions.0.{new}.", f"attentions.0.{old}.")
        legacy[k] = v
    assert any(".proj_attn." in k for k in legacy)
    fresh = ImageVAE(TINY)
    _load(fresh, legacy, "diffusers")
    for k, v in ours.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_ldm_names_agree_with_diffusers_own_ldm_converter(pair):
    # An independent check of our LDM map: diffusers' single-file converter must turn our
    # LDM-named state back into exactly the diffusers state we started from.
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    ref, ours = pair
    ldm = _to_ldm(ours)
    converted = convert_ldm_vae_checkpoint(ldm, ref.config)
    expected = ref.state_dict()
    assert set(converted) == set(expected)
    for k, v in expected.items():
        assert torch.equal(converted[k], v), k
    fresh = ImageVAE(TINY)
    _load(fresh, ldm, "ldm")
    for k, v in ours.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


# --- behaviour ---------------------------------------------------------------------------------


@torch.no_grad()
def test_round_trip_shapes_range_and_seeding(pair, images):
    _, vae = pair
    a = vae.encode(images, generator=torch.Generator().manual_seed(5))
    b = vae.encode(images, generator=torch.Generator().manual_seed(5))
    c = vae.encode(images, generator=torch.Generator().manual_seed(6))
    assert a.shape == (2, 4, 5, 3)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.equal(vae.encode(images, sample=False), vae.encode(images, sample=False))
    assert vae.encode(images).shape == a.shape  # no generator: global RNG
    out = vae.decode(a)
    assert out.shape == images.shape
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.rand(3, 40, 24), r"\[B, 3, H, W\]"),
        (torch.rand(1, 1, 40, 24), "3 channels"),
        (torch.rand(1, 3, 36, 24), "multiples of 8"),
        (torch.zeros(1, 3, 40, 24, dtype=torch.uint8), "floating-point"),
        ([[0.0]], "tensor"),
    ],
)
def test_encode_rejects_bad_images(pair, bad, message):
    _, vae = pair
    with pytest.raises(ValueError, match=message):
        vae.encode(bad)


def test_decode_rejects_bad_latent(pair):
    _, vae = pair
    with pytest.raises(ValueError, match="4 channels"):
        vae.decode(torch.zeros(1, 8, 5, 3))
    with pytest.raises(ValueError, match=r"\[B, 4, H, W\]"):
        vae.decode(torch.zeros(4, 5, 3))


def test_config_rejects_bad_groups():
    with pytest.raises(ValueError, match="norm_groups=32"):
        VAEConfig(ch=16, norm_groups=32)
