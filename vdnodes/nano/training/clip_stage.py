"""Stage 2, CLIP's text and vision towers: symmetric InfoNCE between pooled projections.

Soft targets, because one text can describe several scenes of a batch; half of each batch are
hard-negative twins; training-only heads make every context token name its word (text) or
what lies under its patch (image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vdnodes.nano import scenes as sc
from vdnodes.nano.training.budget import step_seed
from vdnodes.nano.training.data import caption_constraints, describe, matches, patch_coverage, render_batch, twin
from vdnodes.nano.training.stage import Stage, round_to_fp16


class CLIPStage(Stage):
    name, title, prefixes = "clip", "CLIP text + image", ("clip_text.", "clip_image.")
    config_parts, settings = ("clip_text", "clip_vision"), ()
    # 2: hard-negative twins; 3: + per-token word loss on the text context tokens;
    # 4: + per-token attribute loss on the image context tokens; 5: rounded to fp16 at the end;
    # 6: every patch token also names the scene's appearance (colour, texture, background)
    RECIPE = 6
    LOGIT_SCALE = 1.0 / 0.07
    P_FRAGMENT = 0.3
    WORD_WEIGHT = 0.5  # weight of the per-token word loss against the contrastive loss
    PART_WEIGHT = 0.5  # weight of the image side's attribute loss (a sum of cross-entropies)
    # What the image head names: the scene's class token all five, a patch token what lies under it.
    PART_VALUES = {"shape": sc.SHAPES, "color": tuple(sc.COLORS), "texture": sc.TEXTURES,
                   "background": tuple(sc.COLORS), "size": tuple(sc.SIZES)}
    OBJECT_PARTS = ("shape", "color", "texture")  # named by a patch the object covers (>= half)
    APPEARANCE = ("color", "texture", "background")  # the scene's, named by every patch (recipe 6)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Training-only heads, checkpointed for resuming but never shipped. The contrastive loss
        # only shapes the pooled tokens, and the UNet reads all of them (docs/nano-history.md):
        # - ``word_head`` reads each text context token's own word back from it; without it a
        #   changed shape word barely moved the tokens;
        # - ``part_head`` names, from each image context token, what lies under its patch (the
        #   object's shape, colour and texture, or the background colour; the class token: all
        #   of the scene's attributes); without it shape was linearly readable from the image
        #   tokens for 39% of scenes (chance 20%) against 100% for colour.
        text, vision = self.model.clip_text.model.config, self.model.clip_image.model.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(self.seed, self.name, -1))
            self.word_head = nn.Linear(text.projection_dim, text.vocab_size)
            self.part_head = nn.Linear(vision.projection_dim, sum(map(len, self.PART_VALUES.values())))
        self.word_head.to(self.device)
        self.part_head.to(self.device)

    def heads(self) -> dict[str, nn.Module]:
        return {"word_head": self.word_head, "part_head": self.part_head}

    def parameters(self) -> list[nn.Parameter]:
        return [*self.model.clip_text.parameters(), *self.model.clip_image.parameters(),
                *(p for head in self.heads().values() for p in head.parameters())]

    def extra_state(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v for name, head in self.heads().items() for k, v in head.state_dict().items()}

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        for name, head in self.heads().items():
            head.load_state_dict({k.removeprefix(f"{name}."): v for k, v in state.items() if k.startswith(f"{name}.")})

    def part_loss(self, context: torch.Tensor, scenes: Sequence[sc.Scene]) -> torch.Tensor:
        """Cross-entropy of ``part_head`` naming what lies under each image context token ``[B, T, D]``."""
        logits = self.part_head(context).split([len(v) for v in self.PART_VALUES.values()], dim=-1)
        logits = dict(zip(self.PART_VALUES, logits))  # attribute -> [B, T, values]
        target = {a: torch.tensor([values.index(getattr(s, a)) for s in scenes], device=self.device)
                  for a, values in self.PART_VALUES.items()}  # attribute -> [B]
        # Summed over attributes, not averaged: colour and background are learned in a few
        # hundred steps and then cost nothing, and shape, the slow one, keeps its full weight.
        scene_loss = sum(F.cross_entropy(logits[a][:, 0], target[a]) for a in self.PART_VALUES)
        covered = torch.from_numpy(patch_coverage(scenes, self.model.clip_image.patch_size) >= 0.5).to(self.device)
        on_object = sum(F.cross_entropy(logits[a][:, 1:][covered], target[a][:, None].expand_as(covered)[covered])
                        for a in self.OBJECT_PARTS)
        off = ~covered
        on_background = F.cross_entropy(logits["background"][:, 1:][off],
                                        target["background"][:, None].expand_as(off)[off])
        # Every patch also names the scene's appearance, so all of an image's tokens share it: it
        # becomes their first principal component and a shift of all of them, which is what VD's
        # semantic focus removes on photographs (docs/nano-history.md).
        b, t = covered.shape
        appearance = sum(F.cross_entropy(logits[a][:, 1:].flatten(0, 1), target[a][:, None].expand(b, t).flatten())
                         for a in self.APPEARANCE)
        return scene_loss + on_object + on_background + appearance

    def embeddings(self, texts: list[str], images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised pooled projections: texts ``[T, D]``, images ``[B, D]``."""
        ct, ci = self.model.clip_text, self.model.clip_image
        ids, _ = ct.tokenize(texts)
        t = ct.model(input_ids=ids.to(self.device)).text_embeds  # [T, D]
        i = ci.model(pixel_values=ci.preprocess(images)).image_embeds  # [B, D]
        return F.normalize(t, dim=-1), F.normalize(i, dim=-1)

    def step_loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        rng, scenes = self.batch(step)
        # The second half of the batch are twins of the first (one attribute changed, shape most
        # often): in a random batch the scenes already differ in colour or background, so
        # nothing would push the towers to see shape, the attribute the UNet needs most.
        half = len(scenes) // 2
        scenes = scenes[:half] + [twin(s, rng) for s in scenes[:half]] + scenes[2 * half:]
        texts, named = zip(*(describe(s, rng, self.P_FRAGMENT) for s in scenes))
        ct, ci = self.model.clip_text, self.model.clip_image
        ids = ct.tokenize(list(texts))[0].to(self.device)  # [B, 77]
        out = ct.model.text_model(input_ids=ids)
        pooled = ct.model.text_projection(out.pooler_output)  # [B, D], the EOS token
        t = F.normalize(pooled, dim=-1)
        # [B, T, D], as the UNet reads it, less vd-nano's fixed position code (a constant the
        # part head would only have to learn to ignore)
        image_context = ci.encode(render_batch(scenes, self.device), position_code=False)
        i = image_context[:, 0]  # the class token over its own norm: the normalised image embedding
        logits = self.LOGIT_SCALE * t @ i.T  # [B texts, B images]
        target = matches(named, scenes).to(self.device)  # diagonal is 1: every text describes its scene
        loss_t = -(F.log_softmax(logits, dim=1) * target / target.sum(1, keepdim=True)).sum(1).mean()
        loss_i = -(F.log_softmax(logits.T, dim=1) * target.T / target.T.sum(1, keepdim=True)).sum(1).mean()
        contrastive = 0.5 * (loss_t + loss_i)
        # Word loss on exactly the context the UNet reads (``encode_ids``: tokens over the
        # pooled norm), over the tokens up to the first EOS (the rest are padding copies).
        context = ct.model.text_projection(out.last_hidden_state) / pooled.norm(dim=-1)[:, None, None]
        first_eos = (ids == ct.model.config.eos_token_id).int().argmax(1)  # [B]
        words = torch.arange(ids.shape[1], device=self.device)[None] <= first_eos[:, None]  # [B, 77]
        word = F.cross_entropy(self.word_head(context[words]), ids[words])
        part = self.part_loss(image_context, scenes)
        loss = contrastive + self.WORD_WEIGHT * word + self.PART_WEIGHT * part
        return loss, {"contrastive": contrastive.item(), "word": word.item(), "part": part.item()}

    @torch.no_grad()
    def finish(self) -> dict[str, Any]:
        round_to_fp16(self.model.clip_text)
        round_to_fp16(self.model.clip_image)
        rng, scenes = self.held_out(64)
        templates = rng.integers(len(sc.TEMPLATES), size=len(scenes))
        texts = [s.caption(int(k)) for s, k in zip(scenes, templates)]
        named = [caption_constraints(s, int(k)) for s, k in zip(scenes, templates)]
        t, i = self.embeddings(texts, render_batch(scenes, self.device))
        ok = matches(named, scenes)
        sim = (t @ i.T).cpu()
        text_to_image = ok[torch.arange(len(texts)), sim.argmax(1)].mean()
        image_to_text = ok[sim.argmax(0), torch.arange(len(scenes))].mean()
        return {"retrieval_text_to_image": float(text_to_image), "retrieval_image_to_text": float(image_to_text)}
