"""Context blenders: several contexts, with weights, into one conditioning (§6.7)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vdnodes.core.errors import NodeInputError
from vdnodes.core.node import In, Out, Param, node
from vdnodes.core.types import SocketType

SLOTS = ("a", "b", "c", "d")


def _blend_type(inputs: Mapping[str, SocketType], params: Mapping[str, Any]) -> dict[str, SocketType]:
    """Context[m] when every connected input is Context[m]; generic Context otherwise."""
    args = {t.args for t in inputs.values()}
    if len(args) == 1 and (only := args.pop()):
        return {"context": SocketType("Context", only)}
    return {"context": SocketType("Context")}


def _broadcast(tensor: Any, batch: int) -> Any:
    return tensor.expand(batch, *tensor.shape[1:]) if tensor.shape[0] == 1 and batch > 1 else tensor


@node("vd.blend_contexts", version="1.0.0", category="context", title="Blend contexts",
      doc="Combine up to four contexts with weights. 'concat' joins contexts of one modality along "
          "the token axis, each scaled by its weight (VD's multi-image blender; text+text for "
          "I2T2I). 'mix' keeps each context separate and mixes them inside every cross-attention "
          "slot with the weights as ratios (image+text, image+image, text+text).",
      inputs={s: In("Context", optional=s != "a") for s in SLOTS},
      params={"mode": Param("Enum", "mix", choices=("mix", "concat"), doc="How to combine."),
              **{f"weight_{s}": Param("Float", 1.0, min=0.0, max=1.0, step=0.05,
                                      doc=f"Weight of context {s}.") for s in SLOTS}},
      outputs={"context": Out("Context")}, infer_types=_blend_type)
def blend_contexts(ctx, a, b, c, d, mode: str, weight_a: float, weight_b: float, weight_c: float,
                   weight_d: float):
    import torch

    from vdnodes.nodes.values import Conditioning

    given = [(x, w) for x, w in zip((a, b, c, d), (weight_a, weight_b, weight_c, weight_d)) if x is not None]
    batch = max(x.batch for x, _ in given)
    if mode == "mix":
        parts = tuple(replace(p, weight=p.weight * w) for x, w in given for p in x.parts)
        if not sum(p.weight for p in parts) > 0:
            raise NodeInputError("all blend weights are zero", socket="weight_a")
        return Conditioning(parts)
    parts = [(p, w) for x, w in given for p in x.parts]
    modalities = {p.modality for p, _ in parts}
    if len(modalities) > 1:
        raise NodeInputError(f"'concat' needs contexts of one modality, got {sorted(modalities)}",
                             socket="b", hint="use mode 'mix' to combine image and text contexts")
    widths = {p.tokens.shape[-1] for p, _ in parts}
    if len(widths) > 1:
        raise NodeInputError(f"contexts have different token widths {sorted(widths)}", socket="b")
    tokens = torch.cat([_broadcast(p.tokens, batch) * w for p, w in parts], dim=1)  # [B, sum T, D]
    uncond = torch.cat([_broadcast(p.uncond, batch) * w for p, w in parts], dim=1)
    return Conditioning.single(tokens, uncond, modalities.pop())
