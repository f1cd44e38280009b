"""docs/nodes.md is generated from the declarations and must be current."""

from pathlib import Path

from vdnodes.docgen import registry_markdown
from vdnodes.nodes import build_registry

ROOT = Path(__file__).resolve().parents[2]


def test_node_reference_is_current():
    current = (ROOT / "docs" / "nodes.md").read_text()
    fresh = registry_markdown(build_registry())
    assert current == fresh, "docs/nodes.md is stale: run `vdnodes nodes --markdown --no-plugins > docs/nodes.md`"


def test_every_node_is_documented():
    registry = build_registry()
    for decl in registry:
        assert decl.doc.strip(), f"{decl.id} has no doc"
        for name, p in decl.params.items():
            assert p.doc.strip(), f"{decl.id}.{name} has no doc"
