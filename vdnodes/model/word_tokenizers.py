"""Whole-word tokenizers for small Optimus models (the tiny test model and vd-nano).

Full-size Optimus uses BERT-cased WordPiece and GPT-2 BPE vocabularies that VD
ships as files (``tokenizers.load_optimus_tokenizers``). Small models trained on
template captions need only a few dozen words, so they use word-level
vocabularies built here with the ``tokenizers`` library, laid out the way
``OptimusVAE`` expects:

- encoder: ``[PAD]=0, [UNK], [CLS], [SEP], [MASK]``, then the words;
- decoder: ``<UNK>``, the words, padding entries, and ``<PAD>, <BOS>, <EOS>`` as
  the last three ids.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

ENCODER_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
DECODER_SPECIALS = ("<PAD>", "<BOS>", "<EOS>")

# Words of short scene captions ("a small red striped triangle on a blue background").
CAPTION_WORDS = (
    "a", "an", "the", "on", "with", "of", "and", "in", "is", "at", "to", "over", "under",
    "background", "picture", "photo", "image", "shape", "object", "stripes", "dots", "noise",
    "small", "medium", "large", "big", "tiny", "left", "right", "top", "bottom", "center",
    "red", "green", "blue", "yellow", "purple", "orange", "white", "black", "gray", "pink", "cyan",
    "brown", "circle", "square", "triangle", "star", "cross", "diamond", "heart", "ring",
    "solid", "striped", "dotted", "noisy", "plain", "textured", ",", ".",
)


def _vocab(words: Sequence[str], head: Sequence[str], tail: Sequence[str], size: int, what: str) -> dict[str, int]:
    seen: list[str] = []
    for w in [*head, *words]:
        if w not in seen:
            seen.append(w)
    room = size - len(tail)
    if len(seen) > room:
        raise ValueError(f"{what} vocabulary needs {len(seen) + len(tail)} ids but the model has {size}")
    seen += [f"[unused{i}]" for i in range(room - len(seen))] + list(tail)
    return {w: i for i, w in enumerate(seen)}


def _fast(vocab: dict[str, int], unk: str, **specials: str) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=unk, **specials)
    if len(fast) != len(vocab):
        raise ValueError(f"tokenizer has {len(fast)} ids, expected {len(vocab)}")
    return fast


def word_tokenizers(
    enc_vocab_size: int, dec_vocab_size: int, words: Sequence[str] = CAPTION_WORDS
) -> tuple[PreTrainedTokenizerFast, PreTrainedTokenizerFast]:
    """(encoder tokenizer, decoder tokenizer) over ``words`` for an Optimus of these sizes."""
    words = [w.lower() for w in words]
    enc = _fast(_vocab(words, ENCODER_SPECIALS, (), enc_vocab_size, "encoder"), "[UNK]",
                pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    dec = _fast(_vocab(words, ("<UNK>",), DECODER_SPECIALS, dec_vocab_size, "decoder"), "<UNK>",
                pad_token="<PAD>", bos_token="<BOS>", eos_token="<EOS>")
    return enc, dec
