"""Toy nodes for engine tests: integer arithmetic, a seeded source, a slow node, a big node.

CALLS counts real function calls, so tests check what ran, not only what the
executor reports.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

from vdnodes.core.node import In, Migration, Out, Param, node
from vdnodes.core.registry import Registry

CALLS: Counter[str] = Counter()
SLOW_STARTED = threading.Event()


@node("toy.const", version="1.0.0", category="toy", params={"value": Param("Int", 0, min=-100, max=100)},
      outputs={"value": Out("Int")})
def const(ctx, value):
    CALLS["toy.const"] += 1
    return value


@node("toy.add", version="1.0.0", category="toy", inputs={"a": In("Int"), "b": In("Int")},
      outputs={"sum": Out("Int")})
def add(ctx, a, b):
    CALLS["toy.add"] += 1
    return a + b


def _scale_1_to_2(raw):
    # 1.x called the param "factor"; 2.0 renamed it to "times".
    params = dict(raw["params"])
    params["times"] = params.pop("factor", 1)
    return {**raw, "params": params}


@node("toy.scale", version="2.0.0", category="toy", inputs={"x": In("Int")},
      params={"times": Param("Int", 1, min=0, max=10)}, outputs={"y": Out("Int")},
      migrations=[Migration("1.0.0", "2.0.0", _scale_1_to_2)])
def scale(ctx, x, times):
    CALLS["toy.scale"] += 1
    return x * times


@node("toy.noise", version="1.0.0", category="toy", purity="seeded",
      params={"seed": Param("Seed", 0), "high": Param("Int", 1000, min=1, max=10**9)},
      outputs={"value": Out("Int")})
def noise(ctx, seed, high):
    CALLS["toy.noise"] += 1
    return random.Random(ctx.seed).randrange(high)


@node("toy.slow", version="1.0.0", category="toy", inputs={"x": In("Int")},
      params={"steps": Param("Int", 50, min=1, max=10000)}, outputs={"y": Out("Int")})
def slow(ctx, x, steps):
    CALLS["toy.slow"] += 1
    SLOW_STARTED.set()
    for i in range(steps):
        ctx.check_cancel()
        ctx.progress((i + 1) / steps, f"step {i + 1}/{steps}")
        time.sleep(0.01)
    return x + steps


@node("toy.big", version="1.0.0", category="toy", inputs={"x": In("Int")},
      params={"kib": Param("Int", 64, min=1, max=1 << 20)}, outputs={"blob": Out("Any")})
def big(ctx, x, kib):
    import numpy as np

    CALLS["toy.big"] += 1
    return np.full(kib * 1024, x % 256, dtype=np.uint8)


@node("toy.total", version="1.0.0", category="toy", inputs={"blob": In("Any")}, outputs={"sum": Out("Int")})
def total(ctx, blob):
    CALLS["toy.total"] += 1
    return int(blob.sum())


@node("toy.fail", version="1.0.0", category="toy", inputs={"x": In("Int")}, outputs={"y": Out("Int")})
def fail(ctx, x):
    raise RuntimeError("boom")


@node("toy.text", version="1.0.0", category="toy", params={"text": Param("String", "hi")},
      outputs={"text": Out("Text")})
def text(ctx, text):
    return [text]


def toy_registry() -> Registry:
    import sys

    reg = Registry()
    reg.register_module(sys.modules[__name__])
    return reg


def graph_dict(nodes: dict, **extra) -> dict:
    return {"format": "vdnodes.graph", "version": 1, "nodes": nodes, **extra}


def chain_graph() -> dict:
    """a=2, b=3 -> sum -> scale(x2) ; plus an independent noise node."""
    return graph_dict({
        "a": {"type": "toy.const", "params": {"value": 2}},
        "b": {"type": "toy.const", "params": {"value": 3}},
        "sum": {"type": "toy.add", "inputs": {"a": ["a", "value"], "b": ["b", "value"]}},
        "double": {"type": "toy.scale", "params": {"times": 2}, "inputs": {"x": ["sum", "sum"]}},
        "rnd": {"type": "toy.noise", "params": {"seed": 7}},
    }, outputs={"result": "double.y", "random": "rnd.value"}, ui={"a": {"pos": [0, 0]}})
