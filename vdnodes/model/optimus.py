"""Optimus, VD's text VAE: sentence <-> 768-d latent (vd-architecture.md §3.2).

What it is: a transformers ``BertModel`` encoder (with pooler) plus ``linear`` 768 -> 2x768
(mu | logvar), and a transformers ``GPT2LMHeadModel`` decoder plus two latent adapters on
``decoder.transformer``:
  1. ``linear`` (latent -> n_layer x hidden): one extra past key *and* value slot per layer (the
     same vector for both, split into heads), prepended to that layer's keys/values;
  2. ``linear_emb`` (latent -> hidden): added to every input token embedding.
Positions start at 1 because of the memory slot. The memory slot is fed through transformers'
``DynamicCache`` as a one-token past, so GPT-2 itself is untouched and the KV cache can be used
for fast sampling. Sub-module names equal the ``optimus-vae.pth`` key names.

Also here: the sampling loop (VD's ``sample_single_sequence_conditional``), detokenisation and
VD v2's ``remove_duplicate_word`` post-processing.

What it is not: no tokenizer files (see ``tokenizers.py``), no checkpoint I/O, no training code.
Differences from VD, on purpose: top-p=1.0 filtering is skipped (it only drops a float-rounding
tail); ``<BOS>``/``<EOS>`` are dropped by id rather than as the first/last whitespace word; a
greedy mode exists (VD has none).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    BertConfig,
    BertModel,
    DynamicCache,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerBase,
)

from vdnodes.model.keymap import KeyMap
from vdnodes.model.tokenizers import load_optimus_tokenizers  # noqa: F401  (re-exported)

# ---------------------------------------------------------------------------------------------
# Text post-processing
# ---------------------------------------------------------------------------------------------

_OPENERS = "([{"
_CLOSERS = "?!.,:;}])"
_GLUE = "<puncnext>"  # VD's marker between a word and punctuation split off it


def clean_up_tokenization(text: str) -> str:
    """Spacing clean-up of the pytorch-transformers 1.x tokenizer Optimus ships (incl. "do not")."""
    for old, new in (
        (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
        (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
    ):  # fmt: skip
        text = text.replace(old, new)
    return text


def _split_punctuation(text: str) -> list[str]:
    """Words, with leading ``([{`` and trailing ``?!.,:;}])`` split off and glued by a marker."""
    units: list[str] = []
    for word in text.split():
        lead: list[str] = []
        while word and word[0] in _OPENERS:
            lead += [word[0], _GLUE]
            word = word[1:]
        trail: list[str] = []
        while word and word[-1] in _CLOSERS:
            trail = [_GLUE, word[-1]] + trail
            word = word[:-1]
        units += lead + ([word] if word else []) + trail
    return units


def remove_duplicate_words(text: str) -> str:
    """Remove immediately repeated n-grams, n = 1, 2, ... (VD v2 ``remove_duplicate_word``).

    "a cat cat on a mat" -> "a cat on a mat"; "on the the table table ." -> "on the table.";
    for each n, the leftmost repeat is removed first and the scan restarts.
    """
    units = _split_punctuation(text)
    n = 1
    while 2 * n <= len(units):
        i = 0
        while i + 2 * n <= len(units):
            if units[i : i + n] == units[i + n : i + 2 * n]:
                del units[i + n : i + 2 * n]
                i = 0
            else:
                i += 1
        n += 1
    out = " ".join(units).replace(f" {_GLUE} ", "")
    # VD leaves a stray marker when an opener ends the text; we drop it.
    return out.replace(f"{_GLUE} ", "").replace(f" {_GLUE}", "").replace(_GLUE, "")


def merge_repeated_words(text: str) -> str:
    """Drop a word equal to the one before it (VD v1 ``inference.py`` at 51dcd3b, lines 100-110)."""
    words = text.split()
    return " ".join(w for i, w in enumerate(words) if i == 0 or w != words[i - 1])


DEDUPE = {"v2": remove_duplicate_words, "v1": merge_repeated_words, "none": lambda text: text}


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptimusConfig:
    """Optimus as used by VD: BERT-base cased encoder, GPT-2 small decoder, 768-d latent."""

    # encoder: BERT-base cased
    enc_vocab_size: int = 28996
    enc_hidden: int = 768
    enc_layers: int = 12
    enc_heads: int = 12
    enc_ffn: int = 3072
    enc_max_positions: int = 512
    enc_type_vocab: int = 2
    enc_ln_eps: float = 1e-12
    # decoder: GPT-2 small with 3 tokens appended (50257 + <PAD>, <BOS>, <EOS>)
    dec_vocab_size: int = 50260
    dec_hidden: int = 768
    dec_layers: int = 12
    dec_heads: int = 12
    dec_max_positions: int = 1024
    dec_ln_eps: float = 1e-5
    pad_token_id: int = 50257
    bos_token_id: int = 50258
    eos_token_id: int = 50259
    # latent and text lengths
    latent_dim: int = 768
    max_encode_pieces: int = 77  # word-pieces kept before [CLS]/[SEP] are added (VD v2)
    max_decode_tokens: int = 30  # <BOS> included; the 30th token is forced to <EOS>

    def bert_config(self) -> BertConfig:
        return BertConfig(
            vocab_size=self.enc_vocab_size,
            hidden_size=self.enc_hidden,
            num_hidden_layers=self.enc_layers,
            num_attention_heads=self.enc_heads,
            intermediate_size=self.enc_ffn,
            hidden_act="gelu",
            max_position_embeddings=self.enc_max_positions,
            type_vocab_size=self.enc_type_vocab,
            layer_norm_eps=self.enc_ln_eps,
            pad_token_id=0,
        )

    def gpt2_config(self) -> GPT2Config:
        return GPT2Config(
            vocab_size=self.dec_vocab_size,
            n_positions=self.dec_max_positions,
            n_embd=self.dec_hidden,
            n_layer=self.dec_layers,
            n_head=self.dec_heads,
            layer_norm_epsilon=self.dec_ln_eps,
            activation_function="gelu_new",
            tie_word_embeddings=True,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
        )


def tiny_optimus_config(
    enc_vocab_size: int,
    dec_vocab_size: int,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    latent_dim: int = 16,
) -> OptimusConfig:
    """A small Optimus for tests/nano; the decoder's last three ids are <PAD>, <BOS>, <EOS>."""
    return OptimusConfig(
        enc_vocab_size=enc_vocab_size,
        enc_hidden=hidden,
        enc_layers=layers,
        enc_heads=heads,
        enc_ffn=2 * hidden,
        enc_max_positions=128,
        dec_vocab_size=dec_vocab_size,
        dec_hidden=hidden,
        dec_layers=layers,
        dec_heads=heads,
        dec_max_positions=128,
        pad_token_id=dec_vocab_size - 3,
        bos_token_id=dec_vocab_size - 2,
        eos_token_id=dec_vocab_size - 1,
        latent_dim=latent_dim,
    )


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class OptimusVAE(nn.Module):
    """Optimus text VAE: ``encode(texts) -> [B, latent]``, ``decode(z) -> list[str]``.

    Built in eval mode. Tokenizers are plain attributes (not saved in the state dict).
    """

    def __init__(
        self,
        config: OptimusConfig,
        encoder_tokenizer: PreTrainedTokenizerBase | None = None,
        decoder_tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.encoder = BertModel(config.bert_config(), add_pooling_layer=True)
        # -> mu | logvar
        self.encoder.linear = nn.Linear(config.enc_hidden, 2 * config.latent_dim, bias=False)
        self.decoder = GPT2LMHeadModel(config.gpt2_config())
        gpt = self.decoder.transformer
        # latent -> one memory key/value per layer, and latent -> token-embedding offset
        gpt.linear = nn.Linear(config.latent_dim, config.dec_layers * config.dec_hidden, bias=False)
        gpt.linear_emb = nn.Linear(config.latent_dim, config.dec_hidden, bias=False)
        self.encoder_tokenizer = encoder_tokenizer
        self.decoder_tokenizer = decoder_tokenizer
        self.eval()  # frozen in VD; BERT/GPT-2 dropout would make sampling irreproducible

    # ----- encoder -----

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Encoder ids ``[B, L]``: lower-cased WordPiece, <= 77 pieces, [CLS] ... [SEP], 0-padded."""
        tok = self._need(self.encoder_tokenizer, "encoder")
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not a single string")
        rows = []
        for text in texts:
            pieces = tok.tokenize(text.lower())[: self.config.max_encode_pieces]
            ids = [tok.cls_token_id, *tok.convert_tokens_to_ids(pieces), tok.sep_token_id]
            rows.append(torch.tensor(ids, dtype=torch.long))
        return nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=0)

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Encoder ids ``[B, L]`` (0 = padding) -> mu ``[B, latent]`` (no sampling, as in VD)."""
        ids = ids.to(self.encoder.linear.weight.device)
        pooled = self.encoder(input_ids=ids, attention_mask=(ids > 0).long()).pooler_output  # [B, C]
        mu, _logvar = self.encoder.linear(pooled).chunk(2, dim=-1)
        return mu  # [B, latent]

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Sentences -> latent mu ``[B, latent]``. The text is lower-cased first (VD does this)."""
        return self.encode_ids(self.tokenize(texts))

    # ----- decoder -----

    def latent_memory(self, z: torch.Tensor) -> DynamicCache:
        """The latent as a one-token past: per layer, key = value = its 768-slice, split in heads."""
        cfg = self.config
        heads, head_dim = cfg.dec_heads, cfg.dec_hidden // cfg.dec_heads
        mem = self.decoder.transformer.linear(z)  # [B, L * C]
        mem = mem.view(z.shape[0], cfg.dec_layers, heads, 1, head_dim)  # [B, L, H, 1, Dh]
        slots = [(mem[:, i], mem[:, i]) for i in range(cfg.dec_layers)]  # L x ([B, H, 1, Dh], same)
        return DynamicCache(slots, config=self.decoder.config)

    def decoder_logits(
        self, ids: torch.Tensor, z: torch.Tensor, cache: DynamicCache | None = None
    ) -> tuple[torch.Tensor, DynamicCache]:
        """Next-token logits ``[B, T, V]`` for ``ids`` ``[B, T]`` given latents ``z`` ``[B, latent]``.

        Without ``cache`` the ids are the whole prefix (positions 1..T after the memory slot).
        To continue, pass the returned cache and only the new ids.
        """
        gpt = self.decoder.transformer
        if cache is None:
            cache = self.latent_memory(z)
        embeds = gpt.wte(ids) + gpt.linear_emb(z)[:, None, :]  # [B, T, C]
        out = self.decoder(inputs_embeds=embeds, cache=cache, use_cache=True)
        return out.logits, out.cache

    @torch.no_grad()
    def decode_ids(
        self,
        z: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        max_tokens: int | None = None,
        temperature: float = 1.0,
        greedy: bool = False,
        use_cache: bool = True,
    ) -> list[list[int]]:
        """Token ids per latent, ``<BOS>`` ... ``<EOS>`` (VD's loop, one sample at a time).

        Each step samples from softmax(logits / temperature) with ``generator`` (or takes the
        argmax when ``greedy``); it stops at ``<EOS>`` or at ``max_tokens`` (``<BOS>`` included),
        where the last token is replaced by ``<EOS>``. ``use_cache=False`` re-runs the whole
        prefix each step, exactly like VD; the cached path gives the same tokens, faster.
        Tokens are drawn on the generator's device (the nodes pass a CPU generator), so a
        model on a GPU samples with the same seeded stream as on the CPU.
        """
        cfg = self.config
        max_tokens = cfg.max_decode_tokens if max_tokens is None else max_tokens
        if max_tokens < 2:
            raise ValueError(f"max_tokens must be at least 2 (<BOS> and <EOS>), got {max_tokens}")
        if not greedy and temperature <= 0:
            raise ValueError(f"temperature must be positive (or use greedy=True), got {temperature}")
        z = z.flatten(1)  # [B, latent]; also accepts VD's [B, latent, 1, 1]
        if z.shape[1] != cfg.latent_dim:
            raise ValueError(f"latent has {z.shape[1]} features, Optimus expects {cfg.latent_dim}")
        weight = self.decoder.transformer.linear.weight
        z = z.to(device=weight.device, dtype=weight.dtype)

        device = weight.device
        sequences = []
        for zi in z[:, None]:  # [1, latent] each
            ids, cache = [cfg.bos_token_id], None
            while True:
                step = ids[-1:] if cache is not None else ids
                logits, new_cache = self.decoder_logits(torch.tensor([step], device=device), zi, cache)
                cache = new_cache if use_cache else None
                last = logits[0, -1].float()  # [V]
                if greedy:
                    token = int(last.argmax())
                else:
                    probs = F.softmax(last / temperature, dim=-1)
                    if generator is not None:
                        probs = probs.to(generator.device)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                ids.append(token)
                if token == cfg.eos_token_id:
                    break
                if len(ids) >= max_tokens:
                    ids[-1] = cfg.eos_token_id
                    break
            sequences.append(ids)
        return sequences

    def detokenize(self, ids: list[int]) -> str:
        """``<BOS>`` ... ``<EOS>`` ids -> text; special ids inside are kept as space-separated words."""
        cfg = self.config
        if ids and ids[0] == cfg.bos_token_id:
            ids = ids[1:]
        if ids and ids[-1] == cfg.eos_token_id:
            ids = ids[:-1]
        return self._join(ids)

    def detokenize_vd(self, ids: list[int]) -> str:
        """VD's own post-processing: decode every id, then drop the first and last whitespace words.

        SHI-Labs/Versatile-Diffusion ``lib/model_zoo/optimus.py`` (HEAD) lines 759-761 (v1:
        ``optimus_decode``): ``text.split()[1:-1]``. It differs from ``detokenize`` (which drops
        ``<BOS>``/``<EOS>`` by id) when the first sampled token has no leading space: VD's
        tokenizer writes " <BOS>" glued to it ("<BOS>cat ..."), so that first word is lost.
        """
        return " ".join(self._join(ids).split()[1:-1])

    def _join(self, ids: list[int]) -> str:
        """VD's tokenizer ``decode``: added tokens as " <TOK>", byte-level runs in between, cleaned."""
        tok = self._need(self.decoder_tokenizer, "decoder")
        cfg = self.config
        specials = {cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id}
        pieces: list[str] = []
        run: list[int] = []
        for i in [*ids, None]:  # None flushes the last run
            if i is None or i in specials:
                if run:
                    text = tok.decode(run, skip_special_tokens=False, clean_up_tokenization_spaces=False)
                    pieces.append(text)
                    run = []
                if i is not None:
                    pieces.append(" " + tok.convert_ids_to_tokens(i))
            else:
                run.append(i)
        return " ".join(clean_up_tokenization("".join(pieces)).split())

    def decode(
        self,
        z: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        max_tokens: int | None = None,
        temperature: float = 1.0,
        greedy: bool = False,
        remove_duplicates: bool = True,
        trim: str = "tokens",
        dedupe: str = "v2",
    ) -> list[str]:
        """Latents ``[B, latent]`` -> one sentence each (stochastic unless ``greedy``).

        ``trim``: "tokens" drops ``<BOS>``/``<EOS>`` by id, "vd" drops the first and last words
        as VD does (``detokenize_vd``). ``dedupe``: "v2" (VD's demo ``remove_duplicate_word``),
        "v1" (VD v1 ``inference.py``: repeated adjacent words) or "none";
        ``remove_duplicates=False`` is "none".
        """
        self._need(self.decoder_tokenizer, "decoder")
        if trim not in ("tokens", "vd") or dedupe not in DEDUPE:
            raise ValueError(f"trim must be 'tokens' or 'vd' and dedupe one of {sorted(DEDUPE)}")
        seqs = self.decode_ids(
            z, generator=generator, max_tokens=max_tokens, temperature=temperature, greedy=greedy
        )
        texts = [self.detokenize(s) if trim == "tokens" else self.detokenize_vd(s) for s in seqs]
        return [DEDUPE[dedupe if remove_duplicates else "none"](t) for t in texts]

    @staticmethod
    def _need(tokenizer: PreTrainedTokenizerBase | None, which: str) -> PreTrainedTokenizerBase:
        if tokenizer is None:
            raise ValueError(
                f"OptimusVAE has no {which} tokenizer; pass {which}_tokenizer= "
                "(see tokenizers.load_optimus_tokenizers)"
            )
        return tokenizer


# ---------------------------------------------------------------------------------------------
# Key maps (checkpoint names -> OptimusVAE state-dict names)
# ---------------------------------------------------------------------------------------------

_OPTIMUS_SOURCES = {"optimus-vae": "", "vd-v1": "optimus."}


def _optimus_prefix(source: str) -> str:
    if source not in _OPTIMUS_SOURCES:
        raise ValueError(
            f"unknown Optimus checkpoint source {source!r}; expected one of {sorted(_OPTIMUS_SOURCES)}"
        )
    return _OPTIMUS_SOURCES[source]


def optimus_keymap(source: str = "optimus-vae") -> KeyMap:
    """``optimus-vae.pth`` (names already ours) or ``vd-v1`` (``optimus.*`` in the v1 full file)."""
    p = _optimus_prefix(source)
    return {f"{p}encoder.": "encoder.", f"{p}decoder.": "decoder."}


def optimus_ignored_keys(config: OptimusConfig, source: str = "optimus-vae") -> tuple[str, ...]:
    """The per-layer causal-mask buffers old GPT-2 code saved (``attn.bias``, ``attn.masked_bias``)."""
    p = _optimus_prefix(source)
    return tuple(
        f"{p}decoder.transformer.h.{i}.attn.{name}"
        for i in range(config.dec_layers)
        for name in ("bias", "masked_bias")
    )
