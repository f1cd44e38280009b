"""What a training run's bits depend on besides its code and seed: libraries, device, kernels, threads.

Training is deterministic, but floating-point sums come out in the last bit differently when
other kernels run: another torch (or transformers, whose modules choose the attention code)
version, a GPU instead of the CPU, AVX2 instead of AVX-512 kernels on another CPU type, or
another number of threads splitting a reduction. ``train-nano`` records these with every
stage (``host_record``) so that a run that does not reproduce a file bit for bit can say why
(``kernel_differences``).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# The fields that choose kernels (and so the bits); "cpu" is for people reading the record.
KERNEL_FIELDS = ("torch", "transformers", "device", "kernels", "threads")


def cpu_model() -> str:
    """The CPU's name, with its family and model numbers where ``/proc/cpuinfo`` has them
    (cloud CPUs are often named only "AMD EPYC", whatever their generation)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
            if not line.strip():
                break  # the first processor is enough
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    return name


def host_record(device: torch.device) -> dict[str, Any]:
    """Torch and transformers versions, device, kernel set (CPU: ATen's capability, e.g.
    AVX512; CUDA: the GPU's name), torch's thread count, and the CPU's name."""
    import torch
    import transformers

    if device.type == "cuda":
        kernels = torch.cuda.get_device_name(device)
    else:
        kernels = torch.backends.cpu.get_cpu_capability()
    return {"torch": torch.__version__, "transformers": transformers.__version__, "device": device.type,
            "kernels": kernels, "threads": torch.get_num_threads(), "cpu": cpu_model()}


def kernel_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The kernel-choosing fields where two host records differ, as "field a vs b" strings."""
    return [f"{field} {a.get(field)} vs {b.get(field)}" for field in KERNEL_FIELDS if a.get(field) != b.get(field)]


def describe(record: dict[str, Any]) -> str:
    """One line, e.g. "torch 2.13.0+cpu, transformers 5.24.0, cpu AVX2 kernels, 2 threads, AMD EPYC
    (family 25, model 1)"."""
    return (f"torch {record.get('torch')}, transformers {record.get('transformers')}, "
            f"{record.get('device')} {record.get('kernels')} kernels, "
            f"{record.get('threads')} threads, {record.get('cpu')}")
