"""The rule-based image checker: accuracy on generated scenes, robustness, and its API."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from vdnodes.nano.checker import ATTRIBUTES, check_image, degrade, score
from vdnodes.nano.scenes import COLORS, SHAPES, TEXTURES, Scene, make_batch, render, sample_scene


def _accuracy(n: int, size: int, seed: int, blur: float = 0.0, noise: float = 0.0):
    """Fraction of ``n`` random scenes whose attributes the checker reads back, per attribute."""
    rng = np.random.default_rng(seed)
    hits: Counter[str] = Counter()
    for i in range(n):
        scene = sample_scene(rng)
        image = render(scene, size)
        if blur or noise:
            image = degrade(image, blur, noise, seed=i)
        hits.update(key for key, ok in score(scene, image).items() if ok)
    return {key: hits[key] / n for key in ATTRIBUTES}


def test_reads_clean_64px_scenes():
    accuracy = _accuracy(250, 64, seed=11)
    assert min(accuracy.values()) >= 0.98, accuracy


def test_reads_clean_32px_scenes():
    accuracy = _accuracy(300, 32, seed=12)
    assert min(accuracy.values()) >= 0.95, accuracy


@pytest.mark.parametrize("size", [64, 32])
def test_colour_and_shape_survive_blur_and_noise(size):
    accuracy = _accuracy(150, size, seed=13, blur=0.7, noise=0.03)
    assert accuracy["color"] >= 0.90 and accuracy["shape"] >= 0.90, accuracy
    assert accuracy["background"] >= 0.98, accuracy


def test_every_colour_shape_and_texture_is_read_back():
    colors = list(COLORS)
    for i, color in enumerate(colors):
        background = colors[(i + 3) % len(colors)]
        for shape in SHAPES:
            for texture in TEXTURES:
                scene = Scene(shape, color, background, texture, "medium", x=0.47, y=0.52)
                got = check_image(render(scene, 64))
                assert got == {"color": color, "shape": shape, "texture": texture,
                               "background": background, "size": "medium"}, scene  # fmt: skip


def test_accepts_float_chw_batches_and_torch_tensors():
    images, _, scenes = make_batch(3, seed=5, size=64)
    for image, scene in zip(images, scenes):
        assert check_image(image) == check_image(render(scene, 64))
    torch = pytest.importorskip("torch")
    assert check_image(torch.from_numpy(images[0])) == check_image(images[0])


def test_blank_image_reports_background_only():
    blank = np.broadcast_to(np.array(COLORS["green"], dtype=np.uint8), (32, 32, 3))
    assert check_image(blank) == {"color": None, "shape": None, "texture": None,
                                  "background": "green", "size": None}  # fmt: skip


def test_score_flags_only_the_wrong_attributes():
    scene = Scene("triangle", "blue", "white", "dotted", "large")
    image = render(scene, 64)
    assert all(score(scene, image).values())
    wrong = replace(scene, color="red", shape="circle")
    assert score(wrong, image) == {"color": False, "shape": False, "texture": True,
                                   "background": True, "size": True}  # fmt: skip


def test_degrade_is_seeded_and_identity_without_blur_or_noise():
    image = render(Scene("cross", "yellow", "purple", "striped"), 32)
    np.testing.assert_array_equal(degrade(image, 0.0, 0.0), image)
    changed = degrade(image, 0.7, 0.03, seed=1)
    np.testing.assert_array_equal(changed, degrade(image, 0.7, 0.03, seed=1))
    assert changed.dtype == np.uint8 and 1.0 < np.abs(changed.astype(int) - image).mean() < 20.0


@pytest.mark.parametrize("shape", [(32, 32), (32, 32, 4), (32, 48, 3)])
def test_rejects_images_that_are_not_square_rgb(shape):
    with pytest.raises(ValueError, match="expected"):
        check_image(np.zeros(shape, dtype=np.uint8))
