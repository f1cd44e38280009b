"""What the UNet is conditioned on: one or more weighted context entries.

VD mixes several contexts inside every cross-attention slot
(``h <- sum_i r_i * T_i(h, c_i)`` with the ratios normalised to sum to 1, see
vd-architecture.md section 1.5). A ``ContextInput`` is one such entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ContextInput:
    """One conditioning entry for the multi-flow UNet.

    tokens:   ``[B, T, D]`` context tokens (CLIP text ``[B,77,768]``, CLIP image
              ``[B,257,768]`` for full-size VD).
    modality: name of the context layer group that reads them ("text", "image",
              or a plugin's modality).
    weight:   mixing ratio; ratios of all entries are normalised to sum to 1.
    """

    tokens: torch.Tensor
    modality: str
    weight: float = 1.0

    def with_tokens(self, tokens: torch.Tensor) -> "ContextInput":
        """The same entry carrying other tokens (e.g. a CFG-batched copy)."""
        return ContextInput(tokens, self.modality, self.weight)


def normalised_weights(entries: list[ContextInput]) -> list[float]:
    """Mixing ratios that sum to 1; raises on an empty list or zero total."""
    if not entries:
        raise ValueError("the UNet needs at least one context entry")
    total = float(sum(e.weight for e in entries))
    if total <= 0:
        raise ValueError(f"context weights must sum to a positive number, got {total}")
    return [float(e.weight) / total for e in entries]
