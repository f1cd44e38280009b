"""The shipped vd-nano weights: where they live, how they load, how training writes them.

A vd-nano file is a vdnodes ``.safetensors`` VD checkpoint (fp16, config in the metadata)
whose metadata also holds the word lists of its tokenizers (``"tokenizers"``) and a training
record (``"training"``). ``load_vd`` alone would give it CLIP's BPE tokenizer and no Optimus
tokenizers; ``load_nano`` attaches the right ones.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vdnodes.model import checkpoints as ck
from vdnodes.model import vd as vdm
from vdnodes.nano.tokenizers import build_tokenizers

from vdnodes.nano.shipped import NANO_WEIGHTS, WEIGHTS_NAME, missing_weights_message  # noqa: F401 (re-exported)


def save_nano(model: vdm.VersatileDiffusion, path: Path, tokenizers: dict[str, Any],
              training: dict[str, Any]) -> Path:
    """Write ``model`` as fp16 safetensors with its config, tokenizer words and training record."""
    half = copy.deepcopy(model).to("cpu").half()
    return vdm.save_vd(half, path, {"tokenizers": tokenizers, "training": training, "dtype": "float16"})


def file_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (reads the header only)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for malformed headers
        raise ck.CheckpointError(f"cannot read the safetensors header of {str(path)!r}: {e}") from None


def is_nano_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a safetensors file carrying vd-nano tokenizer words."""
    p = Path(path)
    return p.is_file() and p.suffix == ".safetensors" and "tokenizers" in file_metadata(p)


def nano_tokenizers(path: str | os.PathLike) -> tuple[Any, tuple[Any, Any]]:
    """(CLIP tokenizer, (Optimus encoder, decoder) tokenizers) stored in a vd-nano weights file."""
    meta = file_metadata(path)
    if "tokenizers" not in meta:
        raise ck.CheckpointError(f"{str(path)!r} has no tokenizer words in its metadata; is it a vd-nano file?")
    clip_tok, optimus_tok = build_tokenizers(json.loads(meta["tokenizers"]))
    return clip_tok, tuple(optimus_tok)


def training_record(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The training record stored in a vd-nano file (budget, seed, steps, per-stage results)."""
    meta = file_metadata(path or NANO_WEIGHTS)
    return json.loads(meta.get("training", "{}"))


def attach_tokenizers(model: vdm.VersatileDiffusion, clip_tok: Any, optimus_tok: tuple[Any, Any]) -> None:
    """Give a loaded nano model its word tokenizers (``load_vd`` only knows CLIP's BPE)."""
    if model.clip_text is not None:
        model.clip_text._tokenizer = clip_tok
    if model.vae_text is not None:
        model.vae_text.encoder_tokenizer, model.vae_text.decoder_tokenizer = optimus_tok


def load_nano(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, *,
              path: str | os.PathLike | None = None, flows: str | Iterable[str] | None = None,
              components: Iterable[str] | None = None) -> vdm.VersatileDiffusion:
    """The shipped vd-nano (``NANO_WEIGHTS``, or ``path``) with its tokenizers attached.

    ``flows`` / ``components`` load only part of it, as in ``load_vd``.
    """
    p = Path(path) if path is not None else NANO_WEIGHTS
    if not p.is_file():
        raise FileNotFoundError(missing_weights_message(p))
    model = vdm.load_vd(p, flows=flows, components=components, device=device, dtype=dtype)
    attach_tokenizers(model, *nano_tokenizers(p))
    return model


@dataclass(frozen=True)
class WeightsComparison:
    """How two vd-nano files differ: tensor by tensor, bit for bit, and in their model config."""

    tensors: int  # tensors present in both files
    differing: tuple[str, ...]  # names whose values (or dtype / shape) differ
    missing: tuple[str, ...]  # in the reference only
    extra: tuple[str, ...]  # in the other file only
    largest: tuple[str, float] | None  # the tensor with the largest |difference| and that difference
    config_equal: bool | None  # the model config (latent scales included) is the same; None: not compared

    @property
    def identical(self) -> bool:
        return not (self.differing or self.missing or self.extra) and self.config_equal is not False

    def summary(self) -> str:
        """One line: identical, or what differs and by how much."""
        if self.identical:
            return f"identical: all {self.tensors} tensors bit for bit" + (", and the config" if self.config_equal else "")
        parts = []
        if self.differing:
            worst = f" (largest |difference| {self.largest[1]:.3g}, in {self.largest[0]})" if self.largest else ""
            parts.append(f"{len(self.differing)} of {self.tensors} tensors differ{worst}")
        if self.missing or self.extra:
            parts.append(f"{len(self.missing)} tensors missing, {len(self.extra)} extra")
        if self.config_equal is False:
            parts.append("the config differs")
        return "different: " + "; ".join(parts)


def compare_tensors(tensors: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]
                    ) -> tuple[list[str], tuple[str, float] | None]:
    """Names of the tensors in both dicts that differ (value, dtype or shape), and the one with
    the largest |difference| with that difference."""
    differing, largest = [], None
    for name in (k for k in reference if k in tensors):
        x, y = tensors[name], reference[name]
        if x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y):
            continue
        differing.append(name)
        if x.shape == y.shape and x.is_floating_point() and y.is_floating_point():
            gap = float((x.double() - y.double()).abs().max()) if x.numel() else 0.0
            if largest is None or gap > largest[1]:
                largest = (name, gap)
    return differing, largest


def compare_weights(path: str | os.PathLike, reference: str | os.PathLike) -> WeightsComparison:
    """Compare the tensors and model config of ``path`` with those of ``reference`` (e.g. the shipped file).

    Metadata other than the config (the training record, tokenizer words) is not compared.
    """
    from safetensors.torch import load_file

    def config(p: str | os.PathLike) -> Any:
        return json.loads(file_metadata(p).get("config", "null"))

    a, b = load_file(str(path)), load_file(str(reference))
    differing, largest = compare_tensors(a, b)
    return WeightsComparison(
        tensors=sum(k in a for k in b), differing=tuple(differing), missing=tuple(k for k in b if k not in a),
        extra=tuple(k for k in a if k not in b), largest=largest, config_equal=config(path) == config(reference))
