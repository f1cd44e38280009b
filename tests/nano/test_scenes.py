"""The vd-nano scene generator: determinism, drawing, captions and the caption parser."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from vdnodes.nano.scenes import (
    COLORS,
    SHAPES,
    SIZES,
    TEMPLATES,
    TEXTURES,
    Scene,
    color_rgb,
    make_batch,
    parse_caption,
    position_range,
    render,
    sample_scene,
    score_caption,
    to_torch,
)


def _every_scene() -> list[Scene]:
    """Each colour, shape, texture and size at least once, each with a different background."""
    colors = list(COLORS)
    scenes = []
    for i, (color, shape, texture) in enumerate(
        (c, s, t) for c in colors for s in SHAPES for t in TEXTURES
    ):
        background = colors[(colors.index(color) + 1 + i % 3) % len(colors)]
        size = tuple(SIZES)[i % len(SIZES)]
        scenes.append(Scene(shape, color, background, texture, size, template=i % len(TEMPLATES)))
    return scenes


# --- batches and determinism -----------------------------------------------------------------


def test_make_batch_is_deterministic_given_the_seed():
    a_images, a_captions, a_scenes = make_batch(24, seed=3, size=32)
    b_images, b_captions, b_scenes = make_batch(24, seed=3, size=32)
    c_images, _, _ = make_batch(24, seed=4, size=32)
    np.testing.assert_array_equal(a_images, b_images)
    assert a_captions == b_captions and a_scenes == b_scenes
    assert not np.array_equal(a_images, c_images)


def test_make_batch_shapes_dtype_and_range():
    images, captions, scenes = make_batch(5, seed=0, size=48)
    assert images.shape == (5, 3, 48, 48) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert captions == [s.caption() for s in scenes]
    np.testing.assert_allclose(images[2], render(scenes[2], 48).transpose(2, 0, 1) / 255.0)


def test_to_torch_keeps_the_values():
    torch = pytest.importorskip("torch")
    images, _, _ = make_batch(2, seed=1, size=32)
    tensor = to_torch(images)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(tensor.numpy(), images)


def test_sample_scene_covers_the_vocabulary_and_keeps_background_distinct():
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng) for _ in range(400)]
    assert {s.shape for s in scenes} == set(SHAPES)
    assert {s.color for s in scenes} == set(COLORS)
    assert {s.background for s in scenes} == set(COLORS)
    assert {s.texture for s in scenes} == set(TEXTURES)
    assert {s.size for s in scenes} == set(SIZES)
    assert {s.template for s in scenes} == set(range(len(TEMPLATES)))
    assert all(s.background != s.color for s in scenes)


# --- drawing ---------------------------------------------------------------------------------


def test_render_paints_the_shape_in_its_colour_on_the_background():
    scene = Scene("square", "red", "blue", "solid", "large", x=0.5, y=0.5)
    image = render(scene, 64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[32, 32], COLORS["red"])
    np.testing.assert_array_equal(image[1, 1], COLORS["blue"])
    np.testing.assert_array_equal(image[:2].reshape(-1, 3), np.tile(COLORS["blue"], (128, 1)))
    # a large square spans 2 * 0.28 of the side: about 36 of 64 columns are red on the centre row
    red_columns = (image[32] == COLORS["red"]).all(axis=-1).sum()
    assert 34 <= red_columns <= 36


@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_fill_their_box_as_drawn(shape):
    """Area of the drawn shape against its geometry (fraction of its bounding square)."""
    expected = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5, "diamond": 0.5,
                "cross": 1 - 4 * (1 - 1 / 3) ** 2 / 4}[shape]  # fmt: skip
    scene = Scene(shape, "white", "black", "solid", "large", x=0.5, y=0.5)
    image = render(scene, 128).astype(np.float64) / 255.0
    coverage = (image.mean(axis=-1) - color_rgb("black").mean()) / (
        color_rgb("white").mean() - color_rgb("black").mean()
    )
    box = (2 * SIZES["large"] * 128) ** 2
    assert coverage.sum() / box == pytest.approx(expected, abs=0.01)


def test_textures_change_only_pixels_inside_the_shape():
    base = Scene("circle", "green", "purple", "solid", "medium", x=0.45, y=0.55)
    solid = render(base, 64)
    outside = (solid == COLORS["purple"]).all(axis=-1)
    assert outside.sum() > 0.5 * 64 * 64
    for texture in ("striped", "dotted", "noisy"):
        textured = render(replace(base, texture=texture), 64)
        np.testing.assert_array_equal(textured[outside], solid[outside])
        assert (textured[~outside] != solid[~outside]).any(axis=-1).mean() > 0.2, texture


def test_noise_follows_the_scene_seed():
    scene = Scene("square", "yellow", "black", "noisy", "large", seed=7)
    np.testing.assert_array_equal(render(scene, 32), render(scene, 32))
    assert not np.array_equal(render(scene, 32), render(replace(scene, seed=8), 32))


def test_every_scene_keeps_inside_the_image_with_a_margin():
    for size in SIZES:
        lo, hi = position_range(size)
        for x, y in ((lo, lo), (hi, hi)):
            image = render(Scene("square", "white", "black", "solid", size, x=x, y=y), 32)
            border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
            assert (border == COLORS["black"]).all()


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"color": "teal"}, "unknown color 'teal'"),
        ({"shape": "hexagon"}, "unknown shape"),
        ({"texture": "wavy"}, "unknown texture"),
        ({"size": "giant"}, "unknown size"),
        ({"background": "red"}, "background must differ"),
        ({"x": 0.05}, "centre must lie in"),
        ({"template": len(TEMPLATES)}, "template must be in"),
    ],
)
def test_scene_rejects_bad_values_with_a_message(fields, words):
    kwargs = {"shape": "circle", "color": "red", "background": "blue"} | fields
    with pytest.raises(ValueError, match=words):
        Scene(**kwargs)


def test_render_rejects_a_tiny_or_odd_size():
    scene = Scene("circle", "red", "blue")
    for size in (8, 32.0):
        with pytest.raises(ValueError, match="size must be an integer"):
            render(scene, size)


# --- captions and parsing --------------------------------------------------------------------


def test_every_template_names_colour_shape_and_background():
    scene = Scene("diamond", "purple", "yellow", "dotted", "small")
    for t in range(len(TEMPLATES)):
        words = scene.caption(t).split()
        assert {"purple", "diamond", "yellow"} <= set(words), scene.caption(t)


def test_solid_objects_have_no_texture_word_and_articles_agree():
    scene = Scene("circle", "orange", "white", "solid", "medium")
    assert scene.caption(0) == "an orange circle on a white background"
    assert scene.caption(2) == "an orange circle on a white background"
    assert scene.caption(1) == "a medium orange circle on white"


def test_caption_parse_round_trip_for_every_template():
    for scene in _every_scene():
        for t in range(len(TEMPLATES)):
            got = parse_caption(scene.caption(t))
            assert got["color"] == scene.color, scene.caption(t)
            assert got["shape"] == scene.shape, scene.caption(t)
            assert got["background"] == scene.background, scene.caption(t)
            assert (got["texture"] or "solid") == scene.texture, scene.caption(t)
            assert got["size"] in (None, scene.size), scene.caption(t)
            assert all(score_caption(scene, scene.caption(t)).values())


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a a red red triangle on blue background", ("red", "triangle", None, "blue")),
        ("A RED Triangle, on a BLUE background!!", ("red", "triangle", None, "blue")),
        ("blue background blue with a red triangle", ("red", "triangle", None, "blue")),
        ("triangle red on blue", ("red", "triangle", None, "blue")),
        ("an orange orange circles with dots dots on on a white background background",
         ("orange", "circle", "dotted", "white")),
        ("a big grainy violet plus against the black backdrop",
         ("purple", "cross", "noisy", "black")),
        ("striped striped square yellow yellow", ("yellow", "square", "striped", None)),
        ("a diamond on a green background", (None, "diamond", None, "green")),
        ("", (None, None, None, None)),
    ],
)  # fmt: skip
def test_parse_caption_on_messy_text(text, expected):
    got = parse_caption(text)
    assert (got["color"], got["shape"], got["texture"], got["background"]) == expected


def test_score_caption_flags_each_wrong_attribute():
    scene = Scene("cross", "green", "white", "striped")
    assert score_caption(scene, "a green cross with stripes on white") == dict.fromkeys(
        ("color", "shape", "texture", "background"), True
    )
    got = score_caption(scene, "a red cross on a black background")
    assert got == {"color": False, "shape": True, "texture": False, "background": False}
