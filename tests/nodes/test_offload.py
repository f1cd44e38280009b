"""Model offload: a graph gives the same pixels with only the groups in use resident, within the budget.

On a CPU device the offloader parks evicted groups on ``meta`` (vdnodes/model/offload.py), so a node
that used a group without asking the handle for it would fail here instead of quietly reading the
host copy. What a GPU adds (copy time, device peak memory) is measured by benchmarks/gpu.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vdnodes.core.executor import Executor
from vdnodes.core.graph import load_graph, set_param
from vdnodes.nodes import build_registry
from vdnodes.nodes.models import ModelManager, ModelSpec

ROOT = Path(__file__).resolve().parents[2]
UNET_STEP = ("unet.time", "unet.data.image", "unet.context.image", "unet.context.text")


@pytest.fixture(scope="module")
def registry():
    return build_registry()


def _run(registry, manager, tmp_path, offload_gb: float) -> bytes:
    graph = load_graph(ROOT / "graphs" / "dual_guided.json", registry)
    set_param(graph, registry, "model.source", "tiny")
    set_param(graph, registry, "model.offload_gb", repr(offload_gb))
    set_param(graph, registry, "sample.steps", "3")
    out = tmp_path / f"out{offload_gb}"
    result = Executor(registry, out_dir=str(out), services={"models": manager}).run(graph)
    assert result.status == "ok", result
    from PIL import Image

    (path,) = result.outputs["image"]
    with Image.open(path) as im:
        return im.tobytes()


def _component_bytes() -> dict[str, int]:
    model = ModelManager().ensure(ModelSpec("tiny", "float32", "cpu"), {"unet.time"})
    counts = model.parameter_counts()
    return {k: 4 * n for k, n in counts.items() if k != "total"}


def test_offload_gives_the_same_image_with_only_the_flows_groups_resident(registry, tmp_path):
    sizes = _component_bytes()
    budget = sum(sizes[c] for c in UNET_STEP)  # the UNet step fits, CLIP and the VAE must make room
    assert budget < sum(sizes[c] for c in (*UNET_STEP, "clip_text", "clip_image", "vae_image.decoder"))
    plain = _run(registry, ModelManager(), tmp_path, 0.0)
    manager = ModelManager()
    offloaded = _run(registry, manager, tmp_path, budget / 1e9)
    assert offloaded == plain

    (spec,) = manager.loaded()
    report = manager.offload_report(spec)
    assert report["peak_resident_bytes"] <= report["budget_bytes"] == budget
    assert "vae_image.decoder" in report["resident"]  # the last node's group stays
    assert set(report["ever_resident"]) == {*UNET_STEP, "clip_text", "clip_image", "vae_image.decoder"}
    # CLIP was evicted to make room for the UNet: parked on meta, its host copy kept
    model = manager.ensure(spec, {"unet.time"})
    evicted = [c for c in ("clip_text", "clip_image") if c not in report["resident"]]
    assert evicted
    for c in evicted:
        assert all(p.device.type == "meta" for p in getattr(model, c).parameters())
    assert report["moves"] >= len(report["ever_resident"])


def test_no_offload_keeps_every_group_in_place(registry, tmp_path):
    manager = ModelManager()
    _run(registry, manager, tmp_path, 0.0)
    (spec,) = manager.loaded()
    assert manager.offload_report(spec) is None
    model = manager.ensure(spec, {"unet.time"})
    assert all(p.device == torch.device("cpu") for p in model.parameters())


def test_groups_survive_repeated_eviction_and_reload():
    from vdnodes.model.conditioning import ContextInput
    from vdnodes.model.offload import GroupOffload

    manager = ModelManager()
    model = manager.ensure(ModelSpec("tiny", "float32", "cpu", seed=3), {"unet.time"})
    unet = model.unet
    x = torch.randn(2, unet.config.image_channels, 16, 16, generator=torch.Generator().manual_seed(0))
    tokens = torch.randn(2, 5, unet.config.context_dim, generator=torch.Generator().manual_seed(1))

    def step(modality: str) -> torch.Tensor:
        with torch.inference_mode():
            return unet(x, 500, "image", [ContextInput(tokens, modality)])

    expected = {m: step(m) for m in ("text", "image")}
    sizes = {k: 4 * n for k, n in model.parameter_counts().items()}
    offload = GroupOffload(model, "cpu", sizes["unet.time"] + sizes["unet.data.image"] + sizes["unet.context.text"])
    for _ in range(2):  # each switch evicts the other context group: three load/evict cycles
        for m in ("text", "image"):
            offload.use(["unet.time", "unet.data.image", f"unet.context.{m}"])
            assert torch.equal(step(m), expected[m])
            other = "image" if m == "text" else "text"
            assert all(p.device.type == "meta" for p in unet.context[other].parameters())
            with pytest.raises(Exception):
                step(other)  # an evicted group cannot run by accident
    assert offload.peak_resident_bytes <= offload.budget_bytes
