"""Tokenizers for VD's text encoders, built offline from files on disk.

What it is:
- ``clip_tokenizer()``: the CLIP BPE tokenizer (49,408 ids) as a transformers ``CLIPTokenizer``,
  rebuilt in memory from open_clip's ``bpe_simple_vocab_16e6.txt.gz`` the same way open_clip's
  ``tokenizer.py`` builds its vocabulary. No hub access.
- ``load_tokenizer(folder)``: a ``CLIPTokenizer`` from a diffusers ``tokenizer/`` folder.
- ``load_optimus_tokenizers(folder)``: Optimus' BERT-cased WordPiece tokenizer (encoder) and the
  GPT-2 BPE tokenizer with ``<PAD>``, ``<BOS>``, ``<EOS>`` appended (decoder), from the vocabulary
  files VD bundles (vd-architecture.md §3.2).

What it is not: no model code, no downloads. open_clip itself is never imported (it pulls in
torchvision); only its data file is read.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

from transformers import BertTokenizer, CLIPTokenizer, GPT2Tokenizer, PreTrainedTokenizerBase

CLIP_VOCAB_SIZE = 49408
CLIP_MAX_LENGTH = 77
CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"

# Optimus' decoder appends these to GPT-2's 50,257 ids, in this order (ids 50257, 50258, 50259).
OPTIMUS_DECODER_SPECIALS = {"pad_token": "<PAD>", "bos_token": "<BOS>", "eos_token": "<EOS>"}

# Candidate file names: VD's bundled names first, then the usual Hugging Face names.
_BERT_VOCAB_NAMES = ("bert-base-cased-vocab.txt", "vocab.txt")
_GPT2_VOCAB_NAMES = ("gpt2-vocab.json", "vocab.json")
_GPT2_MERGES_NAMES = ("gpt2-merges.txt", "merges.txt")

# ---------------------------------------------------------------------------------------------
# CLIP
# ---------------------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode character table (the BPE's base alphabet)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + n)
            n += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def _open_clip_bpe_path() -> Path:
    spec = importlib.util.find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / CLIP_BPE_FILE
        if path.is_file():
            return path
    where = ", ".join(locations) if locations else "no open_clip package found"
    raise FileNotFoundError(
        f"CLIP vocabulary file {CLIP_BPE_FILE!r} not found ({where}). Install open_clip_torch "
        "(its data file is enough), or load a diffusers tokenizer folder with load_tokenizer()."
    )


def clip_vocab_and_merges(bpe_path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merge list exactly as open_clip's ``SimpleTokenizer`` builds them."""
    with gzip.open(bpe_path) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    byte_chars = list(_bytes_to_unicode().values())
    words = byte_chars + [c + "</w>" for c in byte_chars]
    words += ["".join(m) for m in merges]
    words += ["<|startoftext|>", "<|endoftext|>"]
    return {w: i for i, w in enumerate(words)}, merges  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def clip_tokenizer() -> CLIPTokenizer:
    """The CLIP ViT-L/14 tokenizer, built offline from open_clip's BPE file (cached).

    Pads with ``<|endoftext|>`` (id 49407) and truncates to 77 ids, like
    ``openai/clip-vit-large-patch14``.
    """
    vocab, merges = clip_vocab_and_merges(_open_clip_bpe_path())
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_MAX_LENGTH)
    if len(tokenizer) != CLIP_VOCAB_SIZE:
        raise ValueError(
            f"CLIP tokenizer built from {CLIP_BPE_FILE} has {len(tokenizer)} ids, "
            f"expected {CLIP_VOCAB_SIZE}; the vocabulary file is not the CLIP one"
        )
    return tokenizer


def load_tokenizer(folder: str | Path) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` from a local diffusers ``tokenizer/`` folder (vocab.json + merges.txt)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"tokenizer folder not found: {folder}")
    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)


# ---------------------------------------------------------------------------------------------
# Optimus
# ---------------------------------------------------------------------------------------------


def _find(folder: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{what} not found in {folder}: expected one of {', '.join(names)}")


def load_optimus_tokenizers(
    folder: str | Path,
) -> tuple[PreTrainedTokenizerBase, PreTrainedTokenizerBase]:
    """(encoder tokenizer, decoder tokenizer) for Optimus from the vocabulary files in ``folder``.

    Expects VD's bundled files ``bert-base-cased-vocab.txt``, ``gpt2-vocab.json`` and
    ``gpt2-merges.txt`` (or ``vocab.txt``/``vocab.json``/``merges.txt``). The BERT tokenizer is
    cased (``do_lower_case=False``); the caller lower-cases the text, as VD does.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Optimus tokenizer folder not found: {folder}")
    bert_vocab = _find(folder, _BERT_VOCAB_NAMES, "BERT cased vocabulary")
    gpt2_vocab = _find(folder, _GPT2_VOCAB_NAMES, "GPT-2 vocabulary")
    gpt2_merges = _find(folder, _GPT2_MERGES_NAMES, "GPT-2 merges")

    encoder_tok = BertTokenizer(vocab=str(bert_vocab), do_lower_case=False)
    decoder_tok = GPT2Tokenizer(vocab=str(gpt2_vocab), merges=str(gpt2_merges))
    base = len(decoder_tok)
    decoder_tok.add_special_tokens(dict(OPTIMUS_DECODER_SPECIALS))
    ids = decoder_tok.convert_tokens_to_ids(list(OPTIMUS_DECODER_SPECIALS.values()))
    if ids != [base, base + 1, base + 2]:
        raise ValueError(
            f"GPT-2 vocabulary in {folder} already contains Optimus' special tokens "
            f"(got ids {ids}, expected {[base, base + 1, base + 2]})"
        )
    return encoder_tok, decoder_tok
