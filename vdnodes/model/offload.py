"""Model offload for small GPUs: only the layer groups a flow uses live on the device.

VD's weights split into components that flows use independently (``vd.COMPONENTS``:
the UNet's global, data and context groups, the VAE halves, the CLIP towers). With
offload on, every component keeps a host copy in CPU memory; ``use(components)`` makes
the named ones resident on the device, first evicting the least recently used others
until the resident weights fit ``budget_bytes``. A text->image run therefore holds CLIP,
then the UNet's time + image data + text context groups, then the VAE decoder, never
all of VD at once.

Evicting a group points its tensors back at the host copy (no copy). On a CPU device
(tests, accounting) evicted tensors are replaced by ``meta`` tensors instead, so a
group used while evicted fails loudly rather than silently running from the host copy.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable

import torch
from torch import nn


def component_modules(model: nn.Module, component: str) -> list[nn.Module]:
    """The modules holding one component's weights in a ``VersatileDiffusion`` (empty if absent)."""
    head, _, rest = component.partition(".")
    if head == "unet":
        unet = model.unet
        if unet is None:
            return []
        kind, _, name = rest.partition(".")
        if kind == "time":
            return [unet.time_embed]
        groups = unet.data if kind == "data" else unet.context
        return [groups[name]] if name in groups else []
    if head == "vae_image" and model.vae_image is not None:
        v = model.vae_image
        return [v.encoder, v.quant_conv] if rest == "encoder" else [v.decoder, v.post_quant_conv]
    if head == "vae_text" and model.vae_text is not None:
        return [getattr(model.vae_text, rest)]
    module = getattr(model, head, None) if head in ("clip_text", "clip_image") else None
    return [module] if module is not None else []


def _tensors(modules: list[nn.Module]) -> list[torch.Tensor]:
    """Parameters and buffers of ``modules``, each once (tied weights are one tensor)."""
    seen: dict[int, torch.Tensor] = {}
    for m in modules:
        for t in [*m.parameters(), *m.buffers()]:
            seen.setdefault(id(t), t)
    return list(seen.values())


class GroupOffload:
    """Keeps the components in use on ``device`` within ``budget_bytes``; thread-safe.

    ``moves`` counts host->device loads, ``moved_bytes`` and ``move_s`` their cost,
    ``peak_resident_bytes`` the most weight bytes ever resident at once.
    """

    def __init__(self, model: nn.Module, device: str | torch.device, budget_bytes: int) -> None:
        self.model = model
        self.device = torch.device(device)
        self.budget_bytes = int(budget_bytes)
        self._host: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # component -> (tensor, host copy)
        self._resident: OrderedDict[str, int] = OrderedDict()  # component -> bytes, least recent first
        self._lock = threading.RLock()
        self.moves = 0
        self.moved_bytes = 0
        self.move_s = 0.0
        self.peak_resident_bytes = 0
        self.ever_resident: set[str] = set()
        for component in sorted(getattr(model, "components", ())):  # everything starts parked
            self._register(component)

    @property
    def resident(self) -> dict[str, int]:
        with self._lock:
            return dict(self._resident)

    @property
    def resident_bytes(self) -> int:
        with self._lock:
            return sum(self._resident.values())

    def _register(self, component: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The component's tensors with their host copies; evicts it on first sight."""
        if component not in self._host:
            pairs = []
            for t in _tensors(component_modules(self.model, component)):
                host = t.data if t.device.type == "cpu" else t.data.cpu()
                if self.device.type == "cuda" and torch.cuda.is_available():
                    host = host.pin_memory()  # faster, asynchronous host->device copies
                pairs.append((t, host))
            self._host[component] = pairs
            self._park(pairs)
        return self._host[component]

    def _park(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        for t, host in pairs:
            if self.device.type != "cpu":
                t.data = host
            elif t.device.type != "meta":  # swap in a meta tensor; the host copy keeps the data
                placeholder = torch.empty_like(host, device="meta")
                if isinstance(t, nn.Parameter):
                    placeholder = nn.Parameter(placeholder, requires_grad=t.requires_grad)
                torch.utils.swap_tensors(t, placeholder)

    def _load(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        for t, host in pairs:
            if self.device.type != "cpu":
                t.data = host.to(self.device, non_blocking=True)
            elif t.device.type == "meta":
                is_param = isinstance(t, nn.Parameter)
                resident = nn.Parameter(host, requires_grad=t.requires_grad) if is_param else host.detach()
                torch.utils.swap_tensors(t, resident)

    @staticmethod
    def _nbytes(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
        return sum(host.numel() * host.element_size() for _, host in pairs)

    def use(self, components: Iterable[str]) -> None:
        """Make ``components`` resident on the device, evicting least recently used others to fit."""
        wanted = [c for c in dict.fromkeys(components)]
        with self._lock:
            pairs = {c: self._register(c) for c in wanted}
            need = sum(self._nbytes(pairs[c]) for c in wanted if c not in self._resident)
            for victim in list(self._resident):
                if self.resident_bytes + need <= self.budget_bytes:
                    break
                if victim not in pairs:
                    self._park(self._host[victim])
                    del self._resident[victim]
            for c in wanted:
                if c not in self._resident:
                    t0 = time.perf_counter()
                    self._load(pairs[c])
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    self.move_s += time.perf_counter() - t0
                    self.moves += 1
                    self.moved_bytes += self._nbytes(pairs[c])
                    self._resident[c] = self._nbytes(pairs[c])
                    self.ever_resident.add(c)
                self._resident.move_to_end(c)
            self.peak_resident_bytes = max(self.peak_resident_bytes, self.resident_bytes)

    def report(self) -> dict[str, object]:
        with self._lock:
            return {"budget_bytes": self.budget_bytes, "peak_resident_bytes": self.peak_resident_bytes,
                    "moves": self.moves, "moved_bytes": self.moved_bytes, "move_s": round(self.move_s, 4),
                    "resident": sorted(self._resident), "ever_resident": sorted(self.ever_resident)}
