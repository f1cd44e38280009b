"""Measuring vd-nano: every VD flow on held-out scenes, scored by the rule-based checker.

``measure(model, n)`` runs each flow of the issue's quality list on ``n`` fresh scenes and
returns the rates; ``check_thresholds`` compares them with the targets; ``write_grids`` draws
sample grids; ``main`` is ``vdnodes eval-nano``. The flows use the same procedures as the
graph nodes (``vdnodes.model.procedures``, ``sampling``), with the settings the example graphs
ship with (DDIM 20 steps; guidance 7.5, 3.0 for image variation and 5.0 for text output; zeros
/ CLIP("") unconditionals), so the numbers say what a user of ``graphs/`` gets.

Per flow (scenes from ``sample_scene``, 32 px, a different seed per flow; the starting noise
is seeded per flow too, so ``--flows`` reproduces those rows of a full run):

- ``t2i``: the scene's caption -> image; colour and shape read back by the checker;
- ``i2t``: the scene's image -> text latent -> Optimus caption (tokens sampled, seeded, as in
  the graph; ``caption_decoding``); colour and shape words;
- ``i2i`` (image variation, guidance ``variation_guidance``, then the graph's colour matching
  to the input, ``variation_match_colors``): image -> image; colour and shape kept (both);
- ``t2t`` (text variation): caption -> caption; the noun (the shape word) kept, and all of
  colour, shape, background and texture words kept;
- ``dual``: image of scene A + the text of one other colour word ("green"), text share 0.5;
  the output shows the text's colour *and* A's shape;
- ``disentangle``: A's image context with focus 0.2 (semantic) and 0.8 (style); how often
  each output keeps A's shape and A's texture;
- ``i2t2i``: caption A's image (i2t), remove A's colour word from the Optimus latent and add
  another colour word, decode the sentence (sampled as i2t's), and guide a new image with that sentence plus the
  colour word (concatenated CLIP contexts) and the rank-10 reduced image context of A, text
  share 0.67 (graphs/i2t2i_edit.json). A success shows the new colour with A's shape and
  background.
- ``clip`` (a diagnostic of the encoders the UNet is conditioned on, no sampling): for each
  attribute, the pooled CLIP image embedding of the scene is compared with the captions
  that differ from the scene's own only in that attribute's word; the rate is how often the
  true one scores highest (chance: 1 / the number of values). ``clip_tokens_<attribute>`` is
  not a rate but a distance: how far the text context the UNet reads (``encode``'s tokens)
  moves when only that word changes, as the largest change over the tokens divided by the
  mean token norm, averaged over the other values and the scenes.
- ``vae`` (a diagnostic, no sampling): each scene through the image VAE (posterior mean,
  encode -> decode); colour, shape and texture read back. Every image flow decodes through
  this VAE, so these rates bound what any of them can reach.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vdnodes.model import procedures, sampling
from vdnodes.model.conditioning import ContextInput
from vdnodes.nano import scenes as sc
from vdnodes.nano.checker import check_image
from vdnodes.nano.config import IMAGE_SIZE

# The targets: metric -> minimum rate.
THRESHOLDS: dict[str, float] = {
    "t2i_color": 0.90,
    "t2i_shape": 0.80,
    "i2t_color_shape": 0.80,
    "i2i_color_shape": 0.80,
    "t2t_nouns": 0.80,
    "dual_text_color_image_shape": 0.70,
    "i2t2i_edit": 0.70,
}
# Pairs (a, b) that must satisfy rate a > rate b (disentanglement has no absolute target).
ORDERINGS: tuple[tuple[str, str], ...] = (
    ("disentangle_semantic_shape", "disentangle_style_shape"),
    ("disentangle_style_texture", "disentangle_semantic_texture"),
)
FLOWS = ("t2i", "i2t", "i2i", "t2t", "dual", "disentangle", "i2t2i", "clip", "vae")
PROBED = ("shape", "texture", "size", "color", "background")  # attributes the CLIP probe asks about
DISTANCES = ("clip_tokens_",)  # metrics that are distances, not rates (shown as plain numbers)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How samples are drawn; the defaults are the example graphs'."""

    steps: int = 20  # the graphs' DDIM steps: on vd-nano as good as VD's 50 (docs/nano.md section 6)
    guidance: float = 7.5
    variation_guidance: float = 3.0  # image variation (graphs/image_variation.json; docs/nano.md section 6)
    variation_match_colors: float = 0.5  # image variation's colour matching to the input (the graph's)
    text_guidance: float = 5.0  # text output: i2t, t2t, I2T2I's caption (graphs/image_to_text.json; section 5)
    caption_decoding: str = "sample"  # i2t, t2t and I2T2I sentences: "sample" (seeded, the graphs') or "greedy"
    variation_tokens: str = "all"  # image variation reads all image tokens, or a diagnostic subset (VARIATION_TOKENS)
    sampler: str = "ddim"
    dual_mix: float = 0.5  # text share in dual-guided generation (graphs/dual_guided.json)
    edit_mix: float = 0.67  # text share in I2T2I (graphs/i2t2i_edit.json)
    edit_rank: int = 10  # principal components kept of the image context in I2T2I
    semantic_focus: float = 0.2
    style_focus: float = 0.8
    batch: int = 100  # samples per UNet call (x2 with guidance)


# Which image context tokens image variation reads: all of them (the graphs), or, to see which
# ones the UNet relies on (docs/nano-history.md, image variation), the patch tokens or the class token alone.
VARIATION_TOKENS = {"all": slice(None), "patches": slice(1, None), "class": slice(0, 1)}


@dataclasses.dataclass
class Cases:
    """What one flow produced, kept for grids: input scenes, targets, output images / texts."""

    scenes: list[sc.Scene]
    images: torch.Tensor | None = None  # outputs [N, 3, 32, 32] in [0, 1]
    texts: list[str] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def _scenes(n: int, seed: int) -> list[sc.Scene]:
    rng = np.random.default_rng(seed)
    return [sc.sample_scene(rng) for _ in range(n)]


def _render(scenes: Sequence[sc.Scene], device: torch.device) -> torch.Tensor:
    images = np.stack([sc.render(s, IMAGE_SIZE) for s in scenes]).transpose(0, 3, 1, 2)  # [N, 3, H, W]
    return torch.from_numpy(images).float().div(255.0).to(device)


def _other_color(color: str, rng: np.random.Generator, avoid: str | None = None) -> str:
    choices = [c for c in sc.COLORS if c not in (color, avoid)]
    return choices[rng.integers(len(choices))]


def _rate(flags: Sequence[bool]) -> float:
    return float(np.mean(flags)) if len(flags) else float("nan")


class Runner:
    """Draws samples from one model in chunks; every flow builds on ``sample``."""

    def __init__(self, model: Any, settings: Settings, seed: int, progress: Callable[[str], None] | None = None):
        self.model, self.settings, self.seed = model, settings, seed
        self.device = next(model.parameters()).device
        self.progress = progress or (lambda _msg: None)
        self._generator = torch.Generator().manual_seed(seed)
        self._seed = seed

    def reseed(self, seed: int) -> None:
        """Restart the starting noise from ``seed`` (``measure`` gives every flow its own)."""
        self._generator = torch.Generator().manual_seed(seed)
        self._seed = seed

    # -- building blocks -----------------------------------------------------------------
    def text_context(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        clip = self.model.clip_text
        tokens = torch.cat([clip.encode(texts[i:i + 256]) for i in range(0, len(texts), 256)])
        return tokens, clip.unconditional(len(texts)).to(tokens)

    def image_context(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clip = self.model.clip_image
        tokens = torch.cat([clip.encode(images[i:i + 256]) for i in range(0, len(images), 256)])
        return tokens, torch.zeros_like(tokens)

    def sample(self, xtype: str, conds: list[tuple[torch.Tensor, str, float]],
               unconds: list[torch.Tensor], guidance: float | None = None) -> torch.Tensor:
        """Latents for ``conds`` = [(tokens [N, T, D], modality, share)], with guidance
        (default: ``settings.guidance``)."""
        n = conds[0][0].shape[0]
        cfg = self.model.config
        side = IMAGE_SIZE // cfg.vae.downsample_factor
        shape = (cfg.vae.embed_dim, side, side) if xtype == "image" else (cfg.unet.text_dim,)
        out = []
        for i in range(0, n, self.settings.batch):
            j = min(n, i + self.settings.batch)
            c = [ContextInput(t[i:j], m, w) for t, m, w in conds]
            u = [ContextInput(t[i:j], m, w) for t, (_, m, w) in zip(unconds, conds)]
            x = sampling.initial_noise((j - i, *shape), self._generator, device=self.device)
            scale = self.settings.guidance if guidance is None else guidance
            denoise = sampling.cfg_denoiser(self.model.unet, xtype, c, u, scale)
            out.append(sampling.sample(self.settings.sampler, denoise, x, self.settings.steps))
        return torch.cat(out)

    def decode_images(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model.vae_image.decode(latents[i:i + 256]) for i in range(0, len(latents), 256)])

    def decode_texts(self, latents: torch.Tensor, greedy: bool = True) -> list[str]:
        """Sentences for text latents: greedy, or tokens sampled (seeded by the flow) as VD does."""
        vae, tokens = self.model.vae_text, torch.Generator().manual_seed(self._seed)
        return [t for i in range(0, len(latents), 256)
                for t in vae.decode(latents[i:i + 256], greedy=greedy, generator=tokens)]

    def decode_captions(self, latents: torch.Tensor) -> list[str]:
        """i2t's, t2t's and I2T2I's sentences, decoded as their graphs do (``caption_decoding``)."""
        if self.settings.caption_decoding not in ("sample", "greedy"):
            raise ValueError(f"caption_decoding must be 'sample' or 'greedy', got {self.settings.caption_decoding!r}")
        return self.decode_texts(latents, greedy=self.settings.caption_decoding == "greedy")

    # -- flows ------------------------------------------------------------------------------
    def t2i(self, scenes: list[sc.Scene]) -> Cases:
        captions = [s.caption() for s in scenes]
        tokens, uncond = self.text_context(captions)
        images = self.decode_images(self.sample("image", [(tokens, "text", 1.0)], [uncond]))
        return Cases(scenes, images=images, extra={"prompts": captions})

    def i2i(self, scenes: list[sc.Scene]) -> Cases:
        sources = _render(scenes, self.device)
        if self.settings.variation_tokens not in VARIATION_TOKENS:
            raise ValueError(f"variation_tokens must be one of {sorted(VARIATION_TOKENS)}, "
                             f"got {self.settings.variation_tokens!r}")
        tokens, uncond = self.image_context(sources)
        keep = VARIATION_TOKENS[self.settings.variation_tokens]
        latents = self.sample("image", [(tokens[:, keep], "image", 1.0)], [uncond[:, keep]],
                              self.settings.variation_guidance)
        images = procedures.match_colors(self.decode_images(latents).float(), sources.float(),
                                         self.settings.variation_match_colors)
        return Cases(scenes, images=images, extra={"sources": sources})

    def i2t(self, scenes: list[sc.Scene]) -> Cases:
        sources = _render(scenes, self.device)
        tokens, uncond = self.image_context(sources)
        texts = self.decode_captions(self.sample("text", [(tokens, "image", 1.0)], [uncond],
                                              self.settings.text_guidance))
        return Cases(scenes, texts=texts, extra={"sources": sources})

    def t2t(self, scenes: list[sc.Scene]) -> Cases:
        captions = [s.caption() for s in scenes]
        tokens, uncond = self.text_context(captions)
        texts = self.decode_captions(self.sample("text", [(tokens, "text", 1.0)], [uncond],
                                              self.settings.text_guidance))
        return Cases(scenes, texts=texts, extra={"prompts": captions})

    def dual(self, scenes: list[sc.Scene]) -> Cases:
        rng = np.random.default_rng(self.seed + 5)
        colors = [_other_color(s.color, rng, avoid=s.background) for s in scenes]
        sources = _render(scenes, self.device)
        img, img_u = self.image_context(sources)
        txt, txt_u = self.text_context(colors)
        mix = self.settings.dual_mix
        latents = self.sample("image", [(img, "image", 1 - mix), (txt, "text", mix)], [img_u, txt_u])
        return Cases(scenes, images=self.decode_images(latents), extra={"sources": sources, "colors": colors})

    def disentangle(self, scenes: list[sc.Scene]) -> tuple[Cases, Cases]:
        sources = _render(scenes, self.device)
        img, img_u = self.image_context(sources)
        out = []
        for focus in (self.settings.semantic_focus, self.settings.style_focus):
            tokens = procedures.adjust_rank(img, focus)
            images = self.decode_images(self.sample("image", [(tokens, "image", 1.0)], [img_u]))
            out.append(Cases(scenes, images=images, extra={"sources": sources, "focus": focus}))
        return out[0], out[1]

    def i2t2i(self, scenes: list[sc.Scene]) -> Cases:
        rng = np.random.default_rng(self.seed + 7)
        colors = [_other_color(s.color, rng, avoid=s.background) for s in scenes]
        sources = _render(scenes, self.device)
        img, img_u = self.image_context(sources)
        caption_latents = self.sample("text", [(img, "image", 1.0)], [img_u], self.settings.text_guidance)
        vae = self.model.vae_text
        remove = vae.encode([s.color for s in scenes]).float()
        add = vae.encode(colors).float()
        edited = procedures.edit_text_latent(caption_latents.float(), remove, add)
        sentences = self.decode_captions(edited)
        sent, sent_u = self.text_context(sentences)
        word, word_u = self.text_context(colors)
        text, text_u = torch.cat([sent, word], dim=1), torch.cat([sent_u, word_u], dim=1)
        layout = procedures.keep_top_components(img, self.settings.edit_rank)
        mix = self.settings.edit_mix
        latents = self.sample("image", [(layout, "image", 1 - mix), (text, "text", mix)], [img_u[:, 1:], text_u])
        return Cases(scenes, images=self.decode_images(latents), texts=sentences,
                     extra={"sources": sources, "colors": colors,
                            "captions": self.decode_texts(caption_latents)})

    def clip(self, scenes: list[sc.Scene]) -> Cases:
        image, text = self.model.clip_image, self.model.clip_text
        pixels = _render(scenes, self.device)
        embeds = torch.cat([image.model(pixel_values=image.preprocess(pixels[i:i + 256])).image_embeds
                            for i in range(0, len(pixels), 256)])
        embeds = torch.nn.functional.normalize(embeds.float(), dim=-1)  # [N, D]
        picked: dict[str, list[str]] = {}
        shift: dict[str, list[float]] = {}
        for attribute in PROBED:
            picked[attribute], shift[attribute] = [], []
            for scene, embed in zip(scenes, embeds):
                options = _variants(scene, attribute)
                ids, _ = text.tokenize([v.caption(1) for v in options])  # template 1 names every attribute
                texts = torch.nn.functional.normalize(text.model(input_ids=ids.to(self.device)).text_embeds.float(),
                                                      dim=-1)  # [V, D]
                picked[attribute].append(getattr(options[int((texts @ embed).argmax())], attribute))
                # The UNet reads the context tokens, not the pooled embedding: how far do they move?
                context = text.encode_ids(ids).float()  # [V, T, D]
                own = next(i for i, v in enumerate(options) if getattr(v, attribute) == getattr(scene, attribute))
                moved = (context - context[own]).norm(dim=-1).amax(dim=1)  # [V], largest token change
                others = [float(m) for i, m in enumerate(moved) if i != own]
                shift[attribute].append(sum(others) / len(others) / float(context[own].norm(dim=-1).mean()))
        return Cases(scenes, extra={"picked": picked, "token_shift": shift})


    def vae(self, scenes: list[sc.Scene]) -> Cases:
        sources = _render(scenes, self.device)
        vae = self.model.vae_image
        latents = torch.cat([vae.encode(sources[i:i + 256], sample=False) for i in range(0, len(sources), 256)])
        return Cases(scenes, images=self.decode_images(latents), extra={"sources": sources})


def _variants(scene: sc.Scene, attribute: str) -> list[sc.Scene]:
    """``scene`` with every valid value of ``attribute`` (its own included), all else kept."""
    values = {"shape": sc.SHAPES, "texture": sc.TEXTURES, "size": tuple(sc.SIZES), "color": tuple(sc.COLORS),
              "background": tuple(sc.COLORS)}[attribute]
    out = []
    for value in values:
        change: dict[str, Any] = {attribute: value}
        if attribute == "size":  # keep the centre inside the image
            lo, hi = sc.position_range(value)
            change.update(x=min(max(scene.x, lo), hi), y=min(max(scene.y, lo), hi))
        if attribute in ("color", "background") and value == (scene.background if attribute == "color" else scene.color):
            continue
        out.append(dataclasses.replace(scene, **change))
    return out


def _checked(cases: Cases) -> list[dict[str, str | None]]:
    assert cases.images is not None
    return [check_image(img) for img in cases.images.float().cpu()]


def score(flow: str, cases: Cases | tuple[Cases, Cases]) -> dict[str, float]:
    """The rates of one flow's cases (see the module docstring for what each means)."""
    if flow == "disentangle":
        semantic, style = cases  # type: ignore[misc]
        out = {}
        for name, c in (("semantic", semantic), ("style", style)):
            got = _checked(c)
            out[f"disentangle_{name}_shape"] = _rate([g["shape"] == s.shape for g, s in zip(got, c.scenes)])
            out[f"disentangle_{name}_texture"] = _rate([g["texture"] == s.texture for g, s in zip(got, c.scenes)])
            out[f"disentangle_{name}_color"] = _rate([g["color"] == s.color for g, s in zip(got, c.scenes)])
        return out
    assert isinstance(cases, Cases)
    s = cases.scenes
    if flow in ("t2i", "i2i"):
        got = _checked(cases)
        color = [g["color"] == x.color for g, x in zip(got, s)]
        shape = [g["shape"] == x.shape for g, x in zip(got, s)]
        return {f"{flow}_color": _rate(color), f"{flow}_shape": _rate(shape),
                f"{flow}_color_shape": _rate([a and b for a, b in zip(color, shape)]),
                f"{flow}_texture": _rate([g["texture"] == x.texture for g, x in zip(got, s)]),
                f"{flow}_background": _rate([g["background"] == x.background for g, x in zip(got, s)])}
    if flow in ("i2t", "t2t"):
        assert cases.texts is not None
        words = [sc.score_caption(x, t) for x, t in zip(s, cases.texts)]
        out = {f"{flow}_color_shape": _rate([w["color"] and w["shape"] for w in words]),
               f"{flow}_all": _rate([all(w.values()) for w in words])}
        if flow == "t2t":
            out["t2t_nouns"] = _rate([w["shape"] for w in words])
        return out
    if flow == "dual":
        got = _checked(cases)
        colors = cases.extra["colors"]
        color = [g["color"] == c for g, c in zip(got, colors)]
        shape = [g["shape"] == x.shape for g, x in zip(got, s)]
        return {"dual_text_color": _rate(color), "dual_image_shape": _rate(shape),
                "dual_text_color_image_shape": _rate([a and b for a, b in zip(color, shape)])}
    if flow == "i2t2i":
        got = _checked(cases)
        colors = cases.extra["colors"]
        color = [g["color"] == c for g, c in zip(got, colors)]
        shape = [g["shape"] == x.shape for g, x in zip(got, s)]
        background = [g["background"] == x.background for g, x in zip(got, s)]
        sentence = [sc.parse_caption(t)["color"] == c for t, c in zip(cases.texts or [], colors)]
        return {"i2t2i_edit": _rate([a and b and c for a, b, c in zip(color, shape, background)]),
                "i2t2i_new_color": _rate(color), "i2t2i_kept_shape": _rate(shape),
                "i2t2i_kept_background": _rate(background),
                "i2t2i_kept_texture": _rate([g["texture"] == x.texture for g, x in zip(got, s)]),
                "i2t2i_sentence_names_new_color": _rate(sentence)}
    if flow == "vae":
        got = _checked(cases)
        return {f"vae_{a}": _rate([g[a] == getattr(x, a) for g, x in zip(got, s)]) for a in ("color", "shape", "texture")}
    if flow == "clip":
        picked, shift = cases.extra["picked"], cases.extra["token_shift"]
        return {**{f"clip_{a}": _rate([p == getattr(x, a) for p, x in zip(picked[a], s)]) for a in PROBED},
                **{f"clip_tokens_{a}": float(np.mean(shift[a])) for a in PROBED}}
    raise ValueError(f"unknown flow {flow!r}; known: {', '.join(FLOWS)}")


@torch.no_grad()
def measure(model: Any, n: int = 200, *, seed: int = 2026, settings: Settings | None = None,
            flows: Sequence[str] = FLOWS, progress: Callable[[str], None] | None = None,
            keep: dict[str, Any] | None = None) -> dict[str, float]:
    """Rates of every flow over ``n`` held-out scenes each; ``keep`` receives the cases per flow."""
    settings = settings or Settings()
    runner = Runner(model, settings, seed, progress)
    out: dict[str, float] = {}
    for i, flow in enumerate(flows):
        if flow not in FLOWS:
            raise ValueError(f"unknown flow {flow!r}; known: {', '.join(FLOWS)}")
        t0 = time.perf_counter()
        flow_seed = seed * 1000 + FLOWS.index(flow) + 1
        scenes = _scenes(n, flow_seed)
        runner.reseed(flow_seed)  # a flow's rates do not depend on which flows ran before it
        cases = getattr(runner, flow)(scenes)
        out.update(score(flow, cases))
        out[f"seconds_{flow}"] = round(time.perf_counter() - t0, 1)
        if keep is not None:
            keep[flow] = cases
        runner.progress(f"[{i + 1}/{len(flows)}] {flow}: {out[f'seconds_{flow}']} s")
    return out


def check_thresholds(rates: dict[str, float]) -> list[tuple[str, str, bool]]:
    """(metric, requirement, met) for every threshold and ordering present in ``rates``."""
    rows = [(k, f">= {v:.0%}", rates[k] >= v) for k, v in THRESHOLDS.items() if k in rates]
    rows += [(f"{a} > {b}", f"{rates[a]:.1%} > {rates[b]:.1%}", rates[a] > rates[b])
             for a, b in ORDERINGS if a in rates and b in rates]
    return rows


def markdown_table(rates: dict[str, float], n: int, settings: Settings) -> str:
    """The results as a markdown section (what ``--docs`` writes into docs/nano.md)."""
    lines = [f"Measured with `vdnodes eval-nano --n {n}` ({n} held-out scenes per flow; "
             f"{settings.sampler.upper()} {settings.steps} steps, guidance {settings.guidance}; "
             f"image variation {settings.variation_guidance}, colours matched to the input at "
             f"{settings.variation_match_colors}; text output {settings.text_guidance}).", "",
             "| metric | rate | target | met |", "|---|---:|---|---|"]
    targets = {k: (f">= {v:.0%}", rates[k] >= v) for k, v in THRESHOLDS.items() if k in rates}
    for k, v in rates.items():
        if k.startswith("seconds_"):
            continue
        target, met = targets.get(k, ("", None))
        shown = f"{v:.2f}" if k.startswith(DISTANCES) else f"{v:.1%}"
        lines.append(f"| {k} | {shown} | {target} | {'' if met is None else ('yes' if met else '**no**')} |")
    for a, b in ORDERINGS:
        if a in rates and b in rates:
            lines.append(f"| {a} > {b} | {rates[a]:.1%} vs {rates[b]:.1%} | a > b | "
                         f"{'yes' if rates[a] > rates[b] else '**no**'} |")
    seconds = sum(v for k, v in rates.items() if k.startswith("seconds_"))
    lines += ["", f"Time: {seconds:.0f} s in all (" + ", ".join(
        f"{k[8:]} {v:.0f} s" for k, v in rates.items() if k.startswith("seconds_")) + ")."]
    return "\n".join(lines)


DOCS_BEGIN, DOCS_END = "<!-- eval-nano:begin -->", "<!-- eval-nano:end -->"


def check_docs(path: Path) -> str:
    """Return ``path``'s text; ValueError unless it is a readable file with both eval-nano markers."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"cannot read the docs file {path} ({e.strerror or e}); --docs updates an "
                         f"existing markdown file between {DOCS_BEGIN} and {DOCS_END}") from e
    if DOCS_BEGIN not in text or DOCS_END not in text:
        raise ValueError(f"{path} has no {DOCS_BEGIN} ... {DOCS_END} section to update")
    return text


def update_docs(path: Path, section: str) -> None:
    """Replace the text between the eval-nano markers of ``path`` with ``section``."""
    from vdnodes.core.fileio import atomic_write_text

    head, rest = check_docs(path).split(DOCS_BEGIN, 1)
    _, tail = rest.split(DOCS_END, 1)
    atomic_write_text(path, f"{head}{DOCS_BEGIN}\n{section}\n{DOCS_END}{tail}")


def main(argv: Sequence[str] | None = None) -> int:
    """``vdnodes eval-nano``: measure vd-nano's flows, print a table, write JSON (and grids/docs)."""
    parser = argparse.ArgumentParser(prog="vdnodes eval-nano", description=(
        "Measure vd-nano on held-out scenes with the rule-based checker: text->image, image->text, "
        "image and text variation, dual-guided, disentanglement and I2T2I editing, and a probe of "
        "which attributes its CLIP tells apart."))
    parser.add_argument("--weights", default=None, help="a vd-nano .safetensors (default: the shipped one)")
    parser.add_argument("--n", type=int, default=200, help="scenes per flow (default 200)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--flows", default=",".join(FLOWS), help=f"comma-separated subset of {','.join(FLOWS)}")
    parser.add_argument("--steps", type=int, default=Settings.steps)
    parser.add_argument("--guidance", type=float, default=Settings.guidance, help="image output, image variation aside")
    parser.add_argument("--variation-guidance", type=float, default=Settings.variation_guidance,
                        help="i2i (image variation)")
    parser.add_argument("--text-guidance", type=float, default=Settings.text_guidance,
                        help="text output: i2t, t2t and I2T2I's caption")
    parser.add_argument("--sampler", choices=[str(n.value) for n in sampling.SamplerName], default=Settings.sampler)
    parser.add_argument("--out", default=None, help="write the rates as JSON here")
    parser.add_argument("--grids", default=None, help="write sample grids (PNG) into this folder")
    parser.add_argument("--docs", default=None, help="update the results section of this markdown file")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    args = parser.parse_args(argv)
    flows = [f.strip() for f in args.flows.split(",") if f.strip()]
    bad = [f for f in flows if f not in FLOWS]
    if bad or args.n < 1 or args.steps < 1:
        what = f"unknown flow(s) {', '.join(bad)}; known: {', '.join(FLOWS)}" if bad else "--n and --steps must be >= 1"
        print(f"vdnodes eval-nano: error: {what}", file=sys.stderr)
        return 2
    if args.docs:  # checked before the minutes of measuring, not after
        try:
            check_docs(Path(args.docs))
        except ValueError as e:
            print(f"vdnodes eval-nano: error: {e}", file=sys.stderr)
            return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    from vdnodes.nano.weights import load_nano

    try:
        model = load_nano(device=args.device, path=args.weights)
    except (FileNotFoundError, ValueError, OSError, RuntimeError) as e:
        print(f"vdnodes eval-nano: error: {e}", file=sys.stderr)
        return 2
    settings = Settings(steps=args.steps, guidance=args.guidance, variation_guidance=args.variation_guidance,
                        text_guidance=args.text_guidance, sampler=args.sampler)
    keep: dict[str, Any] = {}
    t0 = time.perf_counter()
    rates = measure(model, args.n, seed=args.seed, settings=settings, flows=flows,
                    progress=lambda m: print(m, file=sys.stderr, flush=True), keep=keep)
    section = markdown_table(rates, args.n, settings)
    print(section)
    rows = check_thresholds(rates)
    print(f"\n{sum(met for *_, met in rows)}/{len(rows)} targets met in {time.perf_counter() - t0:.0f} s")
    if args.out:
        from vdnodes.core.fileio import atomic_write_text

        record = {"n": args.n, "seed": args.seed, "settings": dataclasses.asdict(settings),
                  "weights": os.path.basename(args.weights) if args.weights else "vd-nano.safetensors (shipped)",
                  "torch": torch.__version__, "threads": torch.get_num_threads(), "rates": rates,
                  "targets": [{"metric": m, "requirement": r, "met": bool(ok)} for m, r, ok in rows]}
        atomic_write_text(Path(args.out), json.dumps(record, indent=1) + "\n")
    if args.grids:
        from vdnodes.nano.grids import write_grids

        for path in write_grids(keep, Path(args.grids)):
            print(f"grid: {path}")
    if args.docs:
        update_docs(Path(args.docs), section)
    return 0
