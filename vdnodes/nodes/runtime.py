"""The executor every front end builds: the built-in nodes' services wired into one ``Executor``.

The CLI, the canvas and the benchmarks build their executor here, so a graph runs the same
way from each of them, and the canvas never imports the CLI (layers point one way:
``vdnodes_gui`` -> ``vdnodes.nodes`` -> ``vdnodes.model`` / ``vdnodes.core``).
"""

from __future__ import annotations

from typing import Any

from vdnodes.core.executor import Executor
from vdnodes.core.registry import Registry


def run_services() -> dict[str, Any]:
    """What node bodies reach through ``ctx``: the shared model manager and manifest hooks."""
    from vdnodes.nodes.models import default_manager

    manager = default_manager()
    return {"models": manager, "manifest": manager.manifest}


def build_executor(registry: Registry, *, device: str = "cpu", dtype: str = "float32",
                   out_dir: str = "out") -> Executor:
    """An executor over ``registry`` with the shared model manager."""
    return Executor(registry, device=device, dtype=dtype, out_dir=out_dir, services=run_services())
