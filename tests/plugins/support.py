"""Shared by the plugin tests and by the tests that run every example graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CORE_NAMESPACES = ("vd", "image")  # node id prefixes of the built-in nodes


def fixture_path(*names: str) -> list[str]:
    """Fixture folders, as ``load_plugins(path=...)`` or ``VDNODES_PLUGIN_PATH`` entries."""
    return [str(FIXTURES / n) for n in names]


def skip_if_plugin_missing(graph_path: Path, registry) -> None:
    """Skip a test of an example graph whose plugin nodes are not installed (core nodes never skip)."""
    types = {spec["type"] for spec in json.loads(graph_path.read_text())["nodes"].values()}
    missing = sorted(t for t in types if t not in registry and t.split(".")[0] not in CORE_NAMESPACES)
    if missing:
        pytest.skip(f"{graph_path.name} needs plugin nodes {missing}; install the plugins with `make install-dev`")
