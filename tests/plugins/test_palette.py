"""The palette modality plugin (plugins/palette), installed as users get it.

What a user relies on: the plugin registers its type, modality, UNet layer group and nodes;
colours parse (names and #rrggbb) with clear errors; a palette read from an image is the
scene's; the palette layers join vd-nano's UNet through the model manager (no patching)
and the example graph runs from the command line. How well the palette steers colours is
measured by ``python -m vdnodes_palette.evaluate`` (docs/plugins.md), and checked loosely
here on the shipped weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

from vdnodes.core.errors import NodeInputError

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    "palette" not in {ep.name for ep in entry_points(group="vdnodes.plugins")},
    reason="the palette plugin is not installed (make install-dev)")


@pytest.fixture(scope="module")
def registry():
    from vdnodes.nodes import build_registry_with_plugins

    registry, report = build_registry_with_plugins(allow=("palette",))
    return registry


def test_the_plugin_adds_its_type_modality_layers_and_nodes(registry):
    assert {"palette.colors", "palette.from_image", "palette.encode"} <= set(registry.ids())
    assert registry.owner("palette.encode") == "palette"
    assert "palette" in registry.types.modalities and "Palette" in registry.types.defs
    assert "unet.context.palette" in registry.model_groups


def test_colours_parse_and_bad_ones_are_explained():
    from vdnodes_palette.nodes import parse_color

    assert parse_color("red", "object") == pytest.approx((220 / 255, 40 / 255, 40 / 255))
    assert parse_color("#FF8000", "object") == pytest.approx((1.0, 128 / 255, 0.0))
    assert parse_color("  ", "background") is None
    with pytest.raises(NodeInputError, match="not a colour") as e:
        parse_color("reddish", "object")
    assert "#rrggbb" in e.value.hint


def test_palette_from_image_reads_the_scene():
    import torch

    from vdnodes.nano import scenes as sc
    from vdnodes_palette.nodes import palette_from_image

    scene = sc.Scene("square", "yellow", "purple", size="large")
    image = torch.from_numpy(sc.render(scene, 32).transpose(2, 0, 1) / 255.0).float()[None]
    palette = palette_from_image.fn(None, image)
    assert np.allclose(palette.object, sc.color_rgb("yellow"), atol=0.02)
    assert np.allclose(palette.background, sc.color_rgb("purple"), atol=0.02)


def test_palette_layers_join_the_unet_through_the_model_manager(registry):
    from vdnodes.nano.weights import NANO_WEIGHTS
    from vdnodes.nodes.models import ModelManager, ModelSpec

    if not NANO_WEIGHTS.is_file():
        pytest.skip("vd-nano weights not installed")
    manager = ModelManager()
    spec = ModelSpec("nano", "float32", "cpu")
    model = manager.ensure(spec, {"unet.data.image", "unet.context.palette"}, registry.model_groups)
    assert set(model.unet.context) == {"palette"}  # text/image context layers were not needed
    assert "unet.context.palette" in manager.loaded()[spec]
    with pytest.raises(ValueError, match="no plugin adds them"):
        manager.ensure(spec, {"unet.context.smell"}, registry.model_groups)


def test_palette_layers_trained_on_other_weights_are_flagged(registry, monkeypatch):
    import vdnodes_palette.model as palette_model
    from vdnodes.nano.weights import NANO_WEIGHTS
    from vdnodes.nodes.models import ModelManager, ModelSpec, VDHandle
    from vdnodes_palette.nodes import Palette, palette_encode

    if not NANO_WEIGHTS.is_file():
        pytest.skip("vd-nano weights not installed")

    class Ctx:
        def __init__(self):
            self.warnings = []

        def warn(self, message):
            self.warnings.append(message)

    model = VDHandle(ModelSpec("nano", "float32", "cpu"), ModelManager(), registry.model_groups)
    palette = Palette((1.0, 0.0, 0.0), (0.0, 0.0, 1.0))
    shipped = Ctx()
    palette_encode.fn(shipped, model, palette, 1)
    assert shipped.warnings == []  # the shipped palette was trained on the shipped vd-nano
    monkeypatch.setattr(palette_model, "record", lambda path=palette_model.WEIGHTS: {"base_sha256": "ab" * 32})
    other = Ctx()
    out = palette_encode.fn(other, model, palette, 1)
    assert out.parts[0].tokens.shape == (1, 2, 64)  # still runs
    (warning,) = other.warnings
    assert "trained on another vd-nano (sha256 abababababab" in warning
    assert "python -m vdnodes_palette.train --install" in warning


def test_the_example_graph_runs_from_the_command_line(tmp_path):
    from vdnodes.nano.weights import NANO_WEIGHTS

    if not NANO_WEIGHTS.is_file():
        pytest.skip("vd-nano weights not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDNODES_")}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "vdnodes", "run", str(ROOT / "graphs" / "palette.json"),
                           "--out", str(tmp_path), "--set", "sample.steps=10"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (png,) = tmp_path.glob("palette_*.png")
    from PIL import Image

    from vdnodes.nano.checker import check_image

    with Image.open(png) as im:
        got = check_image(np.asarray(im.convert("RGB")))
    assert got["color"] == "red" and got["background"] == "blue", got


def test_the_evaluation_mixes_palette_and_text_as_the_example_graph_does():
    # docs/plugins.md reports the evaluation's text + palette rate as the example graph's.
    import json

    from vdnodes_palette.evaluate import GRAPH_SHARE

    graph = json.loads((ROOT / "graphs" / "palette.json").read_text())
    sample = graph["nodes"]["sample"]
    assert sample["inputs"]["context2"][0] == "palette_context"
    assert sample["params"]["mix"] == GRAPH_SHARE


def test_evaluate_rejects_a_share_outside_0_1(capsys):
    from vdnodes_palette.evaluate import main

    with pytest.raises(SystemExit) as exc:
        main(["--share", "1.5"])
    assert exc.value.code == 2
    assert "--share must be between 0 and 1" in capsys.readouterr().err


def test_training_refuses_a_checkpoint_made_against_other_vd_nano_weights(tmp_path):
    # A finished run resumed after vd-nano was retrained would install stale layers under the
    # new file's sha256, and palette.encode's warning would never fire.
    import json

    from vdnodes_palette.train import train

    (tmp_path / "checkpoint.safetensors").write_bytes(b"")
    (tmp_path / "checkpoint.json").write_text(json.dumps(
        {"steps": 4, "seed": 0, "step": 4, "losses": [], "seconds": 0.0, "base_sha256": "0" * 64}))
    with pytest.raises(SystemExit, match="other vd-nano weights"):
        train(tmp_path, steps=4, progress=False, pool_size=8)
    assert not (tmp_path / "palette-nano.safetensors").exists()
