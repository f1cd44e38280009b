"""CLIP context encoders: sizes, tokenizer, VD's normalisation, preprocessing, masks, keys."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from vdnodes.model.clip import (
    CLIP_MEAN,
    CLIP_STD,
    CLIPImageContext,
    CLIPTextContext,
    UncondImage,
    clip_ignored_keys,
    clip_text_config,
    clip_text_keymap,
    clip_vision_config,
    clip_vision_keymap,
    position_code,
    tiny_clip_text_config,
    tiny_clip_vision_config,
)
from vdnodes.model.keymap import remap
from vdnodes.model.tokenizers import clip_tokenizer

MANIFESTS = Path(__file__).parent / "manifests"
VD_PIPELINES = "diffusers.pipelines.deprecated.versatile_diffusion"
EOS = 49407


@pytest.fixture(scope="module")
def text_ctx() -> CLIPTextContext:
    torch.manual_seed(0)
    return CLIPTextContext(tiny_clip_text_config()).eval()


@pytest.fixture(scope="module")
def image_ctx() -> CLIPImageContext:
    torch.manual_seed(0)
    return CLIPImageContext(tiny_clip_vision_config()).eval()


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


# ----- sizes and keys -----


def test_full_size_parameter_counts_on_meta():
    with torch.device("meta"):
        text, image = CLIPTextContext(clip_text_config()), CLIPImageContext(clip_vision_config())
    assert sum(p.numel() for p in text.parameters()) == 123_650_304
    assert sum(p.numel() for p in image.parameters()) == 303_966_208
    assert image.num_tokens == 257


def _meta_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_diffusers_keys_map_onto_ours():
    with torch.device("meta"):
        text, image = CLIPTextContext(clip_text_config()), CLIPImageContext(clip_vision_config())
    for name, module, keymap in [
        ("diffusers_text_encoder.json", text, clip_text_keymap("diffusers")),
        ("diffusers_image_encoder.json", image, clip_vision_keymap("diffusers")),
    ]:
        keys = json.loads((MANIFESTS / name).read_text())["keys"]
        renamed, unmatched = remap(keys, keymap, ignore=clip_ignored_keys("diffusers"))
        ours = _meta_shapes(module)
        assert unmatched == [] and set(renamed) == set(ours)
        assert all(tuple(renamed[k]) == ours[k] for k in ours)


def test_vd_v1_clip_keys_map_onto_ours():
    keys = json.loads(gzip.decompress((MANIFESTS / "vd_v1_full.json.gz").read_bytes()))["keys"]
    keys = {k: v for k, v in keys.items() if k.startswith("clip.")}
    with torch.device("meta"):
        text, image = CLIPTextContext(clip_text_config()), CLIPImageContext(clip_vision_config())
    keymap = {**clip_text_keymap("vd-v1"), **clip_vision_keymap("vd-v1")}
    renamed, unmatched = remap(keys, keymap, ignore=clip_ignored_keys("vd-v1"))
    ours = {**_meta_shapes(text), **_meta_shapes(image)}
    assert unmatched == [] and set(renamed) == set(ours)
    assert all(tuple(renamed[k]) == ours[k] for k in ours)


# ----- tokenizer -----


def test_offline_clip_tokenizer():
    tok = clip_tokenizer()
    assert len(tok) == 49408
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok("Hello, World!")["input_ids"] == [49406, 3306, 267, 1002, 256, 49407]
    assert tok.pad_token_id == EOS
    assert clip_tokenizer() is tok  # cached


# ----- text context -----


@torch.no_grad()
def test_text_context_shape_and_eos_token_has_norm_one(text_ctx):
    prompts = ["a photo of a cat", "a red car on a wet street at night"]
    ids, truncated = text_ctx.tokenize(prompts)
    ctx = text_ctx.encode(prompts)
    assert ctx.shape == (2, 77, 32) and truncated == [False, False]
    eos = (ids == EOS).int().argmax(dim=1)  # first EOS = the pooled token
    norms = ctx[torch.arange(2), eos].norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(2))
    # other tokens are not normalised individually
    assert not torch.allclose(ctx[0, 1].norm(), torch.tensor(1.0), atol=1e-3)


@torch.no_grad()
def test_text_truncation_is_reported(text_ctx):
    ids, truncated = text_ctx.tokenize(["cat " * 100, "dog"])
    assert truncated == [True, False]
    assert ids.shape == (2, 77) and ids[0, -1].item() == EOS and ids[1, 3:].eq(EOS).all()


@torch.no_grad()
def test_text_unconditional_is_empty_prompt(text_ctx):
    u = text_ctx.unconditional(3)
    assert u.shape == (3, 77, 32)
    torch.testing.assert_close(u, text_ctx.encode(["", "", ""]))


def test_text_rejects_single_string(text_ctx):
    with pytest.raises(TypeError, match="list"):
        text_ctx.encode("a cat")


# ----- image preprocessing -----


def test_non_square_image_is_centre_cropped(image_ctx):
    # 32 x 64: the short side is already 32, so the crop is exact: columns 16..47.
    img = torch.rand(1, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    out = image_ctx.preprocess(img)
    assert out.shape == (1, 3, 32, 32)
    torch.testing.assert_close(out, _normalise(img[..., 16:48]))


def test_resize_crop_and_squash_modes(image_ctx):
    # Left and right quarters red, middle half green, 48 x 96.
    img = torch.zeros(2, 3, 48, 96)
    img[:, 0, :, :24] = img[:, 0, :, 72:] = 1.0
    img[:, 1, :, 24:72] = 1.0
    cropped = image_ctx.preprocess(img)
    squashed = image_ctx.preprocess(img, squash_to=64)
    assert cropped.shape == squashed.shape == (2, 3, 32, 32)
    green = _normalise(torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1))
    red = _normalise(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
    torch.testing.assert_close(cropped[:, :, :, 2:30], green.expand(2, 3, 32, 28), atol=1e-5, rtol=0)
    torch.testing.assert_close(squashed[:, :, :, :4], red.expand(2, 3, 32, 4), atol=1e-5, rtol=0)


def test_preprocess_rejects_wrong_shape(image_ctx):
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        image_ctx.preprocess(torch.rand(3, 32, 32))


# ----- image context -----


@torch.no_grad()
def test_image_context_shape_and_cls_token_has_norm_one(image_ctx):
    img = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    ctx = image_ctx.encode(img)
    assert ctx.shape == (2, (32 // 4) ** 2 + 1, 32) == (2, image_ctx.num_tokens, 32)
    torch.testing.assert_close(ctx[:, 0].norm(dim=-1), torch.ones(2))


@torch.no_grad()
def test_all_ones_mask_gives_plain_encoding(image_ctx):
    img = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    assert torch.equal(image_ctx.encode(img, torch.ones(2, 1, 32, 32)), image_ctx.encode(img))


@torch.no_grad()
def test_mask_weights_and_masked_encoding(image_ctx):
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16] = 1.0  # keep the left half
    w = image_ctx.mask_weights(mask)  # [1, 65]
    patches = w[0, 1:].view(8, 8)
    assert w[0, 0].item() == pytest.approx(0.5)
    assert patches[:, :4].eq(1).all() and patches[:, 4:].eq(0).all()

    img = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    masked, plain = image_ctx.encode(img, mask), image_ctx.encode(img)
    tokens = masked[0, 1:].view(8, 8, -1)
    assert tokens[:, 4:].abs().max() == 0  # dropped patches are zero
    assert not torch.allclose(masked, plain)  # the embedding-level weights change the rest too


def _vd_encode_wmask(ctx: CLIPImageContext, pixels: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """VD's ``CLIPImageContextEncoder._encode_wmask`` (SHI-Labs/Versatile-Diffusion
    lib/model_zoo/clip.py at HEAD, lines 104-143) transcribed onto the same HF vision tower:
    clamp, bilinear to the tower's size (VD: 224), CLS weight = mask mean, patch weights =
    conv with a ones kernel / kernel area, the embeddings' output scaled (VD swaps in its own
    forward), then VD's ``_encode`` (lines 88-101) and the tokens scaled again."""
    import types

    import numpy as np

    model = ctx.model
    masks = torch.clamp(masks, 0, 1).float()
    size = ctx.image_size
    masks = torch.nn.functional.interpolate(masks, [size, size], mode="bilinear")
    gscale = masks.mean(axis=[1, 2, 3], keepdim=True).flatten(2)
    emb = model.vision_model.embeddings
    kernel = torch.ones([1, 1, *emb.patch_embedding.kernel_size])
    vtoken_mask = torch.nn.functional.conv2d(masks, kernel, stride=emb.patch_embedding.stride)
    vtoken_mask = vtoken_mask.flatten(2).transpose(1, 2) / np.prod(emb.patch_embedding.kernel_size)
    vtoken_mask = torch.concat([gscale, vtoken_mask], axis=1)

    def customized_embedding_forward(self, pixel_values, *args, **kwargs):
        patch_embeds = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        class_embeds = self.class_embedding.expand(pixel_values.shape[0], 1, -1)
        embeddings = torch.cat([class_embeds, patch_embeds], dim=1)
        embeddings = embeddings + self.position_embedding(self.position_ids)
        return embeddings * vtoken_mask.to(embeddings.dtype)

    old_forward = emb.forward
    emb.forward = types.MethodType(customized_embedding_forward, emb)
    try:
        z = model.vision_model(pixel_values=pixels).last_hidden_state
    finally:
        emb.forward = old_forward
    z = model.visual_projection(model.vision_model.post_layernorm(z))
    z = z / torch.norm(z[:, 0:1], dim=-1, keepdim=True)
    return z * vtoken_mask


@torch.no_grad()
def test_masked_image_context_matches_vds_procedure(image_ctx):
    """The blenders' "use mask" on a 512 x 512 input (the demo squashes image and mask to 512)."""
    g = torch.Generator().manual_seed(5)
    img = torch.rand(2, 3, 512, 512, generator=g)
    painted = torch.zeros(2, 1, 512, 512)
    painted[0, :, 100:300, 50:400] = 1.0  # the user's strokes
    painted[1, :, :, 256:] = torch.rand(1, 512, 256, generator=g)  # soft edges too
    keep = 1 - painted  # app.py line 538: m = 1 - mask
    ours = image_ctx.encode(img, keep, squash_to=512)
    ref = _vd_encode_wmask(image_ctx, image_ctx.preprocess(img, squash_to=512), keep)
    assert (ours - ref).abs().max().item() < 1e-5
    assert (ours - image_ctx.encode(img, squash_to=512)).abs().max().item() > 1e-2  # the mask matters


def test_mask_batch_must_match(image_ctx):
    with pytest.raises(ValueError, match="masks"):
        image_ctx.encode(torch.rand(2, 3, 32, 32), torch.ones(1, 1, 32, 32))


@torch.no_grad()
def test_unconditional_image_contexts(image_ctx):
    like = image_ctx.encode(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4)))
    assert torch.equal(image_ctx.unconditional(UncondImage.ZEROS, like), torch.zeros_like(like))
    black = image_ctx.unconditional("black", like)
    grey = image_ctx.unconditional("grey", like)
    assert black.shape == grey.shape == like.shape
    torch.testing.assert_close(black, image_ctx.encode(torch.zeros(2, 3, 50, 70)))
    torch.testing.assert_close(grey, image_ctx.encode(torch.full((2, 3, 64, 64), 0.5)))
    assert not torch.allclose(black, grey)
    with pytest.raises(ValueError):
        image_ctx.unconditional("white", like)


# ----- vd-nano's position code -----


def _coded_ctx(patterns: int = 8, scale: float = 60.0) -> CLIPImageContext:
    config = tiny_clip_vision_config()
    config.position_code_patterns, config.position_code_scale = patterns, scale
    torch.manual_seed(0)  # the same tower weights as the ``image_ctx`` fixture
    return CLIPImageContext(config).eval()


@pytest.mark.parametrize("highest", [True, False])
def test_position_code_is_orthonormal_and_has_the_requested_frequencies(highest):
    grid, directions = position_code(8, 32, 8, highest=highest)
    assert grid.shape == (64, 8) and directions.shape == (32, 8)
    torch.testing.assert_close(grid.T @ grid, torch.eye(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(directions.T @ directions, torch.eye(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(directions.sum(0), torch.zeros(8), atol=1e-5, rtol=0)  # feature-mean free
    torch.testing.assert_close(torch.linalg.svdvals(grid @ directions.T)[:8], torch.ones(8), atol=1e-5, rtol=0)
    # Sign changes between neighbouring patches along a row: a checkerboard-like pattern (the
    # highest frequencies) flips at almost every step, a smooth one (the lowest) at almost none.
    flips = (grid.view(8, 8, 8)[:, 1:] * grid.view(8, 8, 8)[:, :-1] < 0).float().mean().item()
    assert flips > 0.7 if highest else flips < 0.3


def test_position_code_rejects_more_patterns_than_the_grid_has():
    with pytest.raises(ValueError, match="takes 1 to 32 patterns, got 64"):
        position_code(8, 32, 64, highest=True)
    with pytest.raises(ValueError, match="position_code_scale must be > 0"):
        _coded_ctx(scale=0.0)


@torch.no_grad()
def test_configs_without_a_position_code_encode_as_before(image_ctx):
    img = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    assert image_ctx.code_patterns == 0
    assert torch.equal(image_ctx.encode(img), image_ctx.encode(img, position_code=False))


@torch.no_grad()
def test_position_code_adds_scale_times_the_code_to_the_patch_tokens_only(image_ctx):
    ctx = _coded_ctx()
    img = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    coded, own = ctx.encode(img), ctx.encode(img, position_code=False)
    assert torch.equal(own, image_ctx.encode(img))  # same tower, no code
    assert torch.equal(coded[:, 0], own[:, 0])  # the class token is untouched
    grid, directions = position_code(8, 32, 8, highest=True)
    torch.testing.assert_close(coded[:, 1:] - own[:, 1:], (60.0 * grid @ directions.T).expand(2, -1, -1))
    # Unconditional black / grey contexts are encodings, so they carry the code too.
    torch.testing.assert_close(ctx.unconditional("black", coded), ctx.encode(torch.zeros(2, 3, 32, 32)))


def test_position_code_round_trips_through_the_vd_config():
    from vdnodes.model.configs import VDConfig, tiny_config

    config = tiny_config()
    config.clip_vision.position_code_patterns, config.clip_vision.position_code_scale = 8, 60.0
    back = VDConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert (back.clip_vision.position_code_patterns, back.clip_vision.position_code_scale) == (8, 60.0)
    assert not hasattr(VDConfig.from_dict(tiny_config().to_dict()).clip_vision, "position_code_patterns")


def test_load_tokenizer_from_a_folder(tmp_path):
    from vdnodes.model.tokenizers import load_tokenizer

    clip_tokenizer().save_pretrained(tmp_path)
    tok = load_tokenizer(tmp_path)
    assert len(tok) == 49408 and tok("a photo of a cat")["input_ids"][1:-1] == [320, 1125, 539, 320, 2368]
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "missing")


# ----- parity with diffusers' VD pipelines (dev dependency) -----


@torch.no_grad()
def test_text_context_matches_diffusers(text_ctx):
    import types

    t2i = pytest.importorskip(f"{VD_PIPELINES}.pipeline_versatile_diffusion_text_to_image")
    fake = types.SimpleNamespace(tokenizer=clip_tokenizer(), text_encoder=text_ctx.model)
    prompts = ["a photo of a cat", "Hello, World!"]
    ref = t2i.VersatileDiffusionTextToImagePipeline._encode_prompt(fake, prompts, "cpu", 1, False, None)
    torch.testing.assert_close(text_ctx.encode(prompts), ref, atol=1e-6, rtol=1e-6)


@torch.no_grad()
def test_image_context_matches_diffusers_within_resampling_error():
    import types

    import numpy as np
    from PIL import Image
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    iv = pytest.importorskip(f"{VD_PIPELINES}.pipeline_versatile_diffusion_image_variation")
    torch.manual_seed(0)
    ctx = CLIPImageContext(tiny_clip_vision_config(image_size=224, patch_size=14, layers=1)).eval()
    processor = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    small = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    pil = Image.fromarray(small).resize((400, 300), Image.BICUBIC)  # smooth, non-square
    img = torch.from_numpy(np.array(pil)).permute(2, 0, 1)[None].float() / 255

    # PIL resamples in 8 bits, we in float: allow ~2/255 per pixel (normalised by std ~0.27).
    ref_pixels = processor(images=[pil], return_tensors="pt").pixel_values
    torch.testing.assert_close(ctx.preprocess(img), ref_pixels, atol=0.03, rtol=0)
    fake = types.SimpleNamespace(image_feature_extractor=processor, image_encoder=ctx.model)
    ref = iv.VersatileDiffusionImageVariationPipeline._encode_prompt(fake, [pil], "cpu", 1, False, None)
    torch.testing.assert_close(ctx.encode(img), ref, atol=0.03, rtol=0)
