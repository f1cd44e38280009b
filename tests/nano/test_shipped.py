"""The shipped vd-nano weights: present, small, loaded by default, and semantically right.

The semantic check is a regression guard for the model code: 20 held-out prompts through
text->image and 20 images through image->text, scored by the rule-based checker. The
shipped model scores far above the bounds here (docs/nano.md has the 200-case numbers), so
a broken attention, scale or tokenizer shows up as a failure, not as noise.
"""

from __future__ import annotations

import pytest

from vdnodes.nano.weights import NANO_WEIGHTS, training_record

pytestmark = pytest.mark.skipif(not NANO_WEIGHTS.is_file(), reason="vd-nano weights not installed")


@pytest.fixture(scope="module")
def nano():
    from vdnodes.nano.weights import load_nano

    return load_nano()


def test_weights_are_fp16_and_within_the_40_mb_budget():
    from safetensors import safe_open

    assert NANO_WEIGHTS.stat().st_size <= 40e6
    with safe_open(str(NANO_WEIGHTS), framework="pt") as f:
        dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}
    assert dtypes <= {"F16", "I64"}, dtypes
    record = training_record()
    assert record["budget"] == "full" and record["seed"] == 0


def test_graphs_use_nano_by_default():
    from vdnodes.nodes import build_registry

    assert build_registry().get("vd.load_model").params["source"].default == "nano"


def test_text_to_image_draws_the_prompt(nano):
    from vdnodes.nano.quality import Settings, measure

    rates = measure(nano, 20, seed=77, settings=Settings(steps=25), flows=["t2i"])
    assert rates["t2i_color"] >= SEMANTIC_MIN["t2i_color"], rates
    assert rates["t2i_shape"] >= SEMANTIC_MIN["t2i_shape"], rates


def test_image_to_text_names_colour_and_shape(nano):
    from vdnodes.nano.quality import Settings, measure

    rates = measure(nano, 20, seed=77, settings=Settings(steps=25), flows=["i2t"])
    assert rates["i2t_color_shape"] >= SEMANTIC_MIN["i2t_color_shape"], rates


SEMANTIC_MIN = {"t2i_color": 0.8, "t2i_shape": 0.8, "i2t_color_shape": 0.8}
