"""Procedural scenes for vd-nano: one coloured, textured shape on a plain background.

Read top to bottom:
- the vocabulary (``COLORS``, ``SHAPES``, ``TEXTURES``, ``SIZES``) and the drawing constants,
- signed-distance helpers that draw shapes and patterns with analytic anti-aliasing,
- ``Scene``, a frozen description of one image, with ``caption()`` from a few templates,
- ``render(scene, size)`` -> uint8 image, ``sample_scene(rng)`` and ``make_batch(n, seed, size)``,
- ``parse_caption(text)`` and ``score_caption(scene, text)``, which read the words back.

Everything is deterministic: the same scene, or the same seed, always gives the same pixels
and words. Numpy only; ``to_torch`` converts a batch when torch is wanted. This module draws
and describes; it does not look at images (that is ``checker.py``) and holds no model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# ---------------------------------------------------------------------------------------------
# Vocabulary. Colours are far apart in RGB (the closest pair, orange/yellow, is 83/255 apart)
# and each colour's pattern shade (see pattern_rgb) stays at least 77/255 away from every other
# colour, so objects separate from any background even with textures, blur and noise.

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (150, 50, 190),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
}
# Upright, unrotated; each fills the square [-1, 1]^2 edge to edge, so a bounding box fixes its
# centre and size. Their pairwise overlaps stay low enough to tell apart at 32x32.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted", "noisy")  # the "style" axis
SIZES: dict[str, float] = {"small": 0.15, "medium": 0.21, "large": 0.28}  # half side / image side

MARGIN = 0.06  # gap kept between the shape and the image border, in image sides
CROSS_ARM = 1.0 / 3.0  # half width of the cross's arms, in shape half-sides
PATTERN_PERIOD = 1.0 / 8.0  # stripe and dot spacing in image sides: 8 px at 64, 4 px at 32
STRIPE_WIDTH = 0.4  # stripe width as a fraction of the period (a minority of the pixels)
DOT_RADIUS = 0.3  # dot radius as a fraction of the period (~28% of the pixels)
PATTERN_SHADE = 0.4  # pattern pixels move this far toward black (toward white for dark colours)
NOISE_STD = 0.1  # std of the grey per-pixel noise of the "noisy" texture, image in [0, 1]

TEXTURE_ADJECTIVE = {"solid": "", "striped": "striped", "dotted": "dotted", "noisy": "noisy"}
TEXTURE_PHRASE = {
    "solid": "", "striped": "with stripes", "dotted": "with dots", "noisy": "with noise"
}  # fmt: skip
# Every template names colour, shape and background colour; texture and size are optional
# words that vanish when empty (a solid object has no texture word).
TEMPLATES: tuple[str, ...] = (
    "a {color} {texture} {shape} on a {background} background",
    "a {size} {texture} {color} {shape} on {background}",
    "a {color} {shape} {texture_phrase} on a {background} background",
    "{background} background with a {size} {color} {texture} {shape}",
)


def color_rgb(name: str) -> np.ndarray:
    """The colour ``name`` as float RGB in [0, 1], shape [3]."""
    return np.asarray(COLORS[name], dtype=np.float64) / 255.0


def pattern_rgb(name: str) -> np.ndarray:
    """The shade stripes and dots are drawn in: darker for bright colours, lighter for dark ones."""
    rgb = color_rgb(name)
    if rgb.mean() > 0.3:
        return rgb * (1.0 - PATTERN_SHADE)
    return rgb + PATTERN_SHADE * (1.0 - rgb)


# ---------------------------------------------------------------------------------------------
# Drawing with signed distances: negative inside, in the units of the coordinates given.
# Coverage of a pixel is clip(0.5 - distance_in_pixels, 0, 1), a one-pixel linear ramp, which
# anti-aliases edges without supersampling.


def _coverage(distance_px: np.ndarray) -> np.ndarray:
    return np.clip(0.5 - distance_px, 0.0, 1.0)


def shape_sdf(shape: str, qx: np.ndarray, qy: np.ndarray) -> np.ndarray:
    """Signed distance to ``shape`` in its unit frame (extent [-1, 1]^2, y pointing down)."""
    ax, ay = np.abs(qx), np.abs(qy)
    if shape == "circle":
        return np.sqrt(qx * qx + qy * qy) - 1.0
    if shape == "square":
        return np.maximum(ax, ay) - 1.0
    if shape == "diamond":
        return (ax + ay - 1.0) / math.sqrt(2.0)
    if shape == "triangle":  # apex (0, -1) at the top, base from (-1, 1) to (1, 1)
        sides = (2.0 * ax - qy - 1.0) / math.sqrt(5.0)
        return np.maximum(qy - 1.0, sides)
    if shape == "cross":
        bar_h = np.maximum(ax - 1.0, ay - CROSS_ARM)
        bar_v = np.maximum(ax - CROSS_ARM, ay - 1.0)
        return np.minimum(bar_h, bar_v)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in image sides: x [1, size] and y [size, 1], for broadcasting."""
    centres = (np.arange(size, dtype=np.float64) + 0.5) / size
    return centres[None, :], centres[:, None]


def shape_coverage(
    shape: str, x: float, y: float, half: float, size: int, half_y: float | None = None
) -> np.ndarray:
    """Anti-aliased coverage [size, size] in [0, 1] of ``shape`` centred at (x, y), in image sides.

    ``half`` is the half side (``half_y`` the vertical one when it differs, for fitting).
    """
    hx, hy = half, half if half_y is None else half_y
    gx, gy = pixel_grid(size)
    sdf = shape_sdf(shape, (gx - x) / hx, (gy - y) / hy) * min(hx, hy)  # [size, size] image sides
    return _coverage(sdf * size)


def stripe_coverage(ux: np.ndarray, uy: np.ndarray, size: int) -> np.ndarray:
    """Diagonal stripes (constant along x - y), one centred on the object; u in image sides."""
    t = (ux + uy) / math.sqrt(2.0) / PATTERN_PERIOD + 0.5
    phase = t - np.floor(t)  # stripe centre at phase 0.5
    distance = (np.abs(phase - 0.5) - STRIPE_WIDTH / 2) * PATTERN_PERIOD
    return _coverage(distance * size)


def dot_coverage(ux: np.ndarray, uy: np.ndarray, size: int) -> np.ndarray:
    """A square grid of dots, one on the object's centre; u in image sides."""
    gx = ux / PATTERN_PERIOD + 0.5
    gy = uy / PATTERN_PERIOD + 0.5
    dx, dy = gx - np.floor(gx) - 0.5, gy - np.floor(gy) - 0.5
    distance = (np.sqrt(dx * dx + dy * dy) - DOT_RADIUS) * PATTERN_PERIOD
    return _coverage(distance * size)


# ---------------------------------------------------------------------------------------------
# Scenes


def _check_name(kind: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; expected one of {tuple(allowed)}")


def _with_articles(text: str) -> str:
    words = text.split()
    for i in range(len(words) - 1):
        if words[i] == "a" and words[i + 1][0] in "aeiou":
            words[i] = "an"
    return " ".join(words)


def position_range(size: str) -> tuple[float, float]:
    """Allowed range of a ``size`` shape's centre coordinate, in image sides."""
    half = SIZES[size]
    return half + MARGIN, 1.0 - half - MARGIN


@dataclass(frozen=True)
class Scene:
    """One image: a ``color`` ``texture`` ``shape`` of ``size`` at (x, y) on ``background``.

    x and y are the shape's centre in image sides (0..1, y down). ``seed`` drives the noise of
    the "noisy" texture; ``template`` picks the caption wording.
    """

    shape: str
    color: str
    background: str
    texture: str = "solid"
    size: str = "medium"
    x: float = 0.5
    y: float = 0.5
    seed: int = 0
    template: int = 0

    def __post_init__(self) -> None:
        _check_name("shape", self.shape, SHAPES)
        _check_name("color", self.color, COLORS)
        _check_name("background", self.background, COLORS)
        _check_name("texture", self.texture, TEXTURES)
        _check_name("size", self.size, SIZES)
        if self.background == self.color:
            raise ValueError(
                f"background must differ from the object's colour, both are {self.color!r}"
            )
        lo, hi = position_range(self.size)
        if not (lo <= self.x <= hi and lo <= self.y <= hi):
            raise ValueError(
                f"a {self.size} shape's centre must lie in [{lo:.3f}, {hi:.3f}] to stay inside "
                f"the image; got x={self.x}, y={self.y}"
            )
        if not 0 <= self.template < len(TEMPLATES):
            raise ValueError(f"template must be in [0, {len(TEMPLATES)}), got {self.template}")

    @property
    def half(self) -> float:
        """Half side of the shape in image sides."""
        return SIZES[self.size]

    def caption(self, template: int | None = None) -> str:
        """The scene in words, with ``template`` (default: the scene's own)."""
        index = self.template if template is None else template
        if not 0 <= index < len(TEMPLATES):
            raise ValueError(f"template must be in [0, {len(TEMPLATES)}), got {index}")
        text = TEMPLATES[index].format(
            color=self.color,
            shape=self.shape,
            background=self.background,
            size=self.size,
            texture=TEXTURE_ADJECTIVE[self.texture],
            texture_phrase=TEXTURE_PHRASE[self.texture],
        )
        return _with_articles(text)


def render(scene: Scene, size: int = 64) -> np.ndarray:
    """Draw ``scene`` as a uint8 image [size, size, 3]; deterministic."""
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size must be an integer of at least 16 pixels, got {size!r}")
    gx, gy = pixel_grid(size)
    ux, uy = gx - scene.x, gy - scene.y  # offsets from the shape's centre, image sides
    cover = shape_coverage(scene.shape, scene.x, scene.y, scene.half, size)[..., None]  # [H, W, 1]

    base = color_rgb(scene.color) * 255.0  # [3], in 0..255 from here on
    background = color_rgb(scene.background) * 255.0
    if scene.texture == "noisy":
        noise = np.random.default_rng(scene.seed).standard_normal((size, size))  # [H, W]
        obj = np.clip(base + noise[..., None] * (NOISE_STD * 255.0), 0.0, 255.0)  # [H, W, 3]
        image = background + cover * (obj - background)  # [H, W, 3]
    else:
        image = background + cover * (base - background)  # [H, W, 3]
        if scene.texture != "solid":
            draw = stripe_coverage if scene.texture == "striped" else dot_coverage
            pattern = draw(ux, uy, size)  # [H, W]
            shade = pattern_rgb(scene.color) * 255.0
            image += (cover * pattern[..., None]) * (shade - base)  # pattern inside the shape only
    return np.rint(image).astype(np.uint8)


def sample_scene(rng: np.random.Generator) -> Scene:
    """A random scene: every attribute uniform, background uniform over the other colours."""
    colors = tuple(COLORS)
    color = colors[rng.integers(len(colors))]
    backgrounds = tuple(c for c in colors if c != color)
    size = tuple(SIZES)[rng.integers(len(SIZES))]
    lo, hi = position_range(size)
    return Scene(
        shape=SHAPES[rng.integers(len(SHAPES))],
        color=color,
        background=backgrounds[rng.integers(len(backgrounds))],
        texture=TEXTURES[rng.integers(len(TEXTURES))],
        size=size,
        x=float(rng.uniform(lo, hi)),
        y=float(rng.uniform(lo, hi)),
        seed=int(rng.integers(2**31)),
        template=int(rng.integers(len(TEMPLATES))),
    )


def make_batch(n: int, seed: int, size: int = 64) -> tuple[np.ndarray, list[str], list[Scene]]:
    """``n`` random scenes from ``seed``.

    Returns images float32 [n, 3, size, size] in [0, 1], their captions and their scenes.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng) for _ in range(n)]
    images = np.empty((n, 3, size, size), dtype=np.float32)
    for i, scene in enumerate(scenes):
        images[i] = render(scene, size).transpose(2, 0, 1)  # [3, H, W]
    images /= 255.0
    return images, [s.caption() for s in scenes], scenes


def to_torch(images: np.ndarray, device: str | None = None, dtype=None) -> torch.Tensor:
    """A batch from ``make_batch`` as a torch tensor (imports torch only when called)."""
    import torch

    return torch.as_tensor(images, device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Reading captions back. Word lists, not a grammar, so captions written by a model (extra,
# repeated or reordered words) still parse. The background colour is a colour word directly
# before "background"/"backdrop" or directly after "on"/"against"/"over" (articles skipped);
# the object's colour is the other colour word nearest the shape word, preferring one before it.

COLOR_WORDS: dict[str, str] = {name: name for name in COLORS} | {"violet": "purple"}
SHAPE_WORDS: dict[str, str] = (
    {name: name for name in SHAPES}
    | {name + "s": name for name in SHAPES}
    | {"crosses": "cross", "plus": "cross", "rhombus": "diamond"}
    | {"disc": "circle", "disk": "circle"}
)
TEXTURE_WORDS: dict[str, str] = {
    "solid": "solid", "plain": "solid",
    "striped": "striped", "stripes": "striped", "stripe": "striped", "stripy": "striped",
    "dotted": "dotted", "dots": "dotted", "dot": "dotted", "spotted": "dotted", "polka": "dotted",
    "noisy": "noisy", "noise": "noisy", "grainy": "noisy", "speckled": "noisy",
}  # fmt: skip
SIZE_WORDS: dict[str, str] = {
    "small": "small", "tiny": "small", "little": "small",
    "medium": "medium",
    "large": "large", "big": "large", "huge": "large",
}  # fmt: skip
_BACKGROUND_AFTER = ("background", "backdrop", "bg")
_BACKGROUND_BEFORE = ("on", "against", "over")
_ARTICLES = ("a", "an", "the")


def _first(tokens: list[str], words: dict[str, str]) -> str | None:
    return next((words[t] for t in tokens if t in words), None)


def _is_background(tokens: list[str], i: int) -> bool:
    if i + 1 < len(tokens) and tokens[i + 1] in _BACKGROUND_AFTER:
        return True
    j = i - 1
    while j >= 0 and tokens[j] in _ARTICLES:
        j -= 1
    return j >= 0 and tokens[j] in _BACKGROUND_BEFORE


def parse_caption(text: str) -> dict[str, str | None]:
    """Attributes named in ``text``: color, shape, texture, background, size (None if absent).

    A caption with no texture word gives texture None; our captions say nothing for "solid".
    """
    tokens = re.findall(r"[a-z]+", text.lower())
    colors = [(i, COLOR_WORDS[t]) for i, t in enumerate(tokens) if t in COLOR_WORDS]
    background = next((c for i, c in colors if _is_background(tokens, i)), None)
    candidates = [(i, c) for i, c in colors if not _is_background(tokens, i)]

    shape_at = next((i for i, t in enumerate(tokens) if t in SHAPE_WORDS), None)
    color = None
    if candidates and shape_at is None:
        color = candidates[0][1]
    elif candidates:
        # distance to the shape word; a word after the shape counts half a step farther
        def distance(candidate: tuple[int, str]) -> float:
            i = candidate[0]
            return shape_at - i if i < shape_at else i - shape_at + 0.5

        color = min(candidates, key=distance)[1]
    return {
        "color": color,
        "shape": SHAPE_WORDS[tokens[shape_at]] if shape_at is not None else None,
        "texture": _first(tokens, TEXTURE_WORDS),
        "background": background,
        "size": _first(tokens, SIZE_WORDS),
    }


def score_caption(expected: Scene, text: str) -> dict[str, bool]:
    """Whether ``text`` names ``expected``'s colour, shape, texture and background.

    No texture word counts as "solid", as in our captions.
    """
    got = parse_caption(text)
    return {
        "color": got["color"] == expected.color,
        "shape": got["shape"] == expected.shape,
        "texture": (got["texture"] or "solid") == expected.texture,
        "background": got["background"] == expected.background,
    }
