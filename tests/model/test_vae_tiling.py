"""Tiled VAE passes and chunked attention: close to the untiled result, and bounded memory.

The seam figures come from vd-nano's trained image VAE (kl-f4, shipped in the package) on a real
picture: random weights would say nothing about visible edges. Memory is measured as the growth of
peak RSS in a child process (benchmarks/vae_memory.py measures the full-size kl-f8 at 2048 px).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vdnodes.model import vae as vae_mod
from vdnodes.model.vae_tiling import ENV

ROOT = Path(__file__).resolve().parents[2]
PICTURE = ROOT / "graphs" / "inputs" / "yellow_striped_triangle_on_green.png"
SIDE = 128  # pixels; vd-nano's f4 latent is 32 x 32, tiled 16 + overlap 8 -> 3 x 3 tiles


@pytest.fixture(scope="module")
def nano_vae():
    from vdnodes.nano.weights import load_nano

    vae = load_nano(components={"vae_image.encoder", "vae_image.decoder"}).vae_image
    vae.tile_size, vae.tile_overlap = 16, 8
    return vae


@pytest.fixture(scope="module")
def picture():
    from PIL import Image

    with Image.open(PICTURE) as im:
        im = im.convert("RGB").resize((SIDE, SIDE), Image.BICUBIC)
        pixels = torch.tensor(list(im.get_flattened_data()), dtype=torch.float32) / 255
        return pixels.view(1, SIDE, SIDE, 3).permute(0, 3, 1, 2)


def test_tiled_decode_matches_untiled_and_the_blend_hides_the_seams(nano_vae, picture):
    with torch.inference_mode():
        z = nano_vae.encode(picture, sample=False, tiled=False)  # [1, 4, 32, 32]
        whole = nano_vae.decode(z, tiled=False)
        tiled = nano_vae.decode(z, tiled=True)
        nano_vae.tile_overlap = 0  # hard tile edges, no cross-fade: what the blend must beat
        try:
            hard = nano_vae.decode(z, tiled=True)
        finally:
            nano_vae.tile_overlap = 8
    err, hard_err = (tiled - whole).abs(), (hard - whole).abs()
    print(f"tiled decode: max {err.max():.4f} mean {err.mean():.4f}; hard tiles max {hard_err.max():.4f}")
    # measured 2026-12-08 (torch 2.13 CPU): max 0.057, mean 0.009 of the [0, 1] range
    # (the VAE's own reconstruction error: mean 0.046); hard tiles: max 0.53
    assert err.max() < 0.08 and err.mean() < 0.012
    assert hard_err.max() > 3 * err.max()


def test_tiled_encode_matches_untiled(nano_vae, picture):
    with torch.inference_mode():
        whole = nano_vae.decode(nano_vae.encode(picture, sample=False, tiled=False), tiled=False)
        tiled = nano_vae.decode(nano_vae.encode(picture, sample=False, tiled=True), tiled=False)
    err = (tiled - whole).abs()
    print(f"tiled encode, pixels after decoding: max {err.max():.4f} mean {err.mean():.4f}")
    assert err.max() < 0.25 and err.mean() < 0.01  # measured 2026-12-08: max 0.179, mean 0.0095


def test_the_memory_budget_chooses_tiling(nano_vae, picture, monkeypatch):
    with torch.inference_mode():
        z = nano_vae.encode(picture, sample=False, tiled=False)
        whole, tiled = nano_vae.decode(z, tiled=False), nano_vae.decode(z, tiled=True)
        monkeypatch.setenv(ENV, "0.001")  # 1 MB: a 128 px decode does not fit
        assert torch.equal(nano_vae.decode(z), tiled)
        monkeypatch.setenv(ENV, "64")
        assert torch.equal(nano_vae.decode(z), whole)


def test_chunked_attention_is_exact(monkeypatch):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 300, 64, generator=g) for _ in range(3))
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    monkeypatch.setattr(vae_mod, "ATTENTION_CHUNK_BYTES", 2 * 300 * 4 * 7)  # 7 query rows per chunk
    assert torch.allclose(vae_mod.chunked_attention(q, k, v), full, atol=1e-6)


CHILD = """
import json, sys, torch
from pathlib import Path
from vdnodes.model.vae import ImageVAE, VAEConfig
torch.manual_seed(0)  # an f8 VAE, 32 channels at full resolution: memory only, so random weights
vae = ImageVAE(VAEConfig(ch=32, ch_mult=(1, 1, 1, 1), num_res_blocks=1, norm_groups=8)).eval()
vae.tile_size, vae.tile_overlap = 16, 4
tiled = sys.argv[1] == "tiled"
def rss(field):
    return next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
with torch.inference_mode():
    vae.decode(torch.randn(1, 4, 16, 16), tiled=tiled)  # warm-up: lazy library state
    z = torch.randn(1, 4, 64, 64)  # 512 px
    before = rss("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    vae.decode(z, tiled=tiled)
    print(json.dumps({"peak_mib": (rss("VmHWM") - before) / 1024}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to reset peak RSS")
def test_tiling_bounds_the_peak_memory_of_a_large_decode():
    def peak(mode: str) -> float:
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True, text=True,
                             check=True, cwd=ROOT)
        return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]

    untiled, tiled = peak("untiled"), peak("tiled")
    # measured 2026-12-08: untiled 192 MiB, tiled 75 MiB
    assert tiled < untiled / 2
