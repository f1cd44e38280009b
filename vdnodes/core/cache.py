"""A content-addressed value cache that counts bytes per device.

It maps keys (see ``keys.py``) to values and knows nothing about graphs.
Values stay on the device that made them. When a device goes over its byte
budget, entries are evicted cheapest-to-recompute-per-byte first (least
recently used breaks ties): an accelerator entry is first moved to the CPU,
a CPU entry is dropped. Tensors are recognised by duck typing; no torch import.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Mover = Callable[[Any], Any]


def device_of(value: Any) -> str:
    """The device type holding ``value``: "cpu", "cuda", "mps"...; the first non-CPU one wins."""
    found = "cpu"
    for dev in _devices(value):
        if dev != "cpu":
            return dev
    return found


def _devices(value: Any):
    dev = getattr(value, "device", None)
    if dev is not None and hasattr(value, "element_size"):
        yield getattr(dev, "type", str(dev)).split(":")[0]
    elif callable(getattr(value, "parameters", None)):
        for p in value.parameters():
            yield p.device.type
            break
    elif isinstance(value, dict):
        for v in value.values():
            yield from _devices(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _devices(v)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _devices(getattr(value, f.name))


def nbytes(value: Any, _seen: set[int] | None = None) -> int:
    """Approximate memory held by ``value`` (tensors, modules, arrays, images, containers)."""
    seen = _seen if _seen is not None else set()
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if hasattr(value, "element_size") and hasattr(value, "nelement"):
        return int(value.element_size() * value.nelement())
    if callable(getattr(value, "parameters", None)) and callable(getattr(value, "buffers", None)):
        return sum(nbytes(t, seen) for t in itertools.chain(value.parameters(), value.buffers()))
    if hasattr(value, "nbytes") and isinstance(getattr(value, "nbytes"), int):
        return int(value.nbytes)
    if hasattr(value, "size") and hasattr(value, "getbands"):  # PIL image
        w, h = value.size
        return w * h * len(value.getbands())
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, dict):
        return 64 + sum(nbytes(v, seen) for v in value.values())
    if isinstance(value, (list, tuple)):
        return 64 + sum(nbytes(v, seen) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return 64 + sum(nbytes(getattr(value, f.name), seen) for f in dataclasses.fields(value))
    return 64


def move_to_cpu(value: Any) -> Any:
    """The same value with every tensor (and module) on the CPU."""
    if hasattr(value, "element_size") and hasattr(value, "to"):
        return value.to("cpu")
    if callable(getattr(value, "parameters", None)) and hasattr(value, "to"):
        return value.to("cpu")
    if isinstance(value, dict):
        return {k: move_to_cpu(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(move_to_cpu(v) for v in value)
    if isinstance(value, list):
        return [move_to_cpu(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: move_to_cpu(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    return value


@dataclass
class Entry:
    value: Any
    nbytes: int
    device: str
    cost: float  # seconds it took to compute
    last_used: int


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    stores: int = 0
    moved_to_cpu: int = 0
    dropped: int = 0


class TensorCache:
    """Key -> value store with per-device byte budgets.

    ``budgets`` maps a device type ("cpu", "cuda") to a byte budget; devices
    not listed use ``default_budget`` (None = unlimited).
    """

    def __init__(
        self,
        budgets: dict[str, int] | None = None,
        default_budget: int | None = None,
        mover: Mover = move_to_cpu,
    ) -> None:
        self.budgets = dict(budgets or {})
        self.default_budget = default_budget
        self.mover = mover
        self.stats = CacheStats()
        self._entries: dict[str, Entry] = {}
        self._clock = itertools.count()
        self._lock = threading.RLock()

    # -- queries --------------------------------------------------------------
    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.stats.misses += 1
                return default
            self.stats.hits += 1
            entry.last_used = next(self._clock)
            return entry.value

    def bytes_by_device(self) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for e in self._entries.values():
                out[e.device] = out.get(e.device, 0) + e.nbytes
            return out

    def budget(self, device: str) -> int | None:
        return self.budgets.get(device, self.default_budget)

    # -- updates --------------------------------------------------------------
    def put(self, key: str, value: Any, *, cost: float = 0.0) -> None:
        """Store ``value``; then evict until every device is within budget."""
        with self._lock:
            self._entries[key] = Entry(value, nbytes(value), device_of(value), float(cost),
                                       next(self._clock))
            self.stats.stores += 1
            self._enforce()

    def discard(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def set_budget(self, device: str, budget: int | None) -> None:
        with self._lock:
            if budget is None:
                self.budgets.pop(device, None)
            else:
                self.budgets[device] = budget
            self._enforce()

    def _enforce(self) -> None:
        # Accelerators first: what they shed may land on the CPU.
        devices = sorted(self.bytes_by_device(), key=lambda d: d == "cpu")
        for device in devices:
            budget = self.budget(device)
            if budget is None:
                continue
            used = self.bytes_by_device().get(device, 0)
            while used > budget:
                key = self._victim(device)
                if key is None:
                    break
                entry = self._entries[key]
                if device != "cpu":
                    entry.value = self.mover(entry.value)
                    entry.device = device_of(entry.value)
                    self.stats.moved_to_cpu += 1
                else:
                    del self._entries[key]
                    self.stats.dropped += 1
                used -= entry.nbytes
        cpu_budget = self.budget("cpu")
        if cpu_budget is not None and self.bytes_by_device().get("cpu", 0) > cpu_budget:
            self._enforce_cpu(cpu_budget)

    def _enforce_cpu(self, budget: int) -> None:
        used = self.bytes_by_device().get("cpu", 0)
        while used > budget:
            key = self._victim("cpu")
            if key is None:
                return
            used -= self._entries.pop(key).nbytes
            self.stats.dropped += 1

    def _victim(self, device: str) -> str | None:
        """Cheapest to recompute per byte; among equals, least recently used."""
        best, best_score = None, None
        for key, e in self._entries.items():
            if e.device != device:
                continue
            score = (e.cost / max(e.nbytes, 1), e.last_used)
            if best_score is None or score < best_score:
                best, best_score = key, score
        return best
