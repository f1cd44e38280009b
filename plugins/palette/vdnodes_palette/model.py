"""The palette modality's weights: ``PaletteEncoder`` and the ``unet.context.palette`` layers."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

WEIGHTS = Path(__file__).resolve().parent / "weights" / "palette-nano.safetensors"
ROLES = ("object", "background")  # one context token per role


class PaletteEncoder(nn.Module):
    """RGB colours ``[B, 2, 3]`` in [0, 1] (object, background) -> context tokens ``[B, 2, dim]``.

    A role left out (``present`` False) gives a zero token, the same as the unconditional
    palette, so "only the background" is a valid palette.
    """

    def __init__(self, dim: int = 64, hidden: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, dim))
        self.role = nn.Parameter(torch.zeros(len(ROLES), dim))

    def forward(self, rgb: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        if rgb.ndim != 3 or rgb.shape[1:] != (len(ROLES), 3):
            raise ValueError(f"palette colours must be [B, {len(ROLES)}, 3], got {list(rgb.shape)}")
        tokens = self.mlp(rgb.to(self.role.dtype)) + self.role  # [B, 2, dim]
        if present is not None:
            tokens = tokens * present.to(tokens.dtype)[..., None]
        return tokens


def context_group(config: Any) -> Any:
    """An empty ``ContextGroup`` shaped for the UNet of ``config`` (a ``VDConfig``)."""
    from vdnodes.model.unet import ContextGroup, build_layout

    c = config.unet
    layout = build_layout(c.model_channels, c.channel_mult, c.num_res_blocks, c.attention_levels)
    return ContextGroup(layout, c.context_dim, c.heads, c.norm_groups, c.transformer_depth)


@functools.lru_cache(maxsize=1)
def _state(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors.torch import load_file
    from safetensors import safe_open

    if not Path(path).is_file():
        raise FileNotFoundError(f"palette weights not found at {path}; train them with "
                                "`python -m vdnodes_palette.train --install`")
    with safe_open(path, framework="pt") as f:
        meta = dict(f.metadata() or {})
    return load_file(path), meta


def _part(prefix: str, path: Path) -> dict[str, torch.Tensor]:
    state, _ = _state(str(path))
    return {k[len(prefix):]: v.float() for k, v in state.items() if k.startswith(prefix)}


def build_context_layers(config: Any, path: Path = WEIGHTS) -> Any:
    """The trained ``unet.context.palette`` group (what the plugin registers as its layer group)."""
    group = context_group(config)
    group.load_state_dict(_part("context.", path))
    return group


def load_encoder(path: Path = WEIGHTS) -> PaletteEncoder:
    encoder = PaletteEncoder()
    encoder.load_state_dict(_part("encoder.", path))
    return encoder.eval()


def record(path: Path = WEIGHTS) -> dict[str, Any]:
    """The training record stored with the weights."""
    _, meta = _state(str(path))
    return json.loads(meta.get("training", "{}"))
