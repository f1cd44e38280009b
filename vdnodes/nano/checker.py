"""Reads a vd-nano scene back from an image with the generator's own rules; no learned weights.

``check_image`` finds, in order:
1. background: the median of the border pixels, named by the nearest palette colour;
2. object mask: pixels farther than ``SEGMENT_DISTANCE`` from the background (the palette keeps
   every colour and pattern shade farther than that from every other colour), largest
   4-connected component, holes filled; then again at half the object's contrast, so a blurred
   edge splits where the generator's edge is;
3. colour: the per-channel median of the mask's interior, named by the nearest *segment*
   between a palette colour and its pattern shade, so stripes, dots and anti-aliased mixes of
   colour and shade all read as the colour itself;
4. shape: every shape of the vocabulary is drawn with the generator's rasteriser, fitted to the
   mask by bounding box and by area and centroid; the best overlap (IoU) wins, and the fitted
   half side names the size class;
5. texture: flat brightness inside the object -> solid; otherwise the generator's stripe and
   dot patterns, drawn around the fitted centre and shifted over a period, are correlated with
   the brightness: a strong match names the pattern, no match -> noisy.

It judges images of our scenes (and model outputs of them); it is not a general classifier.
``degrade`` blurs and adds noise, to test that the reading survives a less clean image.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from vdnodes.nano.scenes import (
    COLORS,
    PATTERN_PERIOD,
    SHAPES,
    SIZES,
    Scene,
    color_rgb,
    dot_coverage,
    pattern_rgb,
    pixel_grid,
    shape_coverage,
    stripe_coverage,
)

SEGMENT_DISTANCE = 0.15  # RGB distance from the background that makes a pixel "object"
SOLID_STD = 0.035  # coherent RGB std (see texture_features) below which an object is solid
PATTERN_MATCH = 0.6  # correlation with the stripe or dot pattern above which it is that pattern
PHASE_STEPS = 8  # pattern shifts tried per period (stripes; dots use half as many per axis)
ATTRIBUTES = ("color", "shape", "texture", "background", "size")  # what check_image reports


# ---------------------------------------------------------------------------------------------
# Small image helpers (numpy only)


def _as_float_hwc(image) -> np.ndarray:
    """[H, W, 3] float64 in [0, 1] from uint8 or float, HWC or CHW (numpy or torch)."""
    if hasattr(image, "detach"):  # a torch tensor, without importing torch
        image = image.detach().cpu()
        image = (image if str(image.dtype) == "torch.uint8" else image.float()).numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3] or [3, H, W], got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    return np.clip(array.astype(np.float64), 0.0, 1.0)


def _neighbourhood(a: np.ndarray, fill) -> list[np.ndarray]:
    """``a`` and its four neighbours (up, down, left, right), with ``fill`` beyond the edges."""
    p = np.full((a.shape[0] + 2, a.shape[1] + 2), fill, dtype=a.dtype)
    p[1:-1, 1:-1] = a
    return [a, p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]]


def _erode(mask: np.ndarray) -> np.ndarray:
    return np.logical_and.reduce(_neighbourhood(mask, False))


def _components(mask: np.ndarray) -> np.ndarray:
    """4-connected component labels of ``mask``: each pixel's smallest flat index in its component.

    Pixels outside ``mask`` get ``mask.size``. Min-label spreading with pointer jumping, so it
    takes a few dozen vector steps rather than one per pixel of the component's diameter.
    """
    outside = mask.size
    labels = np.where(mask, np.arange(mask.size).reshape(mask.shape), outside)
    while True:
        spread = np.where(mask, np.minimum.reduce(_neighbourhood(labels, outside)), outside)
        while True:  # pointer jumping: a label is a pixel whose own label may be smaller still
            jumped = np.append(spread.ravel(), outside)[spread]
            if np.array_equal(jumped, spread):
                break
            spread = jumped
        if np.array_equal(spread, labels):
            return labels
        labels = spread


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels = _components(mask)
    ids, counts = np.unique(labels[mask], return_counts=True)
    return labels == ids[np.argmax(counts)]


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Background pixels not 4-connected to the image border become object."""
    labels = _components(~mask)
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return ~np.isin(labels, border[border < mask.size])


def object_mask(
    image: np.ndarray, background_rgb: np.ndarray, threshold: float = SEGMENT_DISTANCE
) -> np.ndarray:
    """Boolean [H, W]: the largest blob farther than ``threshold`` from the background, filled."""
    distance = np.linalg.norm(image - background_rgb, axis=-1)  # [H, W]
    mask = distance > threshold
    if not mask.any():
        return mask
    return _fill_holes(_largest_component(mask))


def degrade(image, blur_sigma: float = 0.7, noise_std: float = 0.03, seed: int = 0) -> np.ndarray:
    """``image`` blurred (Gaussian, ``blur_sigma`` px) plus Gaussian noise, as uint8 [H, W, 3]."""
    x = _as_float_hwc(image)
    if blur_sigma > 0:
        radius = max(1, int(np.ceil(3 * blur_sigma)))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / blur_sigma) ** 2)
        taps /= taps.sum()
        for axis in (0, 1):  # separable, edges reflected
            pad = [(0, 0)] * 3
            pad[axis] = (radius, radius)
            padded = np.pad(x, pad, mode="reflect")
            n = x.shape[axis]
            x = sum(t * np.take(padded, np.arange(i, i + n), axis=axis) for i, t in enumerate(taps))
    x = x + np.random.default_rng(seed).standard_normal(x.shape) * noise_std
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# The readers, one per attribute


def _nearest_color(rgb: np.ndarray) -> str:
    names = list(COLORS)
    distances = [np.linalg.norm(rgb - color_rgb(n)) for n in names]
    return names[int(np.argmin(distances))]


def _segment_distance(point: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = np.clip(np.dot(point - a, ab) / np.dot(ab, ab), 0.0, 1.0)
    return float(np.linalg.norm(point - (a + t * ab)))


def read_color(image: np.ndarray, mask: np.ndarray) -> str:
    """The palette colour whose colour-to-shade segment is nearest the interior's median."""
    inner = _erode(mask)
    pixels = image[inner] if inner.sum() >= 4 else image[mask]  # [N, 3]
    median = np.median(pixels, axis=0)
    names = list(COLORS)
    distances = [_segment_distance(median, pattern_rgb(n), color_rgb(n)) for n in names]
    return names[int(np.argmin(distances))]


def _iou(mask: np.ndarray, cover: np.ndarray) -> float:
    return float(np.minimum(mask, cover).sum() / max(np.maximum(mask, cover).sum(), 1e-9))


def _centroid(weights: np.ndarray, size: int) -> tuple[float, float]:
    gx, gy = pixel_grid(size)
    total = weights.sum()
    return float((weights * gx).sum() / total), float((weights * gy).sum() / total)


class ShapeFit(NamedTuple):
    shape: str
    iou: float  # overlap of the fitted shape with the object mask
    x: float  # fitted centre and half side, image sides
    y: float
    half: float


def read_shape(mask: np.ndarray) -> ShapeFit:
    """The shape of the vocabulary that best overlaps ``mask``, with its fitted placement."""
    size = mask.shape[0]
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    x0, x1 = cols[0] / size, (cols[-1] + 1) / size
    y0, y1 = rows[0] / size, (rows[-1] + 1) / size
    box = ((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2)  # cx, cy, hx, hy
    weights = mask.astype(np.float64)
    mx, my = _centroid(weights, size)

    best = ShapeFit("", -1.0, 0.0, 0.0, 0.0)
    for shape in SHAPES:
        cover = shape_coverage(shape, box[0], box[1], box[2], size, half_y=box[3])
        fits = [(box, _iou(weights, cover))]
        # refit by area and centroid: robust to a few stray or missing edge pixels
        scale = np.sqrt(weights.sum() / max(cover.sum(), 1e-9))
        tx, ty = _centroid(cover, size)
        moved = (box[0] + mx - tx, box[1] + my - ty, box[2] * scale, box[3] * scale)
        moved_cover = shape_coverage(shape, moved[0], moved[1], moved[2], size, half_y=moved[3])
        fits.append((moved, _iou(weights, moved_cover)))
        fit, iou = max(fits, key=lambda f: f[1])
        if iou > best.iou:
            best = ShapeFit(shape, iou, fit[0], fit[1], (fit[2] + fit[3]) / 2)
    return best


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 1e-12 else 0.0


def texture_features(
    image: np.ndarray, mask: np.ndarray, color: str, x: float, y: float
) -> dict[str, float]:
    """How strongly the object's interior varies, and how well it matches stripes and dots.

    Textures vary coherently: stripes and dots move every channel toward the shade together and
    the "noisy" texture adds one grey value to all three, while noise from elsewhere (a sensor,
    an imperfect sampler) is independent per channel. So variation is measured along the main
    axis of the pixels' RGB covariance, less the spread of the other two axes: ``std``.

    The stripe and dot patterns are drawn by the generator around the object's centre (x, y)
    and shifted over a period, so the match does not depend on where the pattern starts; a match
    is the correlation of pattern coverage with the pixels' position along that main axis,
    oriented toward the colour's pattern shade.
    """
    size = mask.shape[0]
    inner = _erode(mask)
    if inner.sum() < 8:
        inner = mask
    deep = inner  # as far in as leaves enough pixels: clear of anti-aliased and blurred edges
    for enough in (8, 24):
        if _erode(deep).sum() < enough:
            break
        deep = _erode(deep)

    pixels = image[deep] - image[deep].mean(axis=0)  # [N, 3]
    spread, axes = np.linalg.eigh(pixels.T @ pixels / len(pixels))  # ascending eigenvalues
    std = float(np.sqrt(max(spread[2] - (spread[0] + spread[1]) / 2, 0.0)))
    main = axes[:, 2] if axes[:, 2] @ (pattern_rgb(color) - color_rgb(color)) >= 0 else -axes[:, 2]

    values = image[inner] @ main  # [N] position along the main axis, toward the shade
    gx, gy = pixel_grid(size)
    ux, uy = gx - x, gy - y  # offsets from the object's centre, image sides
    steps = np.arange(PHASE_STEPS) / PHASE_STEPS
    stripe_shifts = steps * PATTERN_PERIOD * np.sqrt(2.0)  # one stripe period along x
    stripes = max(
        _correlation(values, stripe_coverage(ux + d, uy, size)[inner]) for d in stripe_shifts
    )
    dot_shifts = steps[::2] * PATTERN_PERIOD  # a coarser grid in 2-D
    dots = max(
        _correlation(values, dot_coverage(ux + dx, uy + dy, size)[inner])
        for dx in dot_shifts
        for dy in dot_shifts
    )
    return {"std": std, "stripes": stripes, "dots": dots}


def read_texture(image: np.ndarray, mask: np.ndarray, color: str, x: float, y: float) -> str:
    """One of TEXTURES, from ``texture_features`` and the thresholds above."""
    f = texture_features(image, mask, color, x, y)
    if f["std"] < SOLID_STD:
        return "solid"
    if max(f["stripes"], f["dots"]) < PATTERN_MATCH:
        return "noisy"
    return "striped" if f["stripes"] >= f["dots"] else "dotted"


# ---------------------------------------------------------------------------------------------
# Public entry points


def check_image(image) -> dict[str, str | None]:
    """Read color, shape, texture, background and size from an RGB image of one scene.

    ``image``: uint8 or float in [0, 1], [H, W, 3] or [3, H, W], square. Attributes of an object
    that cannot be found (nothing stands out from the background) are None.
    """
    x = _as_float_hwc(image)
    if x.shape[0] != x.shape[1]:
        raise ValueError(f"expected a square image, got {x.shape[0]}x{x.shape[1]}")
    border = np.concatenate([x[0], x[-1], x[1:-1, 0], x[1:-1, -1]])  # [4H - 4, 3]
    background_rgb = np.median(border, axis=0)
    result: dict[str, str | None] = dict.fromkeys(ATTRIBUTES)
    result["background"] = _nearest_color(background_rgb)
    mask = object_mask(x, background_rgb)
    if mask.sum() < 4:
        return result
    color = read_color(x, mask)
    # segment again halfway between the background and the nearer of colour and pattern shade,
    # so blurred edges split where the generator's edge is (coverage 0.5), not in the halo
    contrast = min(
        np.linalg.norm(color_rgb(color) - background_rgb),
        np.linalg.norm(pattern_rgb(color) - background_rgb),
    )
    sharper = object_mask(x, background_rgb, max(SEGMENT_DISTANCE, 0.5 * contrast))
    if sharper.sum() >= 4:
        mask = sharper
    fit = read_shape(mask)
    result["color"] = color
    result["shape"] = fit.shape
    result["texture"] = read_texture(x, mask, color, fit.x, fit.y)
    result["size"] = min(SIZES, key=lambda s: abs(SIZES[s] - fit.half))
    return result


def score(expected: Scene, image) -> dict[str, bool]:
    """Per attribute (color, shape, texture, background, size): does ``image`` show ``expected``?"""
    got = check_image(image)
    return {key: got[key] == getattr(expected, key) for key in ATTRIBUTES}
