"""Word-level tokenizers of vd-nano: one small vocabulary for CLIP text and for Optimus.

vd-nano only ever reads and writes short scene captions, so both its text encoders use
whole-word vocabularies instead of CLIP's 49,408-id BPE and BERT/GPT-2's vocabularies
(a 49,408 x 128 embedding alone would be a third of the 40 MB budget):

- CLIP text: ``[UNK]``, the words, ``[unused*]`` padding, then ``<|startoftext|>`` and
  ``<|endoftext|>`` as the last two ids, like CLIP (EOS is the highest id). Every prompt is
  wrapped as ``<|startoftext|> words <|endoftext|>`` and padded with ``<|endoftext|>``; the
  model's ``eos_token_id`` is that id, so transformers' CLIP pools the first EOS (it would
  take the arg-max id only for the legacy ``eos_token_id == 2``).
- Optimus: ``vdnodes.model.word_tokenizers.word_tokenizers`` over the same words.

The words are stored in the weights file's metadata, so a file always rebuilds the
tokenizers it was trained with. Unknown words become ``[UNK]`` / ``<UNK>``.

What it is not: no model code, no file I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from vdnodes.model.word_tokenizers import CAPTION_WORDS, word_tokenizers
from vdnodes.nano.scenes import COLORS, SHAPES, SIZES, TEXTURES

CLIP_SPECIALS = ("<|startoftext|>", "<|endoftext|>")  # the last two ids, as in CLIP
CLIP_UNK = "[UNK]"


def nano_words() -> tuple[str, ...]:
    """The vocabulary: the shared caption words plus every scene word (checked, not assumed)."""
    words = list(CAPTION_WORDS)
    for w in (*COLORS, *SHAPES, *TEXTURES, *SIZES, "with", "stripes", "dots", "noise", "background"):
        if w not in words:
            words.append(w)
    return tuple(words)


def clip_word_tokenizer(words: Sequence[str], vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """A CLIP-style word tokenizer: ``<|startoftext|> ... <|endoftext|>``, padded with EOS.

    ids: ``[UNK]`` = 0, the words, ``[unused*]``, BOS = ``vocab_size - 2``, EOS = ``vocab_size - 1``.
    """
    names = [CLIP_UNK]
    for w in words:
        w = w.lower()
        if w not in names:
            names.append(w)
    room = vocab_size - len(CLIP_SPECIALS)
    if len(names) > room:
        raise ValueError(f"CLIP word vocabulary needs {len(names) + 2} ids but the model has {vocab_size}")
    names += [f"[unused{i}]" for i in range(room - len(names))] + list(CLIP_SPECIALS)
    vocab = {w: i for i, w in enumerate(names)}
    bos, eos = CLIP_SPECIALS

    tok = Tokenizer(models.WordLevel(vocab, unk_token=CLIP_UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=CLIP_UNK, bos_token=bos, eos_token=eos, pad_token=eos,
        model_max_length=max_length,
    )
    if len(fast) != vocab_size:
        raise ValueError(f"CLIP word tokenizer has {len(fast)} ids, expected {vocab_size}")
    return fast


def tokenizer_info(config: Any, words: Sequence[str] | None = None) -> dict[str, Any]:
    """What a weights file stores to rebuild its tokenizers (``config``: a nano ``VDConfig``)."""
    return {
        "kind": "nano-words",
        "words": list(nano_words() if words is None else words),
        "clip_vocab_size": config.clip_text.vocab_size,
        "clip_max_length": config.clip_text.max_position_embeddings,
        "optimus_enc_vocab_size": config.optimus.enc_vocab_size,
        "optimus_dec_vocab_size": config.optimus.dec_vocab_size,
    }


def build_tokenizers(info: dict[str, Any]) -> tuple[PreTrainedTokenizerFast, tuple[PreTrainedTokenizerFast, ...]]:
    """(CLIP tokenizer, (Optimus encoder tokenizer, Optimus decoder tokenizer)) from ``tokenizer_info``."""
    if info.get("kind") != "nano-words":
        raise ValueError(f"unknown tokenizer kind {info.get('kind')!r}; expected 'nano-words'")
    words = info["words"]
    clip = clip_word_tokenizer(words, int(info["clip_vocab_size"]), int(info["clip_max_length"]))
    optimus = word_tokenizers(int(info["optimus_enc_vocab_size"]), int(info["optimus_dec_vocab_size"]), words)
    return clip, optimus
