"""Optimus text VAE: sizes, latent injection, sampling loop, tokenisation, post-processing, keys."""

from __future__ import annotations

import copy

import gzip
import json
import math
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import BertTokenizer, PreTrainedTokenizerFast

from vdnodes.model.keymap import remap
from vdnodes.model.optimus import (
    OptimusConfig,
    OptimusVAE,
    optimus_ignored_keys,
    optimus_keymap,
    merge_repeated_words,
    remove_duplicate_words,
    tiny_optimus_config,
)
from vdnodes.model.tokenizers import load_optimus_tokenizers

MANIFESTS = Path(__file__).parent / "manifests"

ENC_WORDS = ["a", "cat", "Cat", "on", "the", "mat", "dog", "##s", "."]
# GPT-2 style: "Ġ" marks a leading space; "Ġ." exercises the " ." -> "." clean-up.
DEC_WORDS = ["Ġa", "Ġcat", "Ġon", "Ġthe", "Ġmat", "Ġdog", ".", ",", "Ġ.", "Ġsat", "Ġis", "Ġbig", "Ġred"]


def _encoder_tokenizer() -> BertTokenizer:
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *ENC_WORDS])}
    return BertTokenizer(vocab=vocab, do_lower_case=False)


def _decoder_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate([*DEC_WORDS, "<PAD>", "<BOS>", "<EOS>"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<PAD>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend)


@pytest.fixture(scope="module")
def vae() -> OptimusVAE:
    torch.manual_seed(0)
    cfg = tiny_optimus_config(enc_vocab_size=5 + len(ENC_WORDS), dec_vocab_size=len(DEC_WORDS) + 3)
    model = OptimusVAE(cfg, _encoder_tokenizer(), _decoder_tokenizer()).eval()
    # Stronger latent adapters than the default init so the latent visibly steers a random model.
    with torch.no_grad():
        model.decoder.transformer.linear.weight.normal_(0, 0.5)
        model.decoder.transformer.linear_emb.weight.normal_(0, 0.5)
    return model


# ----- sizes and keys -----


def test_full_size_parameter_counts_on_meta():
    with torch.device("meta"):
        model = OptimusVAE(OptimusConfig())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model.encoder) == 109_489_920
    assert count(model.decoder) == 132_109_824
    assert count(model.decoder.transformer.linear) == 7_077_888
    assert count(model.decoder.transformer.linear_emb) == 589_824
    assert model.decoder.lm_head.weight is model.decoder.transformer.wte.weight


@pytest.mark.parametrize(
    "manifest, source", [("optimus_vae.json", "optimus-vae"), ("vd_v1_full.json.gz", "vd-v1")]
)
def test_checkpoint_keys_map_onto_ours(manifest, source):
    path = MANIFESTS / manifest
    raw = path.read_bytes()
    keys = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)["keys"]
    keys = {k: v for k, v in keys.items() if k.startswith(("encoder.", "decoder.", "optimus."))}
    cfg = OptimusConfig()
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in OptimusVAE(cfg).state_dict().items()}
    renamed, unmatched = remap(keys, optimus_keymap(source), ignore=optimus_ignored_keys(cfg, source))
    assert unmatched == []
    assert set(renamed) == set(ours)
    assert all(tuple(renamed[k]) == ours[k] for k in ours)


# ----- latent injection -----


def _manual_logits(model: OptimusVAE, ids: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """GPT-2 forward written out by hand with the latent as one extra key/value per layer."""
    cfg, gpt = model.config, model.decoder.transformer
    B, T = ids.shape
    H, Dh, C = cfg.dec_heads, cfg.dec_hidden // cfg.dec_heads, cfg.dec_hidden
    memory = gpt.linear(z).view(B, cfg.dec_layers, C)  # one C-vector per layer
    pos = torch.arange(1, T + 1)  # the memory slot takes position 0
    x = gpt.wte(ids) + gpt.wpe(pos)[None] + gpt.linear_emb(z)[:, None]
    heads = lambda t: t.view(B, -1, H, Dh).transpose(1, 2)  # noqa: E731
    # query t sees the memory slot and tokens 0..t
    allowed = torch.ones(T, T + 1, dtype=torch.bool).tril(diagonal=1)
    for i, block in enumerate(gpt.h):
        h = block.ln_1(x)
        q, k, v = block.attn.c_attn(h).split(C, dim=2)
        m = memory[:, i : i + 1]  # [B, 1, C]
        k, v = torch.cat([m, k], dim=1), torch.cat([m, v], dim=1)
        att = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(Dh)
        att = att.masked_fill(~allowed, float("-inf")).softmax(-1)
        y = (att @ heads(v)).transpose(1, 2).reshape(B, T, C)
        x = x + block.attn.c_proj(y)
        x = x + block.mlp(block.ln_2(x))
    return model.decoder.lm_head(gpt.ln_f(x))


@torch.no_grad()
def test_latent_injection_matches_manual_computation(vae):
    torch.manual_seed(1)
    z = torch.randn(2, vae.config.latent_dim)
    ids = torch.randint(0, vae.config.dec_vocab_size, (2, 6))
    logits, _ = vae.decoder_logits(ids, z)
    torch.testing.assert_close(logits, _manual_logits(vae, ids, z), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_cached_continuation_matches_full_prefix(vae):
    torch.manual_seed(2)
    z = torch.randn(1, vae.config.latent_dim)
    ids = torch.randint(0, vae.config.dec_vocab_size, (1, 5))
    full, _ = vae.decoder_logits(ids, z)
    first, cache = vae.decoder_logits(ids[:, :3], z)
    rest, _ = vae.decoder_logits(ids[:, 3:], z, cache)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, atol=1e-5, rtol=1e-5)


# ----- sampling -----


def test_cached_and_uncached_sampling_give_the_same_tokens(vae):
    z = torch.randn(2, vae.config.latent_dim, generator=torch.Generator().manual_seed(3))
    cached = vae.decode_ids(z, generator=torch.Generator().manual_seed(7), max_tokens=20)
    uncached = vae.decode_ids(z, generator=torch.Generator().manual_seed(7), max_tokens=20, use_cache=False)
    assert cached == uncached


def test_sequences_start_with_bos_end_with_eos_and_respect_max_tokens(vae):
    cfg = vae.config
    z = torch.randn(3, cfg.latent_dim, generator=torch.Generator().manual_seed(4))
    for max_tokens in (2, 5, 30):
        for seq in vae.decode_ids(z, generator=torch.Generator().manual_seed(0), max_tokens=max_tokens):
            assert seq[0] == cfg.bos_token_id and seq[-1] == cfg.eos_token_id
            assert 2 <= len(seq) <= max_tokens
            assert cfg.eos_token_id not in seq[:-1]


def test_same_generator_gives_same_text(vae):
    z = torch.randn(4, vae.config.latent_dim, generator=torch.Generator().manual_seed(5))
    a = vae.decode(z, generator=torch.Generator().manual_seed(11))
    assert a == vae.decode(z, generator=torch.Generator().manual_seed(11))
    other_seed = vae.decode_ids(z, generator=torch.Generator().manual_seed(12))
    assert other_seed != vae.decode_ids(z, generator=torch.Generator().manual_seed(11))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_model_on_the_gpu_samples_with_the_nodes_cpu_generator(vae):
    # The decode node passes a CPU generator; on a GPU model the draws move to it, and the
    # seeded stream gives the CPU's sentence (a tiny model's logits agree to float rounding).
    z = torch.randn(4, vae.config.latent_dim, generator=torch.Generator().manual_seed(5))
    cpu = vae.decode_ids(z, generator=torch.Generator().manual_seed(11), max_tokens=8)
    gpu = copy.deepcopy(vae).to("cuda").decode_ids(z.cuda(), generator=torch.Generator().manual_seed(11),
                                                   max_tokens=8)
    assert gpu == cpu


@torch.no_grad()
def test_latent_changes_decoding(vae):
    cfg = vae.config
    z = torch.randn(8, cfg.latent_dim, generator=torch.Generator().manual_seed(6))
    first, _ = vae.decoder_logits(torch.full((8, 1), cfg.bos_token_id), z)  # [8, 1, V]
    assert (first[0] - first[1]).abs().max() > 0.1
    greedy = vae.decode_ids(z[:4], greedy=True, max_tokens=8)
    assert len({tuple(s) for s in greedy}) > 1


def test_greedy_is_deterministic_and_accepts_vd_latent_shape(vae):
    z = torch.randn(2, vae.config.latent_dim, generator=torch.Generator().manual_seed(6))
    assert vae.decode(z, greedy=True) == vae.decode(z[:, :, None, None], greedy=True)


def test_decode_rejects_bad_arguments(vae):
    z = torch.zeros(1, vae.config.latent_dim)
    with pytest.raises(ValueError, match="temperature"):
        vae.decode(z, temperature=0.0)
    with pytest.raises(ValueError, match="features"):
        vae.decode(torch.zeros(1, 3))
    bare = OptimusVAE(vae.config)
    with pytest.raises(ValueError, match="decoder tokenizer"):
        bare.decode(z)
    with pytest.raises(ValueError, match="encoder tokenizer"):
        bare.encode(["a cat"])


def test_detokenize_drops_bos_eos_keeps_inner_specials_and_cleans_spaces(vae):
    tok, cfg = vae.decoder_tokenizer, vae.config
    ids = lambda words: tok.convert_tokens_to_ids(words)  # noqa: E731
    seq = [cfg.bos_token_id, *ids(["Ġa", "Ġcat", ",", "Ġa", "Ġdog", "Ġ."]), cfg.eos_token_id]
    assert vae.detokenize(seq) == "a cat, a dog."
    seq = [cfg.bos_token_id, *ids(["Ġa", "<PAD>", "Ġcat"]), cfg.eos_token_id]
    assert vae.detokenize(seq) == "a <PAD> cat"


def test_vd_trim_drops_first_and_last_words_and_loses_a_word_glued_to_bos(vae):
    # VD (lib/model_zoo/optimus.py at HEAD, lines 759-761): decode every id, split on whitespace,
    # drop the first and last words. The same as dropping <BOS>/<EOS> by id, except when the first
    # token has no leading space: its word is glued to "<BOS>" and goes with it.
    tok, cfg = vae.decoder_tokenizer, vae.config
    ids = lambda words: tok.convert_tokens_to_ids(words)  # noqa: E731
    seq = [cfg.bos_token_id, *ids(["Ġa", "Ġcat", ",", "Ġa", "Ġdog", "Ġ."]), cfg.eos_token_id]
    assert vae.detokenize_vd(seq) == vae.detokenize(seq) == "a cat, a dog."
    glued = [cfg.bos_token_id, *ids([".", "Ġcat", "Ġsat"]), cfg.eos_token_id]
    assert vae.detokenize(glued) == ". cat sat"
    assert vae.detokenize_vd(glued) == "cat sat"
    assert vae.detokenize_vd([cfg.bos_token_id, cfg.eos_token_id]) == ""


def test_decode_post_processing_and_temperature(vae):
    z = torch.randn(8, vae.config.latent_dim, generator=torch.Generator().manual_seed(4))

    def decode(**kw):
        return vae.decode(z, generator=torch.Generator().manual_seed(0), **kw)

    assert decode() == decode(trim="tokens", dedupe="v2")  # the defaults
    raw = decode(dedupe="none")
    assert decode(dedupe="v1") == [merge_repeated_words(t) for t in raw]
    assert decode(dedupe="v2") == [remove_duplicate_words(t) for t in raw]
    assert decode(temperature=0.3, dedupe="none") != raw  # VD's temperature divides the logits
    assert decode(temperature=1e-4, dedupe="none") == decode(greedy=True, dedupe="none")
    with pytest.raises(ValueError, match="trim"):
        decode(trim="words")
    assert merge_repeated_words("a cat cat on on the mat . .") == "a cat on the mat ."
    assert merge_repeated_words("a cat on a cat") == "a cat on a cat"  # only adjacent words (v1)


# ----- encoder -----


def test_encode_lower_cases_and_frames_with_cls_sep(vae):
    tok = vae.encoder_tokenizer
    ids = vae.tokenize(["A CAT", "a cat on the mat"])
    cat = tok.convert_tokens_to_ids("cat")
    a = tok.convert_tokens_to_ids("a")
    assert ids[0].tolist() == [tok.cls_token_id, a, cat, tok.sep_token_id, 0, 0, 0]
    with torch.no_grad():
        torch.testing.assert_close(vae.encode(["A CAT"]), vae.encode(["a cat"]))
        # padding is masked out: the short sentence encodes the same alone and in a batch
        batched = vae.encode(["a cat", "a cat on the mat"])[0]
        torch.testing.assert_close(batched, vae.encode(["a cat"])[0], atol=1e-5, rtol=1e-5)
    assert vae.encode(["a cat"]).shape == (1, vae.config.latent_dim)


def test_encode_truncates_to_77_pieces(vae):
    ids = vae.tokenize([" ".join(["cat"] * 100)])
    assert ids.shape == (1, 77 + 2)
    assert ids[0, -1].item() == vae.encoder_tokenizer.sep_token_id


# ----- post-processing and tokenizer files -----


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", ""),
        ("a cat", "a cat"),
        ("a cat cat sitting", "a cat sitting"),
        ("a a a dog", "a dog"),
        ("a cat on a cat on a mat", "a cat on a mat"),
        ("on the the table table .", "on the table."),
        ("a dog. a dog. a cat", "a dog. a cat"),
        ("a red (big) car", "a red (big) car"),
        ("hello, hello, world", "hello, world"),
    ],
)
def test_remove_duplicate_words(text, expected):
    assert remove_duplicate_words(text) == expected


def test_load_optimus_tokenizers_appends_specials_in_order(tmp_path):
    bert_words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *ENC_WORDS]
    (tmp_path / "bert-base-cased-vocab.txt").write_text("\n".join(bert_words) + "\n")
    (tmp_path / "gpt2-vocab.json").write_text(json.dumps({"a": 0, "b": 1, "ab": 2, "<|endoftext|>": 3}))
    (tmp_path / "gpt2-merges.txt").write_text("#version: 0.2\na b\n")
    enc, dec = load_optimus_tokenizers(tmp_path)
    assert enc.tokenize("Cats") == ["Cat", "##s"]  # cased: the caller lower-cases
    assert dec.convert_tokens_to_ids(["<PAD>", "<BOS>", "<EOS>"]) == [4, 5, 6]
    (tmp_path / "gpt2-merges.txt").unlink()
    with pytest.raises(FileNotFoundError, match="merges"):
        load_optimus_tokenizers(tmp_path)
