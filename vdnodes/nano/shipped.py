"""Where the shipped vd-nano weights live. No torch import: ``vdnodes validate`` and the
model node's fingerprint and preflight need the path, not the model."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_NAME = "vd-nano.safetensors"
NANO_WEIGHTS = Path(__file__).resolve().parent / "weights" / WEIGHTS_NAME


def missing_weights_message(path: Path = NANO_WEIGHTS) -> str:
    """What to say when the weights file is not there."""
    return (f"vd-nano weights not found at {path}. Train them with `vdnodes train-nano --install` "
            "(about 2 hours on 2 CPU cores), or pass the path of a vd-nano.safetensors file.")
