"""Values that travel through VD sockets beyond plain tensors.

A ``Context`` socket carries a ``Conditioning``: one or more weighted parts,
each with its conditional tokens *and* the unconditional tokens classifier-free
guidance pairs with them. Keeping the two together lets every transformation
(disentangle, blend, I2T2I reduction) treat both consistently, and makes the
unconditional choice (VD's zeros / black / grey, vd-architecture.md §4.3) an
explicit, visible part of the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class ContextPart:
    """Tokens ``[B,T,D]`` for one context layer group, their unconditional twin, and a ratio."""

    tokens: Any  # torch.Tensor [B, T, D]
    uncond: Any  # torch.Tensor [B, T, D], same shape
    modality: str
    weight: float = 1.0


@dataclass(frozen=True)
class Conditioning:
    """What a ``Context`` socket carries. Several parts are mixed inside every cross-attention slot."""

    parts: tuple[ContextPart, ...]

    @classmethod
    def single(cls, tokens: Any, uncond: Any, modality: str) -> "Conditioning":
        return cls((ContextPart(tokens, uncond, modality, 1.0),))

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the first part's tokens (what type checks and error messages show)."""
        return tuple(self.parts[0].tokens.shape)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(p.modality for p in self.parts)

    @property
    def modality(self) -> str:
        mods = set(self.modalities)
        return mods.pop() if len(mods) == 1 else "mixed"

    @property
    def batch(self) -> int:
        return int(self.parts[0].tokens.shape[0])

    def to(self, device: Any = None, dtype: Any = None) -> "Conditioning":
        return Conditioning(tuple(replace(p, tokens=p.tokens.to(device=device, dtype=dtype),
                                          uncond=p.uncond.to(device=device, dtype=dtype))
                                  for p in self.parts))

    def scaled(self, factor: float) -> "Conditioning":
        """The same parts with every mixing ratio multiplied by ``factor``."""
        return Conditioning(tuple(replace(p, weight=p.weight * factor) for p in self.parts))
