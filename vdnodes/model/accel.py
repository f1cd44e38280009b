"""Device speed-ups for loaded models: channels-last memory format and ``torch.compile``.

Attention is always PyTorch's fused ``scaled_dot_product_attention`` (flash / memory-efficient
kernels on CUDA). Two options are added per model, from the environment so that a run's
``--compile`` / ``--channels-last`` flags reach every model the run loads:

- ``VDNODES_CHANNELS_LAST`` (``auto`` | ``1`` | ``0``): convolutions in NHWC. ``auto`` turns it on
  for CUDA, where tensor-core convolutions prefer it, and off for CPU, where it measured no gain
  (19.1 s vs 19.0 s per 64 x 64 CFG step, 1 thread, 2026-12-08).
- ``VDNODES_COMPILE`` (``0`` | ``1`` | a backend name): ``torch.compile`` of the UNet's forward.
  The first step pays the compile time; benchmarks/gpu.py reports it and the speed-up.

Neither changes results beyond kernel rounding (tests/model/test_accel.py: within 1e-5 on CPU).
"""

from __future__ import annotations

import os

import torch
from torch import nn


def channels_last_wanted(device: str | torch.device) -> bool:
    value = os.environ.get("VDNODES_CHANNELS_LAST", "auto").strip().lower()
    if value in ("", "auto"):
        return torch.device(device).type == "cuda"
    return value not in ("0", "false", "no", "off")


def compile_backend() -> str | None:
    """The ``torch.compile`` backend asked for, or None."""
    value = os.environ.get("VDNODES_COMPILE", "0").strip()
    if value.lower() in ("", "0", "false", "no", "off"):
        return None
    return "inductor" if value.lower() in ("1", "true", "yes", "on") else value


def use_channels_last(module: nn.Module) -> nn.Module:
    """Convert the 4-D weights of ``module`` to channels-last and mark it so image inputs follow."""
    module.to(memory_format=torch.channels_last)
    for m in module.modules():
        if hasattr(m, "memory_format"):
            m.memory_format = torch.channels_last
    return module


def compile_module(module: nn.Module, backend: str = "inductor") -> nn.Module:
    """Compile ``module``'s forward in place (``nn.Module.compile``); the first call compiles."""
    module.compile(backend=backend, dynamic=False)
    return module


def accelerate(module: nn.Module, device: str | torch.device) -> nn.Module:
    """Apply the options the environment asks for (see the module doc) to a loaded UNet or VAE."""
    if channels_last_wanted(device):
        use_channels_last(module)
    backend = compile_backend()
    if backend is not None:
        compile_module(module, backend)
    return module
