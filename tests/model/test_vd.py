"""The VD container, flow-aware loading and parity through every checkpoint layout (vd.py).

Parity: tiny diffusers/transformers modules with random weights are saved as a
diffusers folder, as v1/v2-style ``.pth`` files (renamed with the section 7.3
derivation in ``scripts/make_manifests.py``, independent of our key maps) and as
separate kl-f8 / Optimus files; ``load_vd`` must reproduce the reference outputs.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from vdnodes.model.checkpoints import CheckpointError, KeyMismatchError
from vdnodes.model.conditioning import ContextInput
from vdnodes.model.configs import (
    VDConfig, config_from_diffusers, full_config, preset, tiny_config, unet_config_from_diffusers,
)
from vdnodes.model.optimus import OptimusVAE
from vdnodes.model.unet import UNetConfig
from vdnodes.model.vd import (
    COMPONENTS, NotLoaded, build, components_for_flows, flow_report, load_vd, save_vd,
)

diffusers = pytest.importorskip("diffusers")
UNET_TOL = 1e-5
# diffusers' own text UNet calls a deprecated argument internally.
pytestmark = pytest.mark.filterwarnings("ignore:`scale` is deprecated:FutureWarning")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP spin-waiting on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

_spec = importlib.util.spec_from_file_location(
    "make_manifests", Path(__file__).resolve().parents[2] / "scripts" / "make_manifests.py")
mm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mm)


# ---------------------------------------------------------------------------
# Reference modules (diffusers / transformers) at the tiny config, saved to disk
# ---------------------------------------------------------------------------

def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Make every weight non-trivial (diffusers zero-inits some output layers)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _swap_attentions(image_unet, text_unet) -> None:
    """What diffusers' text->image pipeline does: exchange the Transformer2DModels."""
    from diffusers.models import Transformer2DModel

    for name, module in list(image_unet.named_modules()):
        if isinstance(module, Transformer2DModel):
            parent, index = name.rsplit(".", 1)
            a, b = image_unet.get_submodule(parent), text_unet.get_submodule(parent)
            a[int(index)], b[int(index)] = b[int(index)], a[int(index)]


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import UNetFlatConditionModel
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    cfg = tiny_config()
    u = cfg.unet
    common = dict(
        block_out_channels=tuple(u.model_channels * m for m in u.channel_mult), layers_per_block=u.num_res_blocks,
        attention_head_dim=u.heads, cross_attention_dim=u.context_dim, norm_num_groups=u.norm_groups,
        sample_size=None)
    torch.manual_seed(0)
    image_unet = UNet2DConditionModel(
        in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, **common).eval()
    text_unet = UNetFlatConditionModel(
        in_channels=(u.text_dim, 1, 1), out_channels=(u.text_dim, 1, 1),
        down_block_types=("CrossAttnDownBlockFlat",) * 3 + ("DownBlockFlat",),
        up_block_types=("UpBlockFlat",) + ("CrossAttnUpBlockFlat",) * 3, **common).eval()
    v = cfg.vae
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=v.z_channels, layers_per_block=v.num_res_blocks,
        block_out_channels=tuple(v.ch * m for m in v.ch_mult), norm_num_groups=v.norm_groups,
        down_block_types=("DownEncoderBlock2D",) * len(v.ch_mult),
        up_block_types=("UpDecoderBlock2D",) * len(v.ch_mult), sample_size=16).eval()
    text_encoder = CLIPTextModelWithProjection(cfg.clip_text).eval()
    image_encoder = CLIPVisionModelWithProjection(cfg.clip_vision).eval()
    optimus = OptimusVAE(cfg.optimus).eval()
    for i, m in enumerate((image_unet, text_unet, vae, text_encoder, image_encoder, optimus)):
        _perturb(m, i)
    # The conversion script copies the one time MLP into both diffusers UNets.
    text_unet.time_embedding.load_state_dict(image_unet.time_embedding.state_dict())

    folder = tmp_path_factory.mktemp("vd-diffusers")
    image_unet.save_pretrained(folder / "image_unet")
    text_unet.save_pretrained(folder / "text_unet", safe_serialization=False)  # a .bin component
    vae.save_pretrained(folder / "vae")
    text_encoder.save_pretrained(folder / "text_encoder")
    image_encoder.save_pretrained(folder / "image_encoder")
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({  # the HF repo's file
        "_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000, "set_alpha_to_one": False,
        "steps_offset": 1}))
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "VersatileDiffusionPipeline", "_diffusers_version": "0.8.0",
        "image_unet": ["diffusers", "UNet2DConditionModel"],
        "text_unet": ["versatile_diffusion", "UNetFlatConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "image_feature_extractor": ["transformers", "CLIPImageProcessor"],
        "scheduler": ["diffusers", "DDIMScheduler"]}))
    return dict(cfg=cfg, image_unet=image_unet, text_unet=text_unet, vae=vae, text_encoder=text_encoder,
                image_encoder=image_encoder, optimus=optimus, folder=folder,
                files=tmp_path_factory.mktemp("vd-pth"))


@pytest.fixture(scope="module")
def inputs(ref):
    g = torch.Generator().manual_seed(1)
    cfg = ref["cfg"]
    d = cfg.unet.context_dim
    return dict(
        x_img=torch.randn(2, 4, 8, 8, generator=g), x_txt=torch.randn(2, cfg.unet.text_dim, generator=g),
        t=torch.tensor([10, 700]), ctx_img=torch.randn(2, 65, d, generator=g),
        ctx_txt=torch.randn(2, 77, d, generator=g), z=torch.randn(2, 4, 4, 4, generator=g),
        images=torch.rand(2, 3, 16, 16, generator=g), ids=torch.randint(0, 49406, (2, 77), generator=g))


@pytest.fixture(scope="module")
def expected(ref, inputs):
    """Reference outputs of the diffusers/transformers modules."""
    i = inputs
    with torch.no_grad():
        out = {
            "img_img": ref["image_unet"](i["x_img"], i["t"], i["ctx_img"]).sample,
            "txt_txt": ref["text_unet"](i["x_txt"][:, :, None, None], i["t"], i["ctx_txt"]).sample.flatten(1),
        }
        image_unet, text_unet = copy.deepcopy(ref["image_unet"]), copy.deepcopy(ref["text_unet"])
        _swap_attentions(image_unet, text_unet)
        out["img_txt"] = image_unet(i["x_img"], i["t"], i["ctx_txt"]).sample
        out["txt_img"] = text_unet(i["x_txt"][:, :, None, None], i["t"], i["ctx_img"]).sample.flatten(1)
        vae = ref["vae"]
        out["decode"] = ((vae.decode(i["z"]).sample + 1) / 2).clamp(0, 1)
        out["posterior_mean"] = vae.encode(i["images"] * 2 - 1).latent_dist.mean
        te = ref["text_encoder"](input_ids=i["ids"])
        tokens = ref["text_encoder"].text_projection(te.last_hidden_state)
        out["clip_text"] = tokens / te.text_embeds.norm(dim=-1)[:, None, None]
    return out


def _run(model, x, t, xtype, *contexts):
    with torch.no_grad():
        return model.unet(x, t, xtype, [ContextInput(c, m) for c, m in contexts])


def check_unet(model, inputs, expected, pairs=("img_img", "img_txt", "txt_img", "txt_txt")):
    i = inputs
    cases = {
        "img_img": (i["x_img"], "image", (i["ctx_img"], "image")),
        "img_txt": (i["x_img"], "image", (i["ctx_txt"], "text")),
        "txt_img": (i["x_txt"], "text", (i["ctx_img"], "image")),
        "txt_txt": (i["x_txt"], "text", (i["ctx_txt"], "text")),
    }
    for name in pairs:
        x, xtype, ctx = cases[name]
        got = _run(model, x, i["t"], xtype, ctx)
        torch.testing.assert_close(got, expected[name], atol=UNET_TOL, rtol=0, msg=lambda m: f"{name}: {m}")


def check_vae_and_clip(model, ref, inputs, expected):
    i = inputs
    with torch.no_grad():
        scale = model.config.vae.scale_factor
        torch.testing.assert_close(model.vae_image.decode(i["z"] * scale), expected["decode"], atol=1e-5, rtol=0)
        torch.testing.assert_close(model.vae_image.posterior(i["images"]).mode(), expected["posterior_mean"],
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(model.clip_text.encode_ids(i["ids"]), expected["clip_text"], atol=1e-5, rtol=0)
    ours = model.clip_image.model.state_dict()
    for k, v in ref["image_encoder"].state_dict().items():
        assert torch.equal(ours[k], v), k


def check_optimus(model, ref):
    ours, src = model.vae_text.state_dict(), ref["optimus"].state_dict()
    assert sorted(ours) == sorted(src)
    for k, v in src.items():
        assert torch.equal(ours[k], v), k
    ids = torch.tensor([[11, 5, 6, 7, 12], [11, 8, 12, 0, 0]])  # tiny vocabulary: 100 ids
    with torch.no_grad():
        torch.testing.assert_close(model.vae_text.encode_ids(ids), ref["optimus"].encode_ids(ids), atol=0, rtol=0)


# ---------------------------------------------------------------------------
# Files in the original VD layouts, renamed by the independent 7.3 derivation
# ---------------------------------------------------------------------------

SCHEDULE = {name: torch.rand(1000) for name in mm.SCHEDULE_BUFFERS}


def _optimus_file_state(ref) -> dict[str, torch.Tensor]:
    state = dict(ref["optimus"].state_dict())
    n = ref["cfg"].optimus.dec_max_positions
    for layer in range(ref["cfg"].optimus.dec_layers):  # old GPT-2 saved its causal mask
        state[f"decoder.transformer.h.{layer}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
    return state


def _kl_f8_state(ref) -> dict[str, torch.Tensor]:
    n_levels = len(ref["cfg"].vae.ch_mult)
    out = {}
    for k, v in ref["vae"].state_dict().items():
        key, shape = mm.vae_key_to_ldm(k, tuple(v.shape), n_levels)
        out[key] = v.reshape(shape)
    return out


def _unet_state(ref, version: str) -> dict[str, torch.Tensor]:
    out = {}
    for modality, unet in (("image", ref["image_unet"]), ("text", ref["text_unet"])):
        for k, v in unet.state_dict().items():
            if k.startswith("time_embedding.") and modality == "text":
                continue  # one time MLP only
            name = mm.unet_key_to_vd(k, flat=modality == "text", version=version)
            if version == "v1":
                wrapper = "" if k.startswith("time_embedding.") else f"unet_{modality}."
                out["model.diffusion_model." + wrapper + name] = v
            else:
                out[f"diffuser.{modality}." + name] = v
    return out


@pytest.fixture(scope="module")
def v1_file(ref):
    state = {**_unet_state(ref, "v1"), **SCHEDULE}
    state.update({"autokl." + k: v for k, v in _kl_f8_state(ref).items()})
    state.update({"optimus." + k: v for k, v in _optimus_file_state(ref).items()})
    for enc in ("text_encoder", "image_encoder"):
        state.update({"clip.model." + k: v for k, v in ref[enc].state_dict().items()})
    state["clip.model.logit_scale"] = torch.tensor(4.6)
    state["clip.model.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    path = ref["files"] / "vd-four-flow-v1-0-deprecated.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def v2_files(ref):
    files = ref["files"]
    torch.save({**_unet_state(ref, "v2"), **SCHEDULE}, files / "vd-four-flow-v1-0.pth")
    torch.save(_kl_f8_state(ref), files / "kl-f8.pth")
    torch.save(_optimus_file_state(ref), files / "optimus-vae.pth")
    return files


def _complete_v2_state(ref) -> dict[str, torch.Tensor]:
    """A whole ``VD_v2_0.state_dict()``: UNets, ``vae.image.``, ``vae.text.``, two CLIPModels.

    Each context encoder holds a full CLIPModel; the half it does not use is filled with
    other numbers here, so a loader reading the wrong half fails the parity checks.
    """
    state = {**_unet_state(ref, "v2"), **SCHEDULE}
    state.update({"vae.image." + k: v for k, v in _kl_f8_state(ref).items()})
    state.update({"vae.text." + k: v for k, v in _optimus_file_state(ref).items()})
    used = {"text": ref["text_encoder"].state_dict(), "image": ref["image_encoder"].state_dict()}
    for which, other in (("text", "image"), ("image", "text")):
        state.update({f"ctx.{which}.model." + k: v for k, v in used[which].items()})
        state.update({f"ctx.{which}.model." + k: torch.randn_like(v) if v.is_floating_point() else v
                      for k, v in used[other].items()})
        state[f"ctx.{which}.model.logit_scale"] = torch.tensor(4.6)
    return state


@pytest.fixture(scope="module")
def v2_model_files(ref):
    """The complete v2 model saved in fp32 and in fp16 (the demo's ``.half()`` network)."""
    state = _complete_v2_state(ref)
    paths = {torch.float32: ref["files"] / "vd-v2-model-fp32.pth", torch.float16: ref["files"] / "vd-v2-model-fp16.pth"}
    torch.save(state, paths[torch.float32])
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, paths[torch.float16])
    return paths


# ---------------------------------------------------------------------------
# Parity through each layout
# ---------------------------------------------------------------------------

def test_diffusers_folder_parity(ref, inputs, expected):
    model = load_vd(ref["folder"], config=tiny_config())
    assert model.components == frozenset(COMPONENTS) - {"vae_text.encoder", "vae_text.decoder"}
    assert model.vae_text is None  # diffusers has no Optimus
    assert model.config.unet == ref["cfg"].unet  # rebuilt from the config.json files
    check_unet(model, inputs, expected)
    check_vae_and_clip(model, ref, inputs, expected)


@pytest.fixture(scope="module")
def v1_model(v1_file):
    return load_vd(v1_file, config=tiny_config())


def test_v1_full_pth_parity(ref, inputs, expected, v1_model):
    model = v1_model
    assert model.components == frozenset(COMPONENTS)
    check_unet(model, inputs, expected)
    check_vae_and_clip(model, ref, inputs, expected)
    check_optimus(model, ref)


def test_v2_pth_with_separate_vaes_and_clip_parity(ref, inputs, expected, v2_files):
    f = v2_files
    model = load_vd(f / "vd-four-flow-v1-0.pth", config=tiny_config(), image_vae=f / "kl-f8.pth",
                    text_vae=f / "optimus-vae.pth", clip=ref["folder"])
    assert model.components == frozenset(COMPONENTS)
    check_unet(model, inputs, expected)
    check_vae_and_clip(model, ref, inputs, expected)
    check_optimus(model, ref)


def test_complete_v2_model_state_dict_loads_everything_from_one_file(ref, inputs, expected, v2_model_files):
    model = load_vd(v2_model_files[torch.float32], config=tiny_config())
    assert model.components == frozenset(COMPONENTS)  # CLIP and both VAEs from ctx.* / vae.*
    check_unet(model, inputs, expected)
    check_vae_and_clip(model, ref, inputs, expected)
    check_optimus(model, ref)
    assert torch.equal(model.clip_text.model.text_projection.weight,
                       ref["text_encoder"].text_projection.weight)  # the text half of ctx.text
    half = load_vd(v2_model_files[torch.float16], config=tiny_config(), dtype=torch.float16)
    full, halved = model.state_dict(), half.state_dict()
    assert sorted(full) == sorted(halved)
    wrong = [k for k, v in full.items() if v.is_floating_point() and not torch.equal(halved[k], v.half())]
    assert not wrong, wrong[:5]
    as_fp32 = load_vd(v2_model_files[torch.float16], config=tiny_config(), flows="text_to_image")
    assert {p.dtype for p in as_fp32.parameters()} == {torch.float32}


def test_diffusers_folder_plus_optimus_file(ref, inputs, expected, v2_files):
    model = load_vd(ref["folder"], config=tiny_config(), flows="text_variation",
                    text_vae=v2_files / "optimus-vae.pth")
    assert model.components == components_for_flows("text_variation")
    assert isinstance(model.vae_text.encoder, NotLoaded)
    check_unet(model, inputs, expected, pairs=("txt_txt",))
    src = ref["optimus"].decoder.state_dict()
    assert all(torch.equal(v, src[k]) for k, v in model.vae_text.decoder.state_dict().items())


def test_v2_pth_alone_says_what_is_missing(ref, v2_files):
    path = v2_files / "vd-four-flow-v1-0.pth"
    with pytest.raises(CheckpointError, match=r"no weights for \['clip_text', 'vae_image.decoder'\].*"
                                              r"clip=.*image_vae="):
        load_vd(path, config=tiny_config(), flows="text_to_image")
    unet_only = load_vd(path, config=tiny_config())  # default: what the file holds
    assert unet_only.components == {c for c in COMPONENTS if c.startswith("unet.")}


def test_lone_vae_files(ref, inputs, expected, v2_files):
    vae = load_vd(v2_files / "kl-f8.pth", config=tiny_config())
    assert vae.components == {"vae_image.encoder", "vae_image.decoder"} and vae.unet is None
    with torch.no_grad():
        torch.testing.assert_close(vae.vae_image.decode(inputs["z"] * vae.config.vae.scale_factor),
                                   expected["decode"], atol=1e-5, rtol=0)
    optimus = load_vd(v2_files / "optimus-vae.pth", config=tiny_config(), flows="encode_text_latent")
    assert optimus.components == {"vae_text.encoder"}
    assert isinstance(optimus.vae_text.decoder, NotLoaded)


# ---------------------------------------------------------------------------
# Flow-aware loading
# ---------------------------------------------------------------------------

def test_text_to_image_loads_only_what_it_needs(ref, inputs, expected):
    model = load_vd(ref["folder"], config=tiny_config(), flows="text_to_image")
    assert list(model.unet.data) == ["image"] and list(model.unet.context) == ["text"]
    assert model.vae_text is None and model.clip_image is None and model.clip_text is not None
    assert isinstance(model.vae_image.encoder, NotLoaded)
    with pytest.raises(AttributeError, match="'vae_image.encoder' was not loaded"):
        model.vae_image.encode(inputs["images"])
    whole = build(tiny_config(), device="meta").parameter_counts()
    counts = model.parameter_counts()
    needed = components_for_flows("text_to_image")
    assert counts["total"] == sum(whole[c] for c in needed) < whole["total"]
    assert "unet.data.text" not in counts and "vae_text.decoder" not in counts
    check_unet(model, inputs, expected, pairs=("img_txt",))


def test_flow_components():
    assert components_for_flows("text_to_image") == {
        "unet.time", "unet.data.image", "unet.context.text", "clip_text", "vae_image.decoder"}
    assert components_for_flows("image_to_text") == {
        "unet.time", "unet.data.text", "unet.context.image", "clip_image", "vae_text.decoder"}
    assert components_for_flows(["image_variation", "text_variation"]) >= {"unet.data.text", "unet.data.image"}
    assert components_for_flows("dual_guided") >= {"unet.context.image", "unet.context.text"}
    with pytest.raises(ValueError, match="unknown flow.*known flows"):
        components_for_flows("text_to_video")
    with pytest.raises(ValueError, match="unknown VD component"):
        build(tiny_config(), ["unet.data.video"], device="meta")


def test_full_size_parameter_counts_on_meta():
    counts = build(full_config(), device="meta").parameter_counts()
    assert counts == {  # vd-architecture.md sections 2-4 (VAE halves include quant convs)
        "unet.time": 2_050_560, "unet.data.image": 590_231_044, "unet.data.text": 1_439_558_528,
        "unet.context.image": 267_239_360, "unet.context.text": 267_239_360,
        "vae_image.encoder": 34_163_664, "vae_image.decoder": 49_490_199,
        "vae_text.encoder": 109_489_920, "vae_text.decoder": 132_109_824,
        "clip_text": 123_650_304, "clip_image": 303_966_208, "total": 3_319_188_971,
    }
    t2i = flow_report("text_to_image", counts=counts)
    assert t2i["needed"] == 1_032_661_467 and t2i["total"] == counts["total"]
    assert "unet.data.text" not in t2i["per_component"]


# ---------------------------------------------------------------------------
# Our format, dtype, and errors
# ---------------------------------------------------------------------------

def test_own_safetensors_round_trip_and_flow_subset(v1_model, v2_files, tmp_path, inputs, expected):
    model = v1_model
    path = save_vd(model, tmp_path / "vd-tiny.safetensors", {"source": "test"})
    again = load_vd(path)  # config and components come from the file itself
    assert again.config.to_dict() == model.config.to_dict()
    assert again.components == model.components
    a, b = model.state_dict(), again.state_dict()
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    i2t = load_vd(path, flows="image_to_text")
    assert list(i2t.unet.data) == ["text"] and isinstance(i2t.vae_text.encoder, NotLoaded)
    check_unet(i2t, inputs, expected, pairs=("txt_img",))
    partial = save_vd(i2t, tmp_path / "i2t.safetensors")
    with pytest.raises(CheckpointError, match=r"no weights for \['clip_text'"):
        load_vd(partial, flows="text_to_image")
    completed = load_vd(partial, components=["vae_image.decoder", "clip_image"], image_vae=v2_files / "kl-f8.pth")
    assert completed.components == {"vae_image.decoder", "clip_image"}


def test_half_precision_load(ref):
    model = load_vd(ref["folder"], config=tiny_config(), flows="text_to_image", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_missing_and_unexpected_keys_are_reported(v1_file, tmp_path):
    state = torch.load(v1_file, weights_only=True)
    del state["model.diffusion_model.unet_image.out.2.weight"]
    state["model.diffusion_model.unet_image.extra_block.weight"] = torch.zeros(3)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(KeyMismatchError, match=r"1 missing .*unet\.data\.image\.blocks\.29\.out\.weight.*"
                                               r"1 unexpected .*extra_block") as info:
        load_vd(path, config=tiny_config())
    assert "broken.pth" in str(info.value)


def test_wrong_config_for_a_file_is_a_shape_error(v1_file):
    with pytest.raises(KeyMismatchError, match="with the wrong shape"):
        load_vd(v1_file, flows="text_to_image")  # full-size config, tiny weights


def test_diffusers_folder_with_foreign_schedule_or_config(ref, tmp_path):
    import shutil

    folder = Path(shutil.copytree(ref["folder"], tmp_path / "copy"))
    sched = folder / "scheduler" / "scheduler_config.json"
    sched.write_text(json.dumps({**json.loads(sched.read_text()), "prediction_type": "v_prediction"}))
    with pytest.raises(CheckpointError, match="prediction_type.*v_prediction.*differ from Versatile"):
        load_vd(folder, config=tiny_config())
    sched.unlink()
    unet_cfg = folder / "image_unet" / "config.json"
    unet_cfg.write_text(json.dumps({**json.loads(unet_cfg.read_text()), "use_linear_projection": True}))
    with pytest.raises(CheckpointError, match="copy.*use_linear_projection=True"):
        load_vd(folder, config=tiny_config())


def test_unknown_layout_and_bad_paths(tmp_path):
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="unknown checkpoint layout"):
        load_vd(tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="folder without model_index.json"):
        load_vd(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_vd(tmp_path / "nope.pth")


# ---------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------

SD_V1_UNET = {  # fields of shi-labs/versatile-diffusion image_unet/config.json (section 7.4)
    "in_channels": 4, "out_channels": 4, "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
    "attention_head_dim": 8, "cross_attention_dim": 768, "norm_num_groups": 32, "norm_eps": 1e-5,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "flip_sin_to_cos": True,
    "freq_shift": 0, "sample_size": None,
}


def test_config_from_diffusers_full_size():
    text = {**SD_V1_UNET, "in_channels": [768, 1, 1], "out_channels": [768, 1, 1],
            "down_block_types": ["CrossAttnDownBlockFlat"] * 3 + ["DownBlockFlat"]}
    assert unet_config_from_diffusers(SD_V1_UNET, text) == UNetConfig()
    vae = {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 4}
    cfg = config_from_diffusers({"image_unet": SD_V1_UNET, "text_unet": text, "vae": vae})
    assert cfg.vae == full_config().vae
    with pytest.raises(ValueError, match="use_linear_projection"):
        unet_config_from_diffusers({**SD_V1_UNET, "use_linear_projection": True}, None)
    with pytest.raises(ValueError, match="differ in \\['heads'\\]"):
        unet_config_from_diffusers(SD_V1_UNET, {**text, "attention_head_dim": 4})


def test_config_round_trip_and_checks():
    for name in ("full", "tiny"):
        cfg = preset(name)
        again = VDConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert again.to_dict() == cfg.to_dict()
    with pytest.raises(ValueError, match="unknown VD config preset"):
        preset("huge")
    tiny = tiny_config()
    with pytest.raises(ValueError, match="Optimus latent_dim .* must equal UNet text_dim"):
        VDConfig(unet=tiny.unet, vae=tiny.vae, clip_text=tiny.clip_text, clip_vision=tiny.clip_vision,
                 optimus=full_config().optimus, name="bad")


# ---------------------------------------------------------------------------
# Checking weights from their headers (load_vd(shapes_only=True)), as preflight does
# ---------------------------------------------------------------------------

def test_shapes_only_checks_every_arrangement_without_reading_weights(ref, v1_file, v2_files):
    for path, extras in ((ref["folder"], {}), (v1_file, {}),
                         (v2_files / "vd-four-flow-v1-0.pth", {"image_vae": v2_files / "kl-f8.pth",
                                                                "text_vae": v2_files / "optimus-vae.pth",
                                                                "clip": ref["folder"]})):
        model = load_vd(path, config=tiny_config(), shapes_only=True, **extras)
        assert {p.device.type for p in model.parameters()} == {"meta"}
        assert model.components == frozenset(COMPONENTS) or path == ref["folder"]


def test_shapes_only_names_the_component_key_and_shapes_of_a_wrong_tensor(v1_file, tmp_path):
    state = torch.load(v1_file, weights_only=True)
    key = "model.diffusion_model.unet_image.out.2.weight"
    state[key] = torch.zeros(3, *state[key].shape[1:])
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(KeyMismatchError, match=r"wrong\.pth.*unet_image\.out\.2\.weight: \[3, .*component: unet\.data\.image"):
        load_vd(path, config=tiny_config(), shapes_only=True)


def test_a_diffusers_folder_with_a_missing_component_or_a_broken_index(ref, tmp_path):
    import shutil

    folder = Path(shutil.copytree(ref["folder"], tmp_path / "copy"))
    shutil.rmtree(folder / "vae")
    with pytest.raises(CheckpointError, match=r"lists the component\(s\) \['vae'\].*incomplete"):
        load_vd(folder, config=tiny_config(), shapes_only=True)
    (folder / "model_index.json").write_text('{"image_unet": ["diffusers", ')
    with pytest.raises(CheckpointError, match="model_index.json.*not valid JSON"):
        load_vd(folder, config=tiny_config(), shapes_only=True)
    (folder / "model_index.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="holds a list"):
        load_vd(folder, config=tiny_config(), shapes_only=True)
