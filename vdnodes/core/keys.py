"""Content-addressed cache keys.

A node's key is a hash of what determines its outputs: node type, version,
params, derived seed (seeded nodes), fingerprint (external nodes) and the keys
of its inputs, by input name. Node ids and layout never enter, so renaming or
moving nodes re-runs nothing. Pure functions, no registry, no graph.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=repr)


def node_key(
    node_type: str,
    version: str,
    params: Mapping[str, Any],
    input_keys: Mapping[str, str | None],
    *,
    seed: int | None = None,
    fingerprint: str | None = None,
) -> str:
    """The key shared by every output of one node evaluation."""
    payload = {
        "type": node_type,
        "version": version,
        "params": dict(params),
        "inputs": dict(input_keys),
        "seed": seed,
        "fingerprint": fingerprint,
    }
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()[:32]


def output_key(key: str, output: str) -> str:
    return f"{key}/{output}"


def derive_seed(base_seed: int | None, node_seed: int) -> int:
    """A seeded node's seed: its own ``seed`` param, mixed with the run's ``--seed`` if given.

    Without a run seed the param is used as is (what the graph says is what you
    get); with one, every seeded node gets its own stream, still id-free.
    """
    if base_seed is None:
        return int(node_seed)
    digest = hashlib.sha256(f"{int(base_seed)}:{int(node_seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)
