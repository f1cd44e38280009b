"""Checkpoint files, layouts, key coverage and manifests (vdnodes/model/checkpoints.py).

Everything is CPU-only and small: real files are written to tmp_path, the full-size
model only ever exists on the ``meta`` device.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from vdnodes.model import checkpoints as ck
from vdnodes.model.checkpoints import CheckpointError, KeyMismatchError, Layout
from vdnodes.model.diffusers_folder import DiffusersFolder
from vdnodes.model.keymap import fit_shape, remap

MANIFESTS = Path(__file__).parent / "manifests"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP spin-waiting on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------
# Reading files: every broken file is a CheckpointError naming the file
# ---------------------------------------------------------------------------

@pytest.fixture()
def small_state() -> dict[str, torch.Tensor]:
    return {"layer.weight": torch.randn(3, 4), "layer.bias": torch.randn(3), "steps": torch.arange(5)}


def _same(a, b) -> None:
    assert sorted(a) == sorted(b)
    for k in b:
        assert torch.equal(a[k], b[k]), k


def test_reads_pth_safetensors_and_containers(tmp_path, small_state):
    torch.save(small_state, tmp_path / "plain.pth")
    torch.save({"state_dict": small_state, "epoch": 3, "lr": 0.1}, tmp_path / "lightning.ckpt")
    torch.save({"model": small_state}, tmp_path / "wrapped.pt")
    torch.save({"module." + k: v for k, v in small_state.items()}, tmp_path / "dataparallel.bin")
    torch.save(small_state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    save_file(small_state, tmp_path / "weights.safetensors")
    for name in ("plain.pth", "lightning.ckpt", "wrapped.pt", "dataparallel.bin", "legacy.pth"):
        _same(ck.read_state_dict(tmp_path / name), small_state)
    lazy = ck.read_state_dict(tmp_path / "weights.safetensors")
    assert isinstance(lazy, ck.SafetensorsState)
    assert ck.shape_of(lazy, "layer.weight") == (3, 4)
    _same(dict(lazy.items()), small_state)


def test_format_is_read_from_content_not_suffix(tmp_path, small_state):
    save_file(small_state, tmp_path / "actually_safetensors.pth")
    _same(dict(ck.read_state_dict(tmp_path / "actually_safetensors.pth").items()), small_state)


@pytest.mark.parametrize("case, needle", [
    ("missing", "does not exist"),
    ("folder", "is a folder"),
    ("empty", r"empty \(0 bytes\)"),
    ("png", "looks like a PNG image"),
    ("text", "looks like a text file"),
    ("lfs", "Git LFS pointer"),
    ("truncated_pth", "truncated"),
    ("truncated_legacy", "truncated"),
    ("truncated_safetensors", "truncated"),
    ("header_only_safetensors", "truncated"),
    ("unsafe_pickle", "unsafe unpickling"),
    ("no_tensors", "contains no tensors"),
    ("not_a_mapping", "not a state dict"),
])
def test_bad_files_give_clear_errors(tmp_path, small_state, case, needle):
    torch.save(small_state, tmp_path / "good.pth")
    torch.save(small_state, tmp_path / "good_legacy.pth", _use_new_zipfile_serialization=False)
    save_file(small_state, tmp_path / "good.safetensors")
    path = tmp_path / f"{case}.pth"
    if case == "folder":
        path = tmp_path / "a_folder"
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    elif case == "text":
        path.write_text("this is not a checkpoint\n")
    elif case == "lfs":
        path = tmp_path / "model.safetensors"
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 10\n")
    elif case == "truncated_pth":
        data = (tmp_path / "good.pth").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "truncated_legacy":
        data = (tmp_path / "good_legacy.pth").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "truncated_safetensors":
        data = (tmp_path / "good.safetensors").read_bytes()
        path = tmp_path / "cut.safetensors"
        path.write_bytes(data[:-7])
    elif case == "header_only_safetensors":
        data = (tmp_path / "good.safetensors").read_bytes()
        path = tmp_path / "cut.safetensors"
        path.write_bytes(data[:20])
    elif case == "unsafe_pickle":
        torch.save({"args": argparse.Namespace(lr=1.0), "state_dict": small_state}, path)
    elif case == "no_tensors":
        torch.save({"epoch": 3, "note": "hello"}, path)
    elif case == "not_a_mapping":
        torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match=needle) as info:
        ck.read_state_dict(path)
    assert path.name in str(info.value)
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------
# Layout detection
# ---------------------------------------------------------------------------

def load_manifest(name: str) -> dict[str, tuple[int, ...]]:
    plain, packed = MANIFESTS / f"{name}.json", MANIFESTS / f"{name}.json.gz"
    text = plain.read_text() if plain.exists() else gzip.decompress(packed.read_bytes()).decode()
    data = json.loads(text)
    assert data["meta"]["count"] == len(data["keys"])
    return {k: tuple(v) for k, v in data["keys"].items()}


@pytest.mark.parametrize("name, layout", [
    ("vd_v1_full", Layout.VD_V1_FULL), ("vd_v2", Layout.VD_V2), ("vd_v2_complete", Layout.VD_V2),
    ("kl_f8", Layout.KL_F8), ("optimus_vae", Layout.OPTIMUS),
])
def test_detects_layout_from_manifest_keys(name, layout):
    assert ck.detect_layout(load_manifest(name)) is layout


def test_own_format_detected_by_metadata():
    assert ck.detect_layout(["unet.time_embed.linear_1.weight"], {"format": "vdnodes"}) is Layout.VDNODES


def test_unknown_layout_lists_what_was_found():
    with pytest.raises(CheckpointError, match=r"unknown checkpoint layout \(3 keys.*foo\.bar\. \(2\)"):
        ck.detect_layout(["foo.bar.weight", "foo.bar.bias", "baz.x"])
    with pytest.raises(CheckpointError, match="diffusers UNet component file.*whole diffusers folder"):
        ck.detect_layout(load_manifest("diffusers_image_unet"))


# ---------------------------------------------------------------------------
# load_into: renaming, shapes, coverage errors, materialising meta modules
# ---------------------------------------------------------------------------

class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 3)          # the checkpoint stores it as a 1x1 conv
        self.norm = nn.LayerNorm(3)
        self.embed = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight  # tied, like GPT-2's lm_head and wte


def tiny_checkpoint() -> dict[str, torch.Tensor]:
    return {
        "net.proj_conv.weight": torch.randn(3, 4, 1, 1), "net.proj_conv.bias": torch.randn(3),
        "net.ln.weight": torch.randn(3), "net.ln.bias": torch.randn(3),
        "net.emb.weight": torch.randn(5, 3), "betas": torch.rand(10),
    }


TINY_MAP = {"net.proj_conv.": "proj.", "net.ln.": "norm.", "net.emb.": "embed."}


def test_load_into_meta_module_materialises_without_copy():
    state = tiny_checkpoint()
    with ck.params_on_meta():
        model = Tiny()
    assert all(p.device.type == "meta" for p in model.parameters())
    n = ck.load_into(model, state, TINY_MAP, ignore=("betas",))
    assert n == 5
    assert ck.meta_names(model) == []
    assert torch.equal(model.proj.weight, state["net.proj_conv.weight"].reshape(3, 4))
    assert model.norm.weight.data_ptr() == state["net.ln.weight"].data_ptr()  # assigned, not copied
    assert model.head.weight is model.embed.weight  # the tie survives assignment
    x = torch.randn(2, 4)
    assert model.proj(x).shape == (2, 3)


def test_params_on_meta_skips_init_of_meta_tensors_only_and_restores_torch():
    """Initialising a meta parameter is wasted work; real tensors (buffers) still get theirs."""
    originals = {name: getattr(nn.init, name) for name in ("normal_", "kaiming_uniform_", "zeros_")}
    with ck.params_on_meta():
        model = nn.Linear(4, 3)  # reset_parameters runs on the meta weight: a no-op now
        real = torch.full((5,), 7.0)
        nn.init.zeros_(real)
        meta = torch.empty(2, device="meta")
        assert nn.init.normal_(meta) is meta
    assert torch.equal(real, torch.zeros(5))
    assert model.weight.is_meta and getattr(model.weight, "_is_hf_initialized", False)
    assert {name: getattr(nn.init, name) for name in originals} == originals


def test_load_into_casts_to_module_dtype():
    with ck.params_on_meta():
        model = Tiny().to(torch.float16)
    ck.load_into(model, tiny_checkpoint(), TINY_MAP, ignore=("betas",))
    assert {p.dtype for p in model.parameters()} == {torch.float16}


def test_load_into_reports_every_problem_at_once():
    state = tiny_checkpoint()
    del state["net.ln.bias"]                       # missing
    state["net.extra.weight"] = torch.zeros(1)     # unexpected (no prefix matches)
    state["net.emb.weight"] = torch.zeros(6, 3)    # wrong shape
    with ck.params_on_meta():
        model = Tiny()
    with pytest.raises(KeyMismatchError) as info:
        ck.load_into(model, state, TINY_MAP, ignore=("betas",), what="test file")
    err = info.value
    msg = str(err)
    assert "test file does not fit Tiny" in msg
    assert "1 missing" in msg and "norm.bias" in msg
    assert "1 unexpected" in msg and "net.extra.weight" in msg
    assert "1 with the wrong shape" in msg and "net.emb.weight: [6, 3] vs model [5, 3]" in msg
    assert err.missing == ["norm.bias"] and err.unexpected == ["net.extra.weight"]


def test_load_into_limits_examples_and_counts_all():
    with ck.params_on_meta():
        model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(8)])
    with pytest.raises(KeyMismatchError, match=r"16 missing .*e\.g\. (\S+, ){4}\S+, \.\.\."):
        ck.load_into(model, {}, {})


def test_load_into_skip_leaves_parts_unread():
    state = tiny_checkpoint()
    with ck.params_on_meta():
        model = Tiny()
    ck.load_into(model, state, TINY_MAP, ignore=("betas",), skip=("embed.", "head."))
    assert model.embed.weight.device.type == "meta"
    assert ck.meta_names(model) == ["embed.weight"]


def test_two_sources_for_one_key_is_an_error():
    state = {"a.weight": torch.zeros(3, 4), "b.weight": torch.zeros(3, 4)}
    with ck.params_on_meta():
        model = nn.Module()
        model.proj = nn.Linear(4, 3, bias=False)
    with pytest.raises(CheckpointError, match="a.weight and b.weight -> proj.weight"):
        ck.load_into(model, state, {"a.": "proj.", "b.": "proj."})


# ---------------------------------------------------------------------------
# Our own format
# ---------------------------------------------------------------------------

def test_safetensors_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Tiny()
    path = ck.save_safetensors(model, tmp_path / "sub" / "tiny.safetensors",
                               {"note": "hello", "steps": 3}, config={"width": 3})
    state, meta = ck.load_safetensors(path)
    assert meta["format"] == "vdnodes" and meta["note"] == "hello" and meta["steps"] == "3"
    assert meta["config"] == {"width": 3}
    assert "head.weight" not in state  # the tied alias is stored once
    with ck.params_on_meta():
        again = Tiny()
    ck.load_into(again, state, {"": ""})
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    assert again.head.weight is again.embed.weight
    assert [p.name for p in path.parent.iterdir()] == ["tiny.safetensors"]  # no temp files left


def test_same_weights_and_metadata_give_the_same_bytes(tmp_path):
    # safetensors writes metadata in hash-map order (random per map): without canonical headers
    # these files differed, and a reproduced vd-nano did not match the shipped file's sha256.
    torch.manual_seed(0)
    model = Tiny()
    meta = {f"key{i}": f"value {i}" for i in range(12)}
    first = ck.save_safetensors(model, tmp_path / "a.safetensors", meta).read_bytes()
    for n in range(5):
        shuffled = dict(sorted(meta.items(), key=lambda kv: hash((n, kv[0]))))
        again = ck.save_safetensors(model, tmp_path / f"b{n}.safetensors", shuffled).read_bytes()
        assert again == first
    length = int.from_bytes(first[:8], "little")
    header = json.loads(first[8:8 + length])
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])


def test_canonical_header_that_does_not_fit_rewrites_the_file(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = Tiny()
    path = ck.save_safetensors(model, tmp_path / "tiny.safetensors", {"b": "2", "a": "1"})
    dumps = json.dumps
    monkeypatch.setattr(ck.json, "dumps", lambda *a, **k: dumps(*a, **k) + " " * 50)  # longer than it was
    ck.canonicalize_header(path)
    state, meta = ck.load_safetensors(path)
    assert (meta["a"], meta["b"]) == ("1", "2")
    assert int.from_bytes(path.read_bytes()[:8], "little") % 8 == 0
    for k, v in model.state_dict().items():
        if k in state:
            assert torch.equal(state[k], v), k
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.safetensors"]


def test_failed_save_keeps_the_old_file(tmp_path):
    path = ck.save_safetensors(Tiny(), tmp_path / "model.safetensors")
    before = path.read_bytes()
    with torch.device("meta"):
        unloaded = Tiny()
    with pytest.raises(CheckpointError, match="never loaded"):
        ck.save_safetensors(unloaded, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


# ---------------------------------------------------------------------------
# diffusers folders (format level; loading is tested in test_vd.py)
# ---------------------------------------------------------------------------

def test_diffusers_folder_errors(tmp_path, small_state):
    with pytest.raises(CheckpointError, match="no model_index.json"):
        DiffusersFolder.open(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps(
        {"_class_name": "VersatileDiffusionPipeline", "vae": ["diffusers", "AutoencoderKL"],
         "text_unet": ["versatile_diffusion", "UNetFlatConditionModel"], "safety_checker": [None, None]}))
    (tmp_path / "vae").mkdir()
    with pytest.raises(CheckpointError, match=r"lists the component\(s\) \['text_unet'\].*incomplete"):
        DiffusersFolder.open(tmp_path)  # found when the folder is opened, not at the first node using it
    (tmp_path / "text_unet").mkdir()
    folder = DiffusersFolder.open(tmp_path)
    assert folder.components == ["text_unet", "vae"]
    with pytest.raises(CheckpointError, match="no component 'image_unet'.*text_unet, vae"):
        folder.state("image_unet")
    with pytest.raises(CheckpointError, match="has no config.json"):
        folder.config("vae")
    with pytest.raises(CheckpointError, match="has no weights"):
        folder.state("vae")
    torch.save(small_state, tmp_path / "vae" / "diffusion_pytorch_model.bin")
    _same(folder.state("vae"), small_state)
    save_file(small_state, tmp_path / "vae" / "diffusion_pytorch_model.safetensors")
    assert isinstance(folder.state("vae"), ck.SafetensorsState)  # safetensors preferred


# ---------------------------------------------------------------------------
# Manifests: the real layouts cover our full-size model exactly
# ---------------------------------------------------------------------------

# vd-architecture.md section 7.5, key -> shape, per manifest (with its mount prefix).
REPRESENTATIVE = {
    "vd_v1_full": {
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
        "clip.model.vision_model.embeddings.patch_embedding.weight": (1024, 3, 14, 14),
        "clip.model.vision_model.embeddings.position_embedding.weight": (257, 1024),
        "clip.model.visual_projection.weight": (768, 1024),
        "clip.model.text_projection.weight": (768, 768),
        "clip.model.text_model.embeddings.token_embedding.weight": (49408, 768),
    },
    "vd_v2": {
        "diffuser.image.data_blocks.3.0.op.weight": (320, 320, 3, 3),
        "diffuser.image.data_blocks.17.0.conv.weight": (1280, 1280, 3, 3),
        "diffuser.image.data_blocks.29.0.2.weight": (4, 320, 3, 3),
        "diffuser.image.context_blocks.6.0.proj_in.weight": (1280, 1280, 1, 1),
        "diffuser.text.data_blocks.0.0.weight": (1280, 768),
        "diffuser.text.data_blocks.9.0.weight": (5120, 5120),
        "diffuser.text.data_blocks.29.0.2.weight": (768, 1280),
        "diffuser.text.context_blocks.6.0.transformer_blocks.0.attn2.to_v.weight": (1280, 768),
    },
    "diffusers_text_unet": {
        "conv_in.weight": (1280, 768),
        "down_blocks.0.downsamplers.0.weight": (1280, 1280),
        "up_blocks.0.upsamplers.0.weight": (5120, 5120),
        "up_blocks.1.resnets.0.conv_shortcut.weight": (5120, 10240, 1, 1),
        "conv_out.weight": (768, 1280),
    },
    "diffusers_image_unet": {"down_blocks.0.downsamplers.0.conv.weight": (320, 320, 3, 3)},
    "kl_f8": {
        "encoder.conv_in.weight": (128, 3, 3, 3),
        "encoder.down.0.block.0.conv1.weight": (128, 128, 3, 3),
        "encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "encoder.conv_out.weight": (8, 512, 3, 3),
        "quant_conv.weight": (8, 8, 1, 1),
        "post_quant_conv.weight": (4, 4, 1, 1),
        "decoder.up.3.block.0.conv1.weight": (512, 512, 3, 3),
        "decoder.conv_out.weight": (3, 128, 3, 3),
    },
    "optimus_vae": {
        "encoder.embeddings.word_embeddings.weight": (28996, 768),
        "encoder.embeddings.position_embeddings.weight": (512, 768),
        "encoder.encoder.layer.0.attention.self.query.weight": (768, 768),
        "encoder.pooler.dense.weight": (768, 768),
        "encoder.linear.weight": (1536, 768),
        "decoder.transformer.wte.weight": (50260, 768),
        "decoder.transformer.wpe.weight": (1024, 768),
        "decoder.transformer.h.0.attn.c_attn.weight": (768, 2304),
        "decoder.transformer.h.0.attn.bias": (1, 1, 1024, 1024),
        "decoder.transformer.linear.weight": (9216, 768),
        "decoder.transformer.linear_emb.weight": (768, 768),
    },
}


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE))
def test_representative_keys_in_manifests(name):
    manifest = load_manifest(name)
    wrong = {k: (manifest.get(k), s) for k, s in REPRESENTATIVE[name].items() if manifest.get(k) != s}
    assert not wrong, f"(manifest, spec) differ: {wrong}"


def test_manifest_sizes_match_the_files():
    """Parameter totals of the manifests against the published file sizes (section 7.1)."""
    def params(name, skip=("position_ids", ".attn.bias", "lm_head.weight")):
        total = 0
        for k, s in load_manifest(name).items():
            if not k.endswith(skip) and "." in k:
                total += int(torch.tensor(s).prod()) if s else 1
        return total
    assert params("vd_v2") == 2_566_318_852                     # 10.27 GB / 4 bytes
    assert params("kl_f8") == 83_653_863
    assert params("optimus_vae") == 241_599_744
    assert params("vd_v1_full") == 3_319_188_972                # UNets + kl-f8 + Optimus + CLIPModel


@pytest.fixture(scope="module")
def full_model_shapes() -> dict[str, tuple[int, ...]]:
    from vdnodes.model.configs import full_config
    from vdnodes.model.vd import build

    model = build(full_config(), device="meta")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _mounted(*parts: tuple[str, str]) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for prefix, name in parts:
        for k, s in load_manifest(name).items():
            assert prefix + k not in out
            out[prefix + k] = s
    return out


# Keys a real file holds that are not weights of ours (buffers we recompute, unused scalars).
NON_WEIGHTS = ("position_ids", "logit_scale", ".attn.bias", "text_unet.time_embedding.")


# A complete v2 model holds two whole CLIPModels; the half each encoder does not use repeats the other.
DUPLICATE_CLIP_HALVES = ("ctx.text.model.vision_model.", "ctx.text.model.visual_projection.",
                         "ctx.image.model.text_model.", "ctx.image.model.text_projection.")


def _is_non_weight(key: str) -> bool:
    from vdnodes.model.vd import WRAPPER_BUFFERS
    return (key.startswith(WRAPPER_BUFFERS) or key.endswith(NON_WEIGHTS[:3]) or key.startswith(NON_WEIGHTS[3])
            or key.startswith(DUPLICATE_CLIP_HALVES))


@pytest.mark.parametrize("layout, parts, components", [
    (Layout.VD_V1_FULL, [("", "vd_v1_full")], "all"),
    (Layout.VD_V2, [("", "vd_v2_complete")], "all"),
    (Layout.VD_V2, [("", "vd_v2"), ("autokl.", "kl_f8"), ("optimus.", "optimus_vae"),
                    ("clip.model.", "diffusers_text_encoder"), ("clip.model.", "diffusers_image_encoder")], "all"),
    (Layout.DIFFUSERS, [("image_unet.", "diffusers_image_unet"), ("text_unet.", "diffusers_text_unet"),
                        ("vae.", "diffusers_vae"), ("clip.model.", "diffusers_text_encoder"),
                        ("clip.model.", "diffusers_image_encoder")], "no_optimus"),
    (Layout.KL_F8, [("autokl.", "kl_f8")], "vae_image"),
    (Layout.OPTIMUS, [("optimus.", "optimus_vae")], "vae_text"),
])
def test_manifest_covers_full_model_exactly_once(full_model_shapes, layout, parts, components):
    from vdnodes.model.configs import full_config
    from vdnodes.model.vd import MOUNTS, source_keymap

    for prefix, name in parts:  # the test's mounts are the loader's mounts
        assert prefix in MOUNTS.values() or prefix == ""
    source = _mounted(*parts)
    keymap, ignore = source_keymap(layout, full_config())
    renamed, unmatched = remap({k: k for k in source}, keymap, ignore=ignore)
    ignored = [k for k in source if k.startswith(ignore)]
    assert not unmatched, f"{len(unmatched)} keys no map covers, e.g. {unmatched[:5]}"
    assert all(_is_non_weight(k) for k in ignored), [k for k in ignored if not _is_non_weight(k)][:5]
    assert len(renamed) + len(ignored) == len(source), "two checkpoint keys land on one model key"

    wanted = {
        "all": lambda k: True,
        "no_optimus": lambda k: not k.startswith("vae_text."),
        "vae_image": lambda k: k.startswith("vae_image."),
        "vae_text": lambda k: k.startswith("vae_text."),
    }[components]
    ours = {k: s for k, s in full_model_shapes.items() if wanted(k)}
    assert set(renamed) == set(ours), (
        f"not covered: {sorted(set(ours) - set(renamed))[:5]}; extra: {sorted(set(renamed) - set(ours))[:5]}")
    bad = {}
    for key, src in renamed.items():
        got = tuple(fit_shape(torch.empty(source[src], device="meta"), ours[key]).shape)
        if got != ours[key]:
            bad[src] = (source[src], ours[key])
    assert not bad, f"{len(bad)} shape mismatches, e.g. {list(bad.items())[:5]}"


def test_saved_weights_are_readable_like_any_new_file(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = ck.save_safetensors(nn.Linear(2, 2), tmp_path / "w.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # not mkstemp's 0o600
