"""The byte-budgeted cache: accounting, eviction order, device -> CPU -> drop."""

from __future__ import annotations

import numpy as np
import torch

from vdnodes.core.cache import TensorCache, nbytes


def test_counts_bytes_per_device_for_tensors_modules_and_containers():
    c = TensorCache()
    c.put("t", torch.zeros(1000, dtype=torch.float32))
    c.put("m", torch.nn.Linear(10, 10))  # 110 params
    c.put("l", [np.zeros(100, dtype=np.uint8), "abc"])
    assert c.bytes_by_device() == {"cpu": 4000 + 440 + 64 + 100 + 3}
    assert nbytes({"x": torch.zeros(2, 2)}) == 64 + 16


def test_evicts_cheapest_per_byte_first_then_lru():
    c = TensorCache(budgets={"cpu": 2500})
    c.put("cheap", np.zeros(1000, np.uint8), cost=0.001)
    c.put("dear", np.zeros(1000, np.uint8), cost=5.0)
    c.put("new", np.zeros(1000, np.uint8), cost=0.01)
    assert "cheap" not in c and "dear" in c and "new" in c
    assert c.stats.dropped == 1


class FakeAccelTensor:
    """Stands in for a CUDA tensor: reports device 'cuda' until moved."""

    def __init__(self, n: int, device: str = "cuda") -> None:
        self.n, self.device = n, torch.device(device) if device == "cpu" else type("D", (), {"type": device})()

    def element_size(self):
        return 1

    def nelement(self):
        return self.n

    def to(self, device):
        return FakeAccelTensor(self.n, device)


def test_accelerator_entries_move_to_cpu_before_being_dropped():
    c = TensorCache(budgets={"cuda": 1500, "cpu": 1500})
    c.put("a", FakeAccelTensor(1000), cost=1.0)
    c.put("b", FakeAccelTensor(1000), cost=2.0)
    assert c.bytes_by_device() == {"cuda": 1000, "cpu": 1000}
    assert c.stats.moved_to_cpu == 1 and "a" in c
    c.put("c", FakeAccelTensor(1000), cost=3.0)  # b moves, cpu overflows, a (cheapest) drops
    assert "a" not in c and c.bytes_by_device() == {"cuda": 1000, "cpu": 1000}


def test_get_refreshes_recency():
    c = TensorCache(budgets={"cpu": 2500})
    c.put("x", np.zeros(1000, np.uint8))
    c.put("y", np.zeros(1000, np.uint8))
    c.get("x")
    c.put("z", np.zeros(1000, np.uint8))
    assert "x" in c and "y" not in c
