"""What the stages train on, drawn from scenes: texts, edits, twins, masks and rendered batches.

- texts: captions with a random template, *fragments* ("red", "a large circle", "on a blue
  background") and which scenes a text describes (``matches``);
- changed scenes: ``recolor`` (the dual-guided target), ``restyle`` (the semantic-focus
  target), ``twin`` (CLIP's hard negative) and ``edit_cases`` (Optimus' I2T2I edits);
- geometry: how much of each pixel, patch or latent cell a scene's shape covers;
- ``render_batch``: scenes as an image tensor.

Every function draws from the generator it is given, in a fixed order: the stages' random
streams depend on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vdnodes.nano import scenes as sc
from vdnodes.nano.config import IMAGE_SIZE

ATTRIBUTES = ("color", "shape", "texture", "background", "size")
Constraints = dict[str, str]


def caption_constraints(scene: sc.Scene, template: int) -> Constraints:
    """What a full caption says: colour, shape, background, texture (no word = solid), size if named."""
    named = {"color": scene.color, "shape": scene.shape, "background": scene.background, "texture": scene.texture}
    if "{size}" in sc.TEMPLATES[template]:
        named["size"] = scene.size
    return named


def _articles(text: str) -> str:
    words = text.split()
    return " ".join("an" if w == "a" and i + 1 < len(words) and words[i + 1][0] in "aeiou" else w
                    for i, w in enumerate(words))


def fragment(scene: sc.Scene, rng: np.random.Generator, require: Sequence[str] = ()) -> tuple[str, Constraints]:
    """A partial description of ``scene``: a random subset of its attributes, always with ``require``.

    E.g. "red", "a large striped circle", "a green background", "a blue square on a red background".
    """
    keep = {a for a in ATTRIBUTES if rng.random() < 0.5} | set(require)
    if scene.texture == "solid":
        keep.discard("texture")  # captions never name "solid"
    if not keep:
        keep = {"color" if rng.random() < 0.5 else "shape"}
    words = [w for a, w in (("size", scene.size), ("texture", sc.TEXTURE_ADJECTIVE[scene.texture]),
                            ("color", scene.color), ("shape", scene.shape)) if a in keep]
    text = ("a " if "shape" in keep else "") + " ".join(words)
    if "background" in keep:
        text = (text + " on a " if text else "a ") + f"{scene.background} background"
    return _articles(text), {a: getattr(scene, a) for a in keep}


def describe_with(scene: sc.Scene, rng: np.random.Generator, require: Sequence[str]) -> str:
    """A full caption (half the time) or a fragment of ``scene`` naming at least ``require``."""
    if rng.random() < 0.5:
        return scene.caption(int(rng.integers(len(sc.TEMPLATES))))
    return fragment(scene, rng, require=require)[0]


def describe(scene: sc.Scene, rng: np.random.Generator, p_fragment: float) -> tuple[str, Constraints]:
    """A fragment with probability ``p_fragment``, else the full caption with a random template."""
    if rng.random() < p_fragment:
        return fragment(scene, rng)
    template = int(rng.integers(len(sc.TEMPLATES)))
    return scene.caption(template), caption_constraints(scene, template)


def matches(constraints: Sequence[Constraints], scenes: Sequence[sc.Scene]) -> torch.Tensor:
    """``[T, S]`` float: 1 where scene s has every attribute text t names."""
    return torch.tensor([[float(all(getattr(s, a) == v for a, v in c.items())) for s in scenes]
                         for c in constraints])


def recolor(scene: sc.Scene, rng: np.random.Generator) -> sc.Scene:
    """``scene`` in another colour (not its own, not its background's): the dual-guided target."""
    choices = [c for c in sc.COLORS if c not in (scene.color, scene.background)]
    return dataclasses.replace(scene, color=choices[int(rng.integers(len(choices)))])


def restyle(scene: sc.Scene, rng: np.random.Generator) -> sc.Scene:
    """``scene``'s shape, size and place in a random colour, texture and background.

    What VD's semantic focus should draw from a scene's context: the UNet stage's restyled twin.
    """
    background = list(sc.COLORS)[int(rng.integers(len(sc.COLORS)))]
    colors = [c for c in sc.COLORS if c != background]
    return dataclasses.replace(scene, background=background, color=colors[int(rng.integers(len(colors)))],
                               texture=sc.TEXTURES[int(rng.integers(len(sc.TEXTURES)))],
                               seed=int(rng.integers(2**31)))


EDITED = ("color", "shape")  # what an I2T2I edit changes in the Optimus stage's edit loss


def change_attribute(scene: sc.Scene, attribute: str, rng: np.random.Generator) -> sc.Scene:
    """``scene`` with ``attribute`` (``"color"`` or ``"shape"``) set to another value (a colour never the background's)."""
    if attribute == "color":
        return recolor(scene, rng)
    choices = [s for s in sc.SHAPES if s != scene.shape]
    return dataclasses.replace(scene, shape=choices[int(rng.integers(len(choices)))])


@dataclass
class EditCases:
    """I2T2I text edits: ``captions[i]`` must become ``targets[i]`` by swapping ``removed[i]`` for ``added[i]``."""

    captions: list[str]
    removed: list[str]
    added: list[str]
    targets: list[str]
    edited: list[sc.Scene]  # the scene each target describes


def edit_cases(rng: np.random.Generator, n: int, attributes: Sequence[str] = EDITED) -> EditCases:
    """``n`` random scenes, each with one of ``attributes`` changed; one caption template per pair."""
    scenes = [sc.sample_scene(rng) for _ in range(n)]
    changed = [attributes[int(rng.integers(len(attributes)))] for _ in scenes]
    edited = [change_attribute(s, a, rng) for s, a in zip(scenes, changed)]
    templates = [int(rng.integers(len(sc.TEMPLATES))) for _ in scenes]
    return EditCases([s.caption(t) for s, t in zip(scenes, templates)],
                     [getattr(s, a) for s, a in zip(scenes, changed)],
                     [getattr(e, a) for e, a in zip(edited, changed)],
                     [e.caption(t) for e, t in zip(edited, templates)], edited)


# Which attribute a hard-negative twin changes (shape most often: it is the hardest to see).
TWIN_ATTRIBUTES = ("shape",) * 4 + ("texture",) * 2 + ("size",) * 2 + ("color", "background")


def twin(scene: sc.Scene, rng: np.random.Generator) -> sc.Scene:
    """``scene`` with exactly one attribute changed (a hard negative for the contrastive loss).

    Position, noise seed and wording stay, so the two images differ only in what the changed
    word names; a size change that would leave the image picks the nearest valid centre.
    """
    attribute = TWIN_ATTRIBUTES[int(rng.integers(len(TWIN_ATTRIBUTES)))]
    values = {"shape": sc.SHAPES, "texture": sc.TEXTURES, "size": tuple(sc.SIZES), "color": tuple(sc.COLORS),
              "background": tuple(sc.COLORS)}[attribute]
    taken = {getattr(scene, attribute), scene.background if attribute == "color" else scene.color}
    choices = [v for v in values if v not in taken]
    value = choices[int(rng.integers(len(choices)))]
    if attribute != "size":
        return dataclasses.replace(scene, **{attribute: value})
    lo, hi = sc.position_range(value)
    return dataclasses.replace(scene, size=value, x=min(max(scene.x, lo), hi), y=min(max(scene.y, lo), hi))


def shape_covers(scenes: Sequence[sc.Scene]) -> np.ndarray:
    """``[B, 32, 32]``: how much of each pixel the scene's shape covers, as ``render`` draws it."""
    return np.stack([sc.shape_coverage(s.shape, s.x, s.y, s.half, IMAGE_SIZE) for s in scenes])


def latent_masks(scenes: Sequence[sc.Scene], side: int, device: torch.device, grow_px: int = 3) -> torch.Tensor:
    """Where each scene's shape is, on a ``side`` x ``side`` latent grid: ``[N, 1, side, side]`` in [0, 1].

    The shape's coverage grown by ``grow_px`` pixels (so a cross's notches, where it differs from
    a square or a diamond, count as its own), averaged over each latent cell's pixels.
    """
    cover = torch.from_numpy(shape_covers(scenes)).float()[:, None]  # [N, 1, H, W]
    cover = F.max_pool2d(cover, 2 * grow_px + 1, stride=1, padding=grow_px)
    return F.adaptive_avg_pool2d(cover, side).to(device)


def render_batch(scenes: Sequence[sc.Scene], device: torch.device) -> torch.Tensor:
    """Scenes -> images ``[B, 3, 32, 32]`` in [0, 1] on ``device``."""
    images = np.stack([sc.render(s, IMAGE_SIZE).transpose(2, 0, 1) for s in scenes]).astype(np.float32) / 255.0
    return torch.from_numpy(images).to(device)


def patch_coverage(scenes: Sequence[sc.Scene], patch: int) -> np.ndarray:
    """``[B, (32 / patch)^2]``: the share of each image patch the scene's shape covers, row-major."""
    side = IMAGE_SIZE // patch
    cover = shape_covers(scenes)  # [B, 32, 32]
    return cover.reshape(len(scenes), side, patch, side, patch).mean(axis=(2, 4)).reshape(len(scenes), -1)
