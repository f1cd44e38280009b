"""What vd-nano's training stages train on (``vdnodes.nano.training.data``): texts and the scenes they
describe, twins, edit cases, shape coverage and masks, and the UNet's object-weighted loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vdnodes.nano import scenes as sc
from vdnodes.nano.training.data import (
    EDITED, describe, edit_cases, fragment, latent_masks, matches, patch_coverage, restyle, twin)
from vdnodes.nano.training.unet_stage import object_weighted


def test_fragments_and_matches_say_which_scenes_a_text_describes():
    rng = np.random.default_rng(0)
    scenes = [sc.sample_scene(rng) for _ in range(40)]
    texts = [describe(s, rng, 0.5) for s in scenes] + [fragment(scenes[0], rng, require=("color",))]
    ok = matches([c for _, c in texts], scenes)
    assert ok[:40].diagonal().all()  # a text always describes its own scene
    assert texts[-1][1]["color"] == scenes[0].color and scenes[0].color in texts[-1][0]
    for (text, named), row in zip(texts, ok):
        parsed = sc.parse_caption(text)
        assert all(parsed[a] == v for a, v in named.items() if a in ("color", "shape", "background"))
        for s, hit in zip(scenes, row):  # a scene matches iff it has every named attribute
            assert bool(hit) == all(getattr(s, a) == v for a, v in named.items())


def test_twins_differ_from_their_scene_in_exactly_one_attribute():
    rng = np.random.default_rng(1)
    changed = []
    for _ in range(400):
        scene = sc.sample_scene(rng)
        other = twin(scene, rng)  # a valid Scene (it checks itself), so sizes keep it inside the image
        diff = [a for a in ("shape", "color", "background", "texture", "size") if getattr(scene, a) != getattr(other, a)]
        assert len(diff) == 1, (scene, other)
        assert (other.seed, other.template) == (scene.seed, scene.template)
        if diff != ["size"]:
            assert (other.x, other.y) == (scene.x, scene.y)
        changed += diff
    assert changed.count("shape") > 0.3 * len(changed)  # the attribute the towers see worst
    assert set(changed) == {"shape", "color", "background", "texture", "size"}


def test_optimus_edit_cases_change_one_word_of_the_same_caption():
    cases = edit_cases(np.random.default_rng(2), 300)
    changed = []
    for caption, removed, added, target, scene in zip(cases.captions, cases.removed, cases.added, cases.targets,
                                                     cases.edited):
        article = {"an": "a"}  # "a white" -> "an orange" is the only other change
        before, after = ([article.get(w, w) for w in text.split()] for text in (caption, target))
        diff = [(a, b) for a, b in zip(before, after) if a != b]
        assert len(before) == len(after) and diff == [(removed, added)], (caption, target)
        parsed = sc.parse_caption(target)
        attribute = "color" if added in sc.COLORS else "shape"
        assert parsed[attribute] == getattr(scene, attribute) == added
        assert added != scene.background  # a new colour never hides the object
        changed.append(attribute)
    assert set(changed) == set(EDITED) and 0.35 < changed.count("shape") / len(changed) < 0.65


def test_patch_coverage_finds_the_patches_under_the_shape():
    scene = sc.Scene(shape="square", color="red", background="blue", size="small", x=0.25, y=0.75)
    cover = patch_coverage([scene], patch=4).reshape(8, 8)  # rows are y, top first
    image = sc.render(scene, 32).astype(float)  # solid: blue + coverage * (red - blue), per pixel
    red, blue = np.array(sc.COLORS["red"], float), np.array(sc.COLORS["blue"], float)
    share = (image - blue) @ (red - blue) / ((red - blue) @ (red - blue))  # [32, 32]
    np.testing.assert_allclose(cover, share.reshape(8, 4, 8, 4).mean(axis=(1, 3)), atol=0.01)
    assert cover[6, 2] == 1.0 and cover[1, 6] == 0.0  # under the square; far away


def test_latent_masks_cover_the_shape_and_its_notches_on_the_latent_grid():
    cross = sc.Scene(shape="cross", color="red", background="blue", size="small", x=0.25, y=0.75)
    far = sc.Scene(shape="square", color="red", background="blue", size="small", x=0.75, y=0.25)
    masks = latent_masks([cross, far], side=8, device="cpu")
    assert masks.shape == (2, 1, 8, 8) and 0.0 <= masks.min() and masks.max() <= 1.0
    m = masks[0, 0]  # rows are y, top first: the cross sits bottom left
    assert m[6, 2] == 1.0 and m[1, 6] == 0.0
    assert m[:, 4:].sum() < m[:, :4].sum() / 10 and m[:4].sum() < m[4:].sum() / 10
    # Grown by 3 px, the mask covers more than the shape itself (its notches and rim).
    area = torch.from_numpy(sc.shape_coverage("cross", 0.25, 0.75, cross.half, 32)).mean() * 64
    assert m.sum() > 1.5 * area
    assert latent_masks([cross], side=8, device="cpu", grow_px=0)[0, 0].sum() == pytest.approx(float(area), rel=1e-5)


def test_object_weighted_loss_favours_errors_on_the_shape_but_keeps_the_scale():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 5:8, 1:4] = 1.0  # a small shape: 9 of 64 cells
    even = torch.full((1, 4, 8, 8), 0.3)
    assert object_weighted(even, mask, 1.0).item() == pytest.approx(0.3)  # flows stay balanced
    on, off = torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8)
    on[:, :, 6, 2], off[:, :, 0, 7] = 1.0, 1.0  # the same error, on the shape or far from it
    assert object_weighted(off, mask, 1.0).item() == pytest.approx(object_weighted(off, mask, 0.0).item() / 2)
    ratio = object_weighted(on, mask, 1.0) / object_weighted(off, mask, 1.0)
    assert ratio.item() == pytest.approx(1 + 64 / 9)  # (1/64 + 1/9) / (1/64)
    assert object_weighted(on, mask, 0.0).item() == pytest.approx(on.mean().item())


def test_restyled_twins_keep_the_geometry_and_redraw_the_style():
    rng = np.random.default_rng(0)
    scenes = [sc.sample_scene(rng) for _ in range(300)]
    twins = [restyle(s, rng) for s in scenes]
    for s, t in zip(scenes, twins):
        assert (t.shape, t.size, t.x, t.y) == (s.shape, s.size, s.x, s.y) and t.color != t.background
    # each style attribute is drawn afresh: it differs about as often as two random draws do
    for attribute, values in (("color", sc.COLORS), ("texture", sc.TEXTURES), ("background", sc.COLORS)):
        changed = np.mean([getattr(s, attribute) != getattr(t, attribute) for s, t in zip(scenes, twins)])
        assert changed == pytest.approx(1 - 1 / len(values), abs=0.1), attribute
