"""Every example graph runs end to end; seeds, cache reuse and PNG reproduction behave."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vdnodes.core.errors import NodeError
from vdnodes.core.executor import Executor
from vdnodes.core.graph import load_graph, set_param
from vdnodes.nodes import build_registry_with_plugins
from vdnodes.nodes.models import ModelManager

from tests.plugins.support import skip_if_plugin_missing

ROOT = Path(__file__).resolve().parents[2]
GRAPHS = sorted((ROOT / "graphs").glob("*.json"))
FEATURES = ["text_to_image", "image_to_text", "image_variation", "text_variation", "dual_guided",
            "disentangle", "i2t2i_edit", "blend"]
FAST_STEPS = 4  # in-process runs override 'steps' to keep the suite fast; the CLI test runs as shipped


@pytest.fixture(scope="module")
def registry():
    """The core nodes plus the installed plugins: graphs/ also holds the example plugins' graphs."""
    return build_registry_with_plugins()[0]


@pytest.fixture(scope="module")
def manager():
    return ModelManager()


def executor(registry, manager, out_dir) -> Executor:
    return Executor(registry, out_dir=str(out_dir),
                    services={"models": manager, "manifest": manager.manifest})


def fast(graph, registry):
    for nid, spec in graph.nodes.items():
        if spec.type == "vd.denoise":
            set_param(graph, registry, f"{nid}.steps", str(FAST_STEPS))
    return graph


def test_every_feature_has_a_graph():
    names = {p.stem for p in GRAPHS}
    assert set(FEATURES) <= names


@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.stem)
def test_graph_runs_end_to_end(path, registry, manager, tmp_path):
    skip_if_plugin_missing(path, registry)
    graph = fast(load_graph(path, registry), registry)
    result = executor(registry, manager, tmp_path).run(graph)
    assert result.status == "ok"
    assert set(result.executed) == set(graph.nodes)  # every node of every example is used
    written = sorted(tmp_path.iterdir())
    assert written, "the graph saved nothing"
    for f in written:
        if f.suffix == ".png":
            from PIL import Image

            with Image.open(f) as im:
                assert im.mode == "RGB" and min(im.size) >= 16
                assert "vdnodes.graph" in im.info and "vdnodes.manifest" in im.info
        else:
            # a caption may decode empty on vd-nano (eval-nano measures their quality); the file must exist
            assert f.suffix == ".txt" and f.read_text().endswith("\n")


def test_changing_only_the_seed_reruns_sampling_and_decoding_only(registry, manager, tmp_path):
    graph = fast(load_graph(ROOT / "graphs" / "dual_guided.json", registry), registry)
    ex = executor(registry, manager, tmp_path)
    first = ex.run(graph)
    set_param(graph, registry, "sample.seed", "2")
    second = ex.run(graph)
    assert sorted(second.executed) == ["decode", "sample", "save"]
    assert {"image_context", "text_context"} <= set(second.cached)
    from PIL import Image

    def pixels(result):
        (path,) = result.outputs["image"]
        with Image.open(path) as im:
            return im.tobytes()

    assert pixels(first) != pixels(second), "a new seed must give a new image"
    set_param(graph, registry, "sample.seed", "1")
    third = ex.run(graph)
    assert third.executed == ["save"]  # back to the first seed: everything cached
    assert pixels(third) == pixels(first)


def test_i2t2i_add_input_edits_the_latent_and_the_text_context_together(registry, manager, tmp_path):
    # VD's I2T2I uses one added phrase twice: in the Optimus latent and in the new image's CLIP
    # text context. The graph's 'add' input must reach both, and a second source must be refused.
    graph = fast(load_graph(ROOT / "graphs" / "i2t2i_edit.json", registry), registry)
    ex = executor(registry, manager, tmp_path)
    first = ex.run(graph)
    assert first.status == "ok"
    set_param(graph, registry, "add", "yellow")
    second = ex.run(graph)
    assert second.status == "ok"
    assert {"edit", "added_context", "sentence", "sample"} <= set(second.executed)
    assert {"caption_latent", "layout"} <= set(second.cached)  # the image side is untouched
    set_param(graph, registry, "edit.add", "purple")
    with pytest.raises(NodeError, match="both from the 'add' parameter"):
        ex.run(graph)


def test_flow_aware_loading_reads_only_what_text_to_image_needs(registry, tmp_path):
    import torch

    from vdnodes.model import vd
    from vdnodes.model.configs import tiny_config

    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    vd.save_vd(vd.build(tiny_config()), path)
    graph = load_graph(ROOT / "graphs" / "text_to_image.json", registry)
    set_param(graph, registry, "model.source", str(path))
    fast(graph, registry)
    manager = ModelManager()
    executor(registry, manager, tmp_path / "out").run(graph)
    (loaded,) = manager.loaded().values()
    assert loaded == {"clip_text", "unet.time", "unet.data.image", "unet.context.text", "vae_image.decoder"}


def vdnodes_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "vdnodes", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_run_as_shipped_and_png_reproduces_bit_for_bit(tmp_path):
    first = vdnodes_cli("run", "graphs/text_to_image.json", "--out", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    png = tmp_path / "a" / "text_to_image_00001.png"
    from PIL import Image

    manifest = json.loads(Image.open(png).info["vdnodes.manifest"])
    assert manifest["nodes"]["sample"] == {"type": "vd.denoise", "version": "1.1.0"}
    assert manifest["models"][0]["weights"] and manifest["device"] == "cpu" and manifest["torch"]
    again = vdnodes_cli("run", str(png), "--out", str(tmp_path / "b"))
    assert again.returncode == 0, again.stderr
    with Image.open(png) as a, Image.open(tmp_path / "b" / "text_to_image_00001.png") as b:
        assert a.tobytes() == b.tobytes()
