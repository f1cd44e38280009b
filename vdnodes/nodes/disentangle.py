"""Style/semantics disentanglement of image contexts, and I2T2I's context reduction."""

from __future__ import annotations

from dataclasses import replace

from vdnodes.core.node import In, Out, Param, node


@node("vd.disentangle", version="1.1.0", category="context", title="Disentangle style / semantics",
      doc="VD's focus control on an image context (PCA surgery on the patch tokens, §6.1): below "
          "0.5 leans to semantics (layout and objects kept, look loosened), above 0.5 leans to "
          "style (colours and textures kept, content loosened); 0.5 changes nothing. Mode "
          "'v1_level' is VD v1's inference.py --dislevel instead: -2/-1 remove the top 2/1 "
          "components of a rank-50 PCA (semantic), 1/2 keep only the top 10/2 (style).",
      inputs={"context": In("Context[image]")},
      params={"mode": Param("Enum", "focus", choices=("focus", "v1_level"),
                            doc="'focus': VD v2 demo's slider; 'v1_level': VD v1's integer levels."),
              "focus": Param("Float", 0.5, min=0.0, max=1.0, step=0.05,
                             doc="Mode 'focus': 0 = semantic focus ... 0.5 = unchanged ... 1 = style focus."),
              "level": Param("Int", 0, min=-2, max=2,
                             doc="Mode 'v1_level': -2, -1 = semantic ... 0 = unchanged ... 1, 2 = style."),
              "apply_to_uncond": Param("Bool", False,
                                       doc="Also adjust the unconditional context (VD v1 does, v2 not).")},
      outputs={"context": Out("Context[image]")})
def disentangle(ctx, context, mode: str, focus: float, level: int, apply_to_uncond: bool):
    import torch

    from vdnodes.model.procedures import adjust_rank, low_rank_level
    from vdnodes.nodes.values import Conditioning

    def adjust(tokens):
        return adjust_rank(tokens, focus) if mode == "focus" else low_rank_level(tokens, level)

    parts = []
    with torch.inference_mode():
        for p in context.parts:
            tokens = adjust(p.tokens)
            uncond = adjust(p.uncond) if apply_to_uncond and p.uncond.abs().sum() else p.uncond
            parts.append(replace(p, tokens=tokens, uncond=uncond))
    return Conditioning(tuple(parts))


@node("vd.reduce_image_context", version="1.0.0", category="context", title="Reduce image context",
      doc="Keep the top principal components of an image context's patch tokens and drop its CLS "
          "token (VD's I2T2I step 7): the layout of the source image without its details.",
      inputs={"context": In("Context[image]")},
      params={"rank": Param("Int", 10, min=1, max=256, doc="Principal components kept.")},
      outputs={"context": Out("Context[image]")})
def reduce_image_context(ctx, context, rank: int):
    import torch

    from vdnodes.model.procedures import keep_top_components
    from vdnodes.nodes.values import Conditioning

    with torch.inference_mode():
        parts = tuple(replace(p, tokens=keep_top_components(p.tokens, rank), uncond=p.uncond[:, 1:])
                      for p in context.parts)
    return Conditioning(parts)
