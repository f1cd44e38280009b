"""The CUDA speed options run on CPU too: channels-last and torch.compile leave results unchanged (1e-5)."""

from __future__ import annotations

import copy

import pytest
import torch

from vdnodes.model import accel
from vdnodes.model.conditioning import ContextInput
from vdnodes.model.configs import tiny_config
from vdnodes.model.unet import UNet
from vdnodes.model.vae import ImageVAE
from vdnodes.nodes.models import ModelManager, ModelSpec


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    model = UNet(tiny_config().unet).eval()
    for p in model.parameters():  # zero-initialised output layers would hide differences
        if not p.abs().sum():
            torch.nn.init.normal_(p, std=0.05)
    return model


def _inputs(unet: UNet) -> tuple[torch.Tensor, list[ContextInput]]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, unet.config.image_channels, 16, 16, generator=g)
    tokens = torch.randn(2, 7, unet.config.context_dim, generator=g)
    return x, [ContextInput(tokens, "text", 0.7), ContextInput(tokens.flip(1), "image", 0.3)]


def test_channels_last_unet_matches(unet):
    x, contexts = _inputs(unet)
    fast = accel.use_channels_last(copy.deepcopy(unet))
    assert fast.data["image"].blocks[1].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert (fast(x, 300, "image", contexts) - unet(x, 300, "image", contexts)).abs().max() < 1e-5


def test_channels_last_vae_matches():
    torch.manual_seed(0)
    vae = ImageVAE(tiny_config().vae).eval()
    fast = accel.use_channels_last(copy.deepcopy(vae))
    z = torch.randn(1, 4, 16, 16)
    with torch.inference_mode():
        assert (fast.decode(z, tiled=False) - vae.decode(z, tiled=False)).abs().max() < 1e-5


def test_compiled_unet_matches(unet):
    # aot_eager: dynamo + AOTAutograd trace our walk and graph like inductor does, without a C++ build
    x, contexts = _inputs(unet)
    compiled = accel.compile_module(copy.deepcopy(unet), "aot_eager")
    with torch.inference_mode():
        want = unet(x, 300, "image", contexts)
        got = compiled(x, 300, "image", contexts)
    assert (got - want).abs().max() < 1e-5


def test_the_manager_applies_the_options_from_the_environment(monkeypatch, unet):
    monkeypatch.setenv("VDNODES_CHANNELS_LAST", "1")
    monkeypatch.setenv("VDNODES_COMPILE", "eager")
    fast = ModelManager().ensure(ModelSpec("tiny", "float32", "cpu", seed=5), {"unet.time"})
    monkeypatch.setenv("VDNODES_CHANNELS_LAST", "0")
    monkeypatch.setenv("VDNODES_COMPILE", "0")
    plain = ModelManager().ensure(ModelSpec("tiny", "float32", "cpu", seed=5), {"unet.time"})
    conv = fast.unet.data["image"].blocks[1].conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert fast.vae_image.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    x, contexts = _inputs(plain.unet)
    with torch.inference_mode():
        diff = fast.unet(x, 300, "image", contexts) - plain.unet(x, 300, "image", contexts)
    assert diff.abs().max() < 1e-5
