"""vd-nano: its config and tokenizers, and a shortened run of the training pipeline.

The pipeline tests train a narrower model than vd-nano (same structure and vocabularies,
smaller widths) for a few dozen steps per stage, once straight through and once interrupted
and resumed, and check what a user relies on: every loss falls, a resumed run gives exactly
the weights of an uninterrupted one, and the file loads and runs every flow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vdnodes.model import procedures, sampling
from vdnodes.model import vd as vdm
from vdnodes.model.clip import clip_text_config, clip_vision_config
from vdnodes.model.conditioning import ContextInput
from vdnodes.model.configs import VDConfig, preset
from vdnodes.model.optimus import OptimusVAE, tiny_optimus_config
from vdnodes.model.unet import UNetConfig
from vdnodes.model.vae import VAEConfig
from vdnodes.nano import scenes as sc
from vdnodes.nano.config import CLIP_LENGTH, CLIP_VOCAB, OPTIMUS_VOCAB, nano_config
from vdnodes.nano.tokenizers import build_tokenizers, clip_word_tokenizer, nano_words, tokenizer_info
from vdnodes.nano.training.budget import BUDGETS, STAGES, Budget, StageBudget, step_seed
from vdnodes.nano.training.checkpoints import stage_fingerprints, write_atomically
from vdnodes.nano.training.evaluate import evaluate
from vdnodes.nano.training.optimus_stage import fold_latent_scale
from vdnodes.nano.training.report import host_report, report_hosts
from vdnodes.nano.training.runner import train_nano
from vdnodes.nano.training.unet_stage import UNetStage
from vdnodes.nano.weights import compare_weights, load_nano

# ---------------------------------------------------------------------------------------------
# Config and tokenizers


def test_nano_preset_has_vd_shape_and_fits_40_mb_in_fp16():
    config = preset("nano")
    assert config.name == "nano" and config.unet.num_res_blocks == 2 and len(config.unet.channel_mult) == 4
    model = vdm.build(config, device="meta")
    assert len(model.unet.layout.data_slots) == 30 and len(model.unet.layout.context_slots) == 16  # as VD
    assert set(model.unet.data) == set(model.unet.context) == {"image", "text"}
    assert model.clip_image.num_tokens == 65
    assert config.vae.downsample_factor == 4  # 32 px -> 8 x 8 latents
    assert model.parameter_counts()["total"] * 2 <= 40e6


def test_clip_word_tokenizer_wraps_pads_and_truncates_like_clip():
    tok = clip_word_tokenizer(nano_words(), CLIP_VOCAB, CLIP_LENGTH)
    bos, eos = CLIP_VOCAB - 2, CLIP_VOCAB - 1
    ids = tok(["A red circle on a blue background", ""], padding="max_length", max_length=CLIP_LENGTH,
              truncation=True)["input_ids"]
    assert ids[0][0] == bos and ids[0][8] == eos and ids[0][9:] == [eos] * (CLIP_LENGTH - 9)
    assert ids[1] == [bos] + [eos] * (CLIP_LENGTH - 1)
    assert 0 not in ids[0]  # every caption word is known ([UNK] is 0)
    long = tok(["red " * 40], truncation=True, max_length=CLIP_LENGTH)["input_ids"][0]
    assert len(long) == CLIP_LENGTH and long[-1] == eos


def test_clip_text_pools_the_first_eos_token():
    config = nano_config()
    clip_tok, _ = build_tokenizers(tokenizer_info(config))
    model = vdm.build(config, ["clip_text"], clip_tokenizer=clip_tok)
    ids, truncated = model.clip_text.tokenize(["a red circle", "green"])
    assert truncated == [False, False]
    out = model.clip_text.model.text_model(input_ids=ids)
    first_eos = (ids == CLIP_VOCAB - 1).int().argmax(1)
    torch.testing.assert_close(out.pooler_output, out.last_hidden_state[torch.arange(2), first_eos])
    assert first_eos.tolist() == [4, 2]


def test_optimus_word_tokenizers_cover_every_caption_word():
    _, (enc, dec) = build_tokenizers(tokenizer_info(nano_config()))
    assert len(enc) == len(dec) == OPTIMUS_VOCAB
    _, captions, _ = sc.make_batch(64, seed=1, size=16)
    for text in captions:
        assert enc.unk_token_id not in enc(text, add_special_tokens=False)["input_ids"]
        assert dec.unk_token_id not in dec(text, add_special_tokens=False)["input_ids"]


def test_stage_fingerprints_chain_only_what_a_stage_depends_on(monkeypatch):
    config, info = nano_config(), tokenizer_info(nano_config())
    plan = Budget("a", vae=StageBudget(10, 8, 1e-3), clip=StageBudget(10, 8, 1e-3),
                  optimus=StageBudget(10, 8, 1e-3), unet=StageBudget(10, 8, 1e-3))
    base = stage_fingerprints(config, plan, 0, info)
    longer_unet = stage_fingerprints(config, dataclasses.replace(plan, unet=StageBudget(20, 8, 1e-3)), 0, info)
    assert [s for s in STAGES if base[s] != longer_unet[s]] == ["unet"]
    other_clip = stage_fingerprints(config, dataclasses.replace(plan, clip=StageBudget(20, 8, 1e-3)), 0, info)
    assert [s for s in STAGES if base[s] != other_clip[s]] == ["clip", "unet"]
    wider = dataclasses.replace(config, unet=dataclasses.replace(config.unet, model_channels=64))
    assert [s for s in STAGES if base[s] != stage_fingerprints(wider, plan, 0, info)[s]] == ["unet"]
    bigger_pool = stage_fingerprints(config, dataclasses.replace(plan, pool=plan.pool + 1), 0, info)
    assert [s for s in STAGES if base[s] != bigger_pool[s]] == ["unet"]
    other_clip_width = dataclasses.replace(config, clip_vision=clip_vision_config(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=4, projection_dim=64))
    assert [s for s in STAGES if base[s] != stage_fingerprints(other_clip_width, plan, 0, info)[s]] == ["clip", "unet"]
    import transformers.configuration_utils as tcu

    monkeypatch.setattr(tcu, "__version__", "5.0.0")  # the version CLIP's config dicts record
    assert config.to_dict()["clip_text"]["transformers_version"] == "5.0.0"
    assert stage_fingerprints(config, plan, 0, info) == base  # a transformers upgrade keeps checkpoints
    monkeypatch.undo()
    other_seed = stage_fingerprints(config, plan, 1, info)
    assert all(base[s] != other_seed[s] for s in STAGES)


def test_fold_latent_scale_changes_mu_but_not_the_decoder_output():
    config = tiny_optimus_config(OPTIMUS_VOCAB, OPTIMUS_VOCAB, hidden=32, layers=2, latent_dim=16)
    torch.manual_seed(0)
    opt = OptimusVAE(config)
    ids = torch.tensor([[2, 7, 9, 3]])
    dec_ids = torch.tensor([[config.bos_token_id, 5, 6]])
    mu = opt.encode_ids(ids)
    logits, _ = opt.decoder_logits(dec_ids, mu)
    fold_latent_scale(opt, 3.0)
    mu3 = opt.encode_ids(ids)
    torch.testing.assert_close(mu3, 3.0 * mu)
    torch.testing.assert_close(opt.decoder_logits(dec_ids, mu3)[0], logits, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# A shortened training run


def small_config() -> VDConfig:
    """vd-nano's structure and vocabularies at narrower widths, so the run takes seconds."""
    base = nano_config()
    width = 32
    return VDConfig(
        unet=dataclasses.replace(base.unet, model_channels=16, heads=2, context_dim=width, text_dim=16),
        vae=VAEConfig(ch=8, ch_mult=(1, 2, 4), num_res_blocks=1, z_channels=4, embed_dim=4, norm_groups=4,
                      scale_factor=1.0),
        clip_text=clip_text_config(
            vocab_size=CLIP_VOCAB, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=CLIP_LENGTH, projection_dim=width,
            bos_token_id=CLIP_VOCAB - 2, eos_token_id=CLIP_VOCAB - 1, pad_token_id=CLIP_VOCAB - 1),
        clip_vision=clip_vision_config(
            hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=2,
            image_size=32, patch_size=4, projection_dim=width),
        optimus=tiny_optimus_config(OPTIMUS_VOCAB, OPTIMUS_VOCAB, hidden=32, layers=1, heads=2, latent_dim=16),
        name="nano-test",
    )


BUDGET = Budget(
    "test",
    vae=StageBudget(steps=30, batch=8, lr=3e-3, warmup=2),
    clip=StageBudget(steps=40, batch=16, lr=3e-3, warmup=2),
    optimus=StageBudget(steps=30, batch=16, lr=3e-3, warmup=2),
    unet=StageBudget(steps=30, batch=8, lr=2e-3, warmup=2),
    checkpoint_every=15, calibration=16, pool=64, eval_samples=0,
)
INTERRUPTIONS = [("clip", 17), ("unet", 17)]  # between two checkpoints; CLIP resumes its word head too


def _run(folder, **kwargs):
    # one thread: the pipeline tests must not depend on how busy a shared machine is
    return train_nano(folder, budget=BUDGET, seed=3, device="cpu", config=small_config(), progress=False,
                      threads=1, **kwargs)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    folder = tmp_path_factory.mktemp("straight")
    return folder, _run(folder)


def _state(folder, stage):
    return json.loads((folder / "checkpoints" / f"{stage}.json").read_text())


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_loss_falls(straight, stage):
    folder, _ = straight
    state = _state(folder, stage)
    losses = state["losses"]
    assert state["done"] and len(losses) == state["steps"] == BUDGET.stage(stage).steps
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    assert last < 0.9 * first, f"{stage}: loss went {first:.3f} -> {last:.3f}"


def test_stage_results_set_latent_scales(straight):
    folder, path = straight
    vae, optimus = _state(folder, "vae")["result"], _state(folder, "optimus")["result"]
    model = load_nano(path=path, components=["vae_image.encoder", "vae_text.encoder"])
    assert model.config.vae.scale_factor == pytest.approx(vae["scale_factor"])
    rng = np.random.default_rng(5)
    scenes = [sc.sample_scene(rng) for _ in range(64)]
    images = torch.from_numpy(np.stack([sc.render(s, 32).transpose(2, 0, 1) for s in scenes]) / 255.0).float()
    with torch.no_grad():
        z = model.vae_image.encode(images)
        mu = model.vae_text.encode([s.caption() for s in scenes])
    # calibrated on other scenes, so about (not exactly) unit RMS
    assert 0.6 < float(z.square().mean().sqrt()) < 1.6
    assert 0.6 < float(mu.square().mean().sqrt()) < 1.6
    assert optimus["latent_scale"] > 0


@pytest.mark.parametrize("stage_at, step_at", INTERRUPTIONS)
def test_interrupted_run_resumes_to_the_same_weights(straight, tmp_path, stage_at, step_at):
    _, reference = straight

    def interrupt(stage, step, metrics):
        if (stage, step) == (stage_at, step_at):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, on_step=interrupt)
    state = _state(tmp_path, stage_at)
    assert not state["done"] and state["step"] == step_at and len(state["losses"]) == step_at
    assert not (tmp_path / "vd-nano.safetensors").exists()

    seen = []
    path = _run(tmp_path, on_step=lambda stage, step, m: seen.append((stage, step)))
    assert seen[0] == (stage_at, step_at + 1)  # finished stages are not redone; the step count continues
    assert _state(tmp_path, stage_at)["losses"][:step_at] == state["losses"]
    comparison = compare_weights(path, reference)
    assert comparison.identical, f"resumed weights differ from the straight run's: {comparison.summary()}"


def test_later_stages_train_against_the_encoders_exactly_as_shipped(straight):
    folder, path = straight
    shipped = load_file(str(path))
    for stage in ("vae", "clip", "optimus"):
        checkpoint = load_file(str(folder / "checkpoints" / f"{stage}.safetensors"))
        weights = {k: v for k, v in checkpoint.items() if "_head" not in k}
        assert weights
        for name, tensor in weights.items():
            if tensor.is_floating_point():
                assert torch.equal(shipped[name].float(), tensor), name  # fp16 in the file loses nothing


def test_clip_heads_are_checkpointed_but_not_shipped(straight):
    folder, path = straight
    checkpoint = load_file(str(folder / "checkpoints" / "clip.safetensors"))
    heads = {f"{h}.{p}" for h in ("word_head", "part_head") for p in ("weight", "bias")}
    assert heads <= checkpoint.keys()
    assert not [k for k in load_file(str(path)) if "_head" in k]


def test_image_variation_steps_pair_semantic_focus_with_restyled_twins(straight, monkeypatch):
    _, path = straight
    stage = UNetStage(load_nano(path=path), BUDGET, 3, torch.device("cpu"), progress=False)
    stage.prepare()
    pool = stage.pool
    assert pool.restyled_moments.shape == pool.moments.shape
    assert not torch.equal(pool.restyled_moments, pool.moments)
    stage.P_SEMANTIC_TWIN = 1.0  # every image-variation sample
    levels, seen = [], {}

    def focus(tokens, level, keep_first_token=True, exact=False):
        assert exact, "training takes the full SVD"
        levels.append(level)
        return torch.full_like(tokens, 7.0)  # a marker: this sample's context was focused

    def unet(xt, t, xtype, contexts):
        seen["contexts"] = contexts
        return torch.zeros_like(xt)

    monkeypatch.setattr(procedures, "adjust_rank", focus)
    monkeypatch.setattr(stage.model.unet, "forward", unet)
    monkeypatch.setattr(stage, "latents", lambda moments: seen.setdefault("moments", []).append(moments) or moments)
    i2i = UNetStage.CYCLE.index("i2i")
    stage.step_loss(i2i)
    index = np.random.default_rng([step_seed(3, "unet", i2i), 0, 1]).integers(len(pool.scenes),
                                                                                   size=BUDGET.unet.batch)
    plain, twins = seen["moments"]  # the batch as without twins, then every scene's twin after it
    assert torch.equal(plain, pool.moments[torch.from_numpy(index)])
    assert torch.equal(twins, pool.restyled_moments[torch.from_numpy(index)])
    assert len(levels) == BUDGET.unet.batch and all(0 <= v <= stage.SEMANTIC_FOCUS_MAX for v in levels)
    tokens = seen["contexts"][0].tokens
    B = BUDGET.unet.batch
    assert len(tokens) == 2 * B and (tokens[B:] == 7.0).all() and not (tokens[:B] == 7.0).any()
    levels.clear(), seen.clear()
    t2i = UNetStage.CYCLE.index("t2i")
    stage.step_loss(t2i)  # other flows train on the scenes themselves
    index = np.random.default_rng([step_seed(3, "unet", t2i), 0, 1]).integers(len(pool.scenes),
                                                                                  size=BUDGET.unet.batch)
    assert len(seen["moments"]) == 1 and torch.equal(seen["moments"][0], pool.moments[torch.from_numpy(index)])
    assert not levels


def test_resume_refuses_other_settings(straight):
    folder, _ = straight
    with pytest.raises(ValueError, match="other settings"):
        train_nano(folder, budget=BUDGET, seed=4, device="cpu", config=small_config(), progress=False, threads=1)


def test_a_longer_unet_budget_reuses_the_finished_encoder_stages(straight, tmp_path):
    folder, _ = straight
    (tmp_path / "checkpoints").mkdir()
    for stage in ("vae", "clip", "optimus"):
        for suffix in (".json", ".safetensors"):
            name = f"{stage}{suffix}"
            (tmp_path / "checkpoints" / name).write_bytes((folder / "checkpoints" / name).read_bytes())
    longer = dataclasses.replace(BUDGET, unet=dataclasses.replace(BUDGET.unet, steps=BUDGET.unet.steps + 2))
    seen = set()
    train_nano(tmp_path, budget=longer, seed=3, device="cpu", config=small_config(), progress=False,
               threads=1, on_step=lambda stage, step, m: seen.add(stage))
    assert seen == {"unet"}  # the image VAE, CLIP and Optimus were not trained again
    assert _state(tmp_path, "unet")["step"] == longer.unet.steps


def test_a_unet_trained_on_reused_encoders_is_the_straight_runs_unet(straight, tmp_path):
    folder, reference = straight
    seen = set()
    path = _run(tmp_path, encoders_from=reference, on_step=lambda stage, step, m: seen.add(stage))
    assert seen == {"unet"}  # the image VAE, CLIP and Optimus come from the file
    for stage in ("vae", "clip", "optimus"):
        assert _state(tmp_path, stage)["result"] == _state(folder, stage)["result"]
        assert _state(tmp_path, stage)["fingerprint"] == _state(folder, stage)["fingerprint"]
    comparison = compare_weights(path, reference)
    assert comparison.identical, f"weights differ from the straight run's: {comparison.summary()}"


def test_reusing_encoders_refuses_a_file_from_other_settings(straight, tmp_path):
    _, reference = straight
    with pytest.raises(ValueError, match="seed 3 and budget 'test', this run uses seed 4"):
        train_nano(tmp_path / "a", budget=BUDGET, seed=4, device="cpu", config=small_config(), progress=False,
                   threads=1, encoders_from=reference)
    deeper = small_config()
    deeper = dataclasses.replace(deeper, vae=dataclasses.replace(deeper.vae, num_res_blocks=2))
    with pytest.raises(ValueError, match="its vae config differs"):
        train_nano(tmp_path / "b", budget=BUDGET, seed=3, device="cpu", config=deeper, progress=False,
                   threads=1, encoders_from=reference)
    with pytest.raises(ValueError, match="no such file"):
        _run(tmp_path / "c", encoders_from=tmp_path / "missing.safetensors")
    assert not (tmp_path / "a" / "checkpoints").exists() and not (tmp_path / "b" / "checkpoints").exists()


def test_the_training_record_names_each_stages_recipe(straight):
    from vdnodes.nano.training.stages import STAGE_CLASSES
    from vdnodes.nano.weights import training_record

    _, reference = straight
    assert training_record(reference)["recipes"] == {name: STAGE_CLASSES[name].RECIPE for name in STAGES}


def test_each_stage_names_its_host_outside_the_weights_file(straight):
    import transformers

    from vdnodes.nano.weights import training_record

    folder, reference = straight
    for name in STAGES:
        (record,) = _state(folder, name)["hosts"]  # one host ran every step
        assert record["from_step"] == 0 and record["torch"] == torch.__version__ and record["device"] == "cpu"
        assert record["threads"] == 1 and record["kernels"] == torch.backends.cpu.get_cpu_capability()
        assert record["transformers"] == transformers.__version__
    # the file's bytes stay a function of the computation: a reproduction on the same kernels
    # has the same sha256 whatever the CPU's name
    assert "hosts" not in training_record(reference)


def test_a_run_resumed_on_other_kernels_records_both_hosts_and_says_why_it_differs(tmp_path, monkeypatch,
                                                                                  capsys):
    from vdnodes.nano import host as hs

    def interrupt(stage, step, metrics):
        if (stage, step) == ("optimus", 17):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, on_step=interrupt)
    real = hs.host_record
    monkeypatch.setattr(hs, "host_record", lambda device: {**real(device), "kernels": "OTHER"})
    train_nano(tmp_path, budget=BUDGET, seed=3, device="cpu", config=small_config(), progress=True, threads=1)
    err = capsys.readouterr().err
    here = torch.backends.cpu.get_cpu_capability()
    assert "steps 0-16 of the Optimus text VAE stage ran with other kernels" in err
    assert f"kernels {here} vs OTHER" in err

    ours = {name: _state(tmp_path, name)["hosts"] for name in STAGES}
    assert [h["from_step"] for h in ours["optimus"]] == [0, 17]
    assert [h["kernels"] for h in ours["optimus"]] == [here, "OTHER"]
    assert [h["kernels"] for h in ours["unet"]] == ["OTHER"]
    theirs = {name: [real(torch.device("cpu"))] for name in STAGES}
    theirs = {name: [{**h, "threads": 1} for h in hosts] for name, hosts in theirs.items()}
    report = host_report(ours, theirs).splitlines()
    assert report[1].startswith("  vae: same kernels (torch ")
    assert report[3] == f"  optimus: other kernels: kernels OTHER vs {here}"
    assert report[4] == f"  unet: other kernels: kernels OTHER vs {here}"
    assert "the reference records no host" in host_report(ours, {})


def test_reuse_takes_only_the_named_encoder_stages_and_trains_the_others(straight, tmp_path):
    # A new CLIP config (here vd-nano's position code) refuses the file's CLIP, and --reuse
    # takes its image VAE and Optimus while CLIP trains again.
    folder, reference = straight
    coded = small_config()
    coded.clip_vision.position_code_patterns, coded.clip_vision.position_code_scale = 8, 5.0
    with pytest.raises(ValueError, match=r"its clip_vision config differs \(--reuse names the encoder stages"):
        train_nano(tmp_path / "a", budget=BUDGET, seed=3, device="cpu", config=coded, progress=False,
                   threads=1, encoders_from=reference)
    seen = set()
    train_nano(tmp_path / "b", budget=BUDGET, seed=3, device="cpu", config=coded, progress=False, threads=1,
               encoders_from=reference, reuse=["vae", "optimus"], on_step=lambda stage, step, m: seen.add(stage))
    assert seen == {"clip", "unet"}
    for stage in ("vae", "optimus"):
        assert _state(tmp_path / "b", stage)["fingerprint"] == _state(folder, stage)["fingerprint"]
    # CLIP trains on the tower's own tokens, without the code: the same towers as the straight run's
    mine, theirs = (load_file(str(f / "checkpoints" / "clip.safetensors")) for f in (tmp_path / "b", folder))
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_reuse_refuses_an_encoder_trained_with_another_recipe(straight, tmp_path, monkeypatch):
    from vdnodes.nano.training.clip_stage import CLIPStage

    _, reference = straight
    monkeypatch.setattr(CLIPStage, "RECIPE", CLIPStage.RECIPE + 1)
    with pytest.raises(ValueError, match=f"its clip stage was trained with recipe {CLIPStage.RECIPE - 1}, "
                                         f"this version's is {CLIPStage.RECIPE}"):
        _run(tmp_path / "a", encoders_from=reference)
    with pytest.raises(ValueError, match="--reuse takes encoder stages among vae, clip, optimus, got unet"):
        _run(tmp_path / "b", encoders_from=reference, reuse=["unet"])


def test_cli_refuses_reuse_without_an_encoders_file(tmp_path, capsys):
    from vdnodes.nano.training.cli import main

    code = main(["--out", str(tmp_path / "run"), "--budget", "smoke", "--reuse", "vae"])
    err = capsys.readouterr().err
    assert code == 2 and "--reuse names the encoder stages taken from --encoders-from" in err
    assert not (tmp_path / "run").exists()


def test_cli_explains_an_unusable_encoders_file_with_exit_code_2(tmp_path, capsys):
    from vdnodes.nano.training.cli import main

    code = main(["--out", str(tmp_path / "run"), "--budget", "smoke", "--threads", "1",
                 "--encoders-from", str(tmp_path / "nope.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "--encoders-from: no such file" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_compare_weights_finds_the_tensor_that_differs_and_a_changed_config(straight, tmp_path):
    from safetensors.torch import save_file

    from vdnodes.nano.weights import file_metadata

    _, path = straight
    same = compare_weights(path, path)
    assert same.identical and same.tensors == len(load_file(str(path))) and "identical" in same.summary()

    tensors, meta = load_file(str(path)), file_metadata(path)
    name = next(k for k in tensors if k.startswith("unet.") and tensors[k].is_floating_point())
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 0.5
    config = json.loads(meta["config"])
    config["vae"]["scale_factor"] *= 2
    save_file(tensors, str(tmp_path / "other.safetensors"), {**meta, "config": json.dumps(config)})
    other = compare_weights(tmp_path / "other.safetensors", path)
    assert not other.identical and other.differing == (name,) and not other.config_equal
    assert other.largest[0] == name and other.largest[1] == pytest.approx(0.5, rel=1e-2)
    assert f"1 of {same.tensors} tensors differ" in other.summary() and "config differs" in other.summary()


def test_cli_compares_its_result_with_a_reference_file(tmp_path, capsys):
    from vdnodes.nano.training.cli import main

    out = tmp_path / "run"
    assert main(["--out", str(out), "--budget", "smoke", "--threads", "1"]) == 0
    reference = tmp_path / "reference.safetensors"
    reference.write_bytes((out / "vd-nano.safetensors").read_bytes())
    capsys.readouterr()
    # the same command resumes past every finished stage and writes the same weights
    assert main(["--out", str(out), "--budget", "smoke", "--threads", "1", "--compare-to", str(reference)]) == 0
    captured = capsys.readouterr()
    assert f"compared with {reference}: identical: all" in captured.out
    # each stage is compared as it finishes, so a run that will not match says so early
    assert f"[1/4] image VAE vs {reference}: identical: all" in captured.err
    assert f"[4/4] UNet, all flows vs {reference}: identical: all" in captured.err
    report = json.loads((out / "train-report.json").read_text())
    assert report["comparison"].startswith("identical: all") and set(report["differing_by_stage"].values()) == {0}
    assert report["stages"]["unet"]["steps"] == BUDGETS["smoke"].unet.steps
    assert report["stages"]["vae"]["seconds"] > 0 and report["stages"]["vae"]["hosts"][0]["threads"] == 1
    assert report["sha256"] == hashlib.sha256((out / "vd-nano.safetensors").read_bytes()).hexdigest()
    assert report_hosts(out / "vd-nano.safetensors") == {name: report["stages"][name]["hosts"] for name in STAGES}
    assert report_hosts(reference) == {}  # no train-report.json beside it

    from safetensors.torch import save_file

    from vdnodes.nano.weights import file_metadata

    tensors = load_file(str(reference))
    name = next(k for k in tensors if k.startswith("vae_image.") and tensors[k].is_floating_point())
    tensors[name] = tensors[name] + 1
    save_file(tensors, str(reference), file_metadata(reference))
    assert main(["--out", str(out), "--budget", "smoke", "--threads", "1", "--compare-to", str(reference)]) == 0
    captured = capsys.readouterr()
    assert f"[1/4] image VAE vs {reference}: different: 1 of" in captured.err
    assert f"[2/4] CLIP text + image vs {reference}: identical: all" in captured.err
    assert "different: 1 of" in captured.out and "Hosts per stage, this run vs the reference:" in captured.out
    assert "  vae: this run: torch" in captured.out and "the reference records no host" in captured.out
    report = json.loads((out / "train-report.json").read_text())
    assert report["differing_by_stage"] == {"vae": 1, "clip": 0, "optimus": 0, "unet": 0}

    code = main(["--out", str(tmp_path / "other"), "--budget", "smoke", "--threads", "1",
                 "--compare-to", str(tmp_path / "missing.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "--compare-to: no such file" in err and not (tmp_path / "other").exists()


def test_saved_file_is_fp16_and_runs_every_flow(straight):
    _, path = straight
    assert all(t.dtype == torch.float16 for t in load_file(str(path)).values() if t.is_floating_point())
    model = load_nano(path=path)
    assert model.components == frozenset(vdm.COMPONENTS)
    B, g = 2, torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    scenes = [sc.sample_scene(rng) for _ in range(B)]
    images = torch.from_numpy(np.stack([sc.render(s, 32).transpose(2, 0, 1) for s in scenes]) / 255.0).float()
    with torch.no_grad():
        text = ContextInput(model.clip_text.encode([s.caption() for s in scenes]), "text")
        empty = ContextInput(model.clip_text.unconditional(B), "text")
        image = ContextInput(model.clip_image.encode(images), "image")
        zeros = ContextInput(torch.zeros_like(image.tokens), "image")

        def run(xtype, conds, unconds):
            side = 32 // model.config.vae.downsample_factor
            shape = (B, 4, side, side) if xtype == "image" else (B, model.config.unet.text_dim)
            x = sampling.initial_noise(shape, g)
            return sampling.sample("ddim", sampling.cfg_denoiser(model.unet, xtype, conds, unconds, 7.5), x, 2)

        for conds, unconds in (([text], [empty]), ([image], [zeros]),
                               ([dataclasses.replace(image, weight=0.5), dataclasses.replace(text, weight=0.5)],
                                [zeros, empty])):
            out = model.vae_image.decode(run("image", conds, unconds))  # t2i, i2i, dual
            assert out.shape == (B, 3, 32, 32) and 0 <= float(out.min()) and float(out.max()) <= 1
        for conds, unconds in (([image], [zeros]), ([text], [empty])):  # i2t, t2t
            captions = model.vae_text.decode(run("text", conds, unconds), greedy=True, max_tokens=12)
            assert len(captions) == B and all(isinstance(c, str) for c in captions)
        assert model.vae_text.encode(["a red circle on a blue background"]).shape == (1, 16)


def test_evaluate_scores_every_flow_with_the_checker(straight):
    _, path = straight
    scores = evaluate(load_nano(path=path), n=2, steps=2)
    for flow in ("t2i", "i2i", "dual"):
        assert {f"{flow}_color", f"{flow}_shape", f"{flow}_color_shape"} <= scores.keys()
    assert {"i2t_color_shape", "t2t_color_shape"} <= scores.keys()
    assert all(0.0 <= v <= 1.0 for v in scores.values())


def test_load_nano_explains_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-nano"):
        load_nano(path=tmp_path / "vd-nano.safetensors")


def test_load_nano_loads_only_the_flows_asked_for(straight):
    _, path = straight
    model = load_nano(path=path, flows="text_to_image")
    assert model.vae_text is None and model.clip_image is None and set(model.unet.data) == {"image"}
    assert model.clip_text.tokenize(["a red circle"])[0][0, 0] == CLIP_VOCAB - 2  # word tokenizer attached


def test_quality_measurement_runs_every_flow(straight):
    from vdnodes.nano.quality import FLOWS, THRESHOLDS, Settings, measure

    _, path = straight
    keep = {}
    rates = measure(load_nano(path=path), 3, settings=Settings(steps=2, batch=2), keep=keep)
    assert set(keep) == set(FLOWS)
    assert set(THRESHOLDS) <= rates.keys()
    assert all(0.0 <= v <= 1.0 for k, v in rates.items() if not k.startswith("seconds_"))
    assert len(keep["i2t2i"].texts) == 3 and keep["t2i"].images.shape == (3, 3, 32, 32)


def test_checkpoint_files_get_the_umask_mode_not_600(tmp_path):
    import os
    import stat

    from safetensors.torch import save_file

    old = os.umask(0o022)
    try:
        path = tmp_path / "unet.safetensors"
        write_atomically(path, lambda p: save_file({"w": torch.zeros(2)}, str(p)))  # save_file alone makes 0o600
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
