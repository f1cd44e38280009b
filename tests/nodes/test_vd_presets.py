"""graphs/vd/: one graph per tab of VD's demo (app.py at SHI-Labs/Versatile-Diffusion HEAD), set as the
demo runs them, each run end to end on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from vdnodes.core.executor import Executor
from vdnodes.core.graph import load_graph, set_param
from vdnodes.model.configs import tiny_config
from vdnodes.nodes import build_registry
from vdnodes.nodes.denoise import image_size
from vdnodes.nodes.models import ModelManager

ROOT = Path(__file__).resolve().parents[2]
PRESETS = sorted((ROOT / "graphs" / "vd").glob("*.json"))
TABS = {"text_to_image", "image_variation", "image_to_text", "text_variation", "dual_context",
        "triple_context", "multi_context"}
TINY_STEPS = 2  # the shipped 50 steps and 512 px are checked above; the runs use the tiny model's size


@pytest.fixture(scope="module")
def registry():
    return build_registry()


def nodes_of(graph, node_type):
    return {nid: spec for nid, spec in graph.nodes.items() if spec.type == node_type}


def test_one_graph_per_demo_tab():
    assert {p.stem for p in PRESETS} == TABS


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_is_set_as_vds_demo_runs_it(path, registry):
    graph = load_graph(path, registry)
    (sample,) = nodes_of(graph, "vd.denoise").values()
    p = sample.params
    assert (p["steps"], p["guidance"], p["eta"], p["sampler"]) == (50, 7.5, 0.0, "ddim")
    assert p["seed"] >= 100  # VD seeds torch with the demo's seed + 100
    text_out = p["output"] == "text"
    assert p["batch"] == (4 if text_out else 2)  # n_sample_text / n_sample_image
    if not text_out:
        assert (p["width"], p["height"]) == (512, 512)
    for spec in nodes_of(graph, "image.resize").values():  # squash to 512, bicubic
        assert (spec.params["width"], spec.params["height"], spec.params["mode"]) == (512, 512, "bicubic")
    for spec in nodes_of(graph, "vd.encode_image").values():
        assert spec.params["fit"] == "squash"
        assert spec.params["uncond"] == ("black" if text_out else "zeros")  # app.py lines 345, 396, 475, 562
    for spec in nodes_of(graph, "vd.decode_text").values():
        assert (spec.params["trim"], spec.params["dedupe"], spec.params["temperature"]) == ("vd", "v2", 1.0)
    if path.stem == "image_variation":
        assert sample.params["start_mode"] == "vd" and sample.params["strength"] == 1.0  # fidelity 0
        (colour,) = nodes_of(graph, "image.match_colors").values()
        assert colour.params["mode"] == "mean_std"
    if path.stem in ("triple_context", "multi_context"):
        masked = [s for s in nodes_of(graph, "vd.encode_image").values() if "mask" in s.inputs]
        assert len(masked) == 1  # one slot shows "Use mask?"


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_runs_on_the_tiny_model(path, registry, tmp_path):
    graph = load_graph(path, registry)
    set_param(graph, registry, "model.source", "tiny")
    for name in ("image_vae", "text_vae", "clip", "optimus_vocab"):
        set_param(graph, registry, f"model.{name}", "")
    set_param(graph, registry, "sample.steps", str(TINY_STEPS))
    size = image_size(tiny_config())  # 512 px takes minutes on the tiny model's CPU run
    for nid, spec in graph.nodes.items():
        if spec.type == "image.resize":
            set_param(graph, registry, f"{nid}.width", str(size))
            set_param(graph, registry, f"{nid}.height", str(size))
    if graph.nodes["sample"].params["output"] == "image":
        set_param(graph, registry, "sample.width", "0")
        set_param(graph, registry, "sample.height", "0")
    manager = ModelManager()
    ex = Executor(registry, out_dir=str(tmp_path), services={"models": manager, "manifest": manager.manifest})
    result = ex.run(graph)
    assert result.status == "ok"
    assert set(result.executed) == set(graph.nodes)
    written = sorted(tmp_path.iterdir())
    expected = ".txt" if path.stem in ("image_to_text", "text_variation") else ".png"
    assert written and all(f.suffix == expected for f in written)
