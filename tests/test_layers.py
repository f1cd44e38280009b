"""Imports point one way: canvas -> nodes -> model / nano -> core, and the CLI sits on top.

Two checks: every import statement in the source (so a lazy import inside a function counts
too), and what a fresh interpreter really loads when it imports a layer.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What each layer may import from this project (by top-level package / module).
ALLOWED = {
    "vdnodes.core": {"vdnodes.core"},
    "vdnodes.model": {"vdnodes.core", "vdnodes.model"},
    "vdnodes.nano": {"vdnodes.core", "vdnodes.model", "vdnodes.nano"},
    "vdnodes.nodes": {"vdnodes", "vdnodes.core", "vdnodes.model", "vdnodes.nano", "vdnodes.nodes",
                      "vdnodes.plugins"},
    "vdnodes.plugins": {"vdnodes", "vdnodes.core", "vdnodes.nodes", "vdnodes.plugin_guard"},
    "vdnodes.plugin_guard": set(),
    "vdnodes.batch": {"vdnodes", "vdnodes.core", "vdnodes.batch", "vdnodes.nodes"},
    "vdnodes.console": {"vdnodes.core", "vdnodes.batch"},
    "vdnodes.docgen": {"vdnodes.core"},
    "vdnodes_gui": {"vdnodes", "vdnodes.core", "vdnodes.batch", "vdnodes.nodes", "vdnodes.plugins", "vdnodes_gui"},
}
# The one place below the canvas that may import it: the `vdnodes gui` command's lazy launcher.
GUI_LAUNCHER = ("vdnodes.cli", "cmd_gui")


def _layer(module: str) -> str:
    """``vdnodes.model.unet`` -> ``vdnodes.model``; ``vdnodes.cli`` -> ``vdnodes.cli``."""
    parts = module.split(".")
    return parts[0] if parts[0] == "vdnodes_gui" else ".".join(parts[:2])


def _modules() -> list[tuple[str, Path]]:
    found = []
    for base, package in ((ROOT, "vdnodes"), (ROOT / "gui", "vdnodes_gui")):
        for path in sorted((base / package).rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            found.append((".".join(p for p in rel.parts if p != "__init__"), path))
    return found


def _imports(path: Path) -> list[tuple[str, int, str]]:
    """(imported module, line, enclosing top-level function or '') for every project import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for top in tree.body:
        owner = top.name if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else ""
        for node in ast.walk(top):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            out.extend((n, node.lineno, owner) for n in names if n.split(".")[0] in ("vdnodes", "vdnodes_gui"))
    return out


def test_the_source_imports_point_one_way() -> None:
    modules = _modules()
    assert len(modules) > 40, "the package layout moved; update this test's roots"
    wrong = []
    for module, path in modules:
        layer = _layer(module)
        for target, line, owner in _imports(path):
            if (module, owner) == GUI_LAUNCHER and target == "vdnodes_gui":
                continue
            allowed = ALLOWED.get(layer)
            if allowed is None:  # the top: vdnodes.cli and vdnodes.__main__ may use every layer but the canvas
                ok = not target.startswith("vdnodes_gui")
            else:
                ok = _layer(target) in allowed or target in allowed
            if not ok:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({layer}) imports {target}")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


@pytest.mark.parametrize(("imports", "absent"), [
    (["vdnodes.core.executor", "vdnodes.core.graph", "vdnodes.core.fileio"],
     ["vdnodes.model", "vdnodes.nodes", "vdnodes.cli", "vdnodes_gui", "torch"]),
    (["vdnodes.nodes", "vdnodes.nodes.runtime"], ["vdnodes.cli", "vdnodes_gui", "torch"]),
    (["vdnodes.batch.spec", "vdnodes.batch.manifest", "vdnodes.batch.local", "vdnodes.batch.grid",
      "vdnodes.batch.ray_backend"], ["vdnodes.cli", "vdnodes_gui", "torch", "ray"]),
    (["vdnodes_gui.main_window", "vdnodes_gui.app", "vdnodes_gui.run"], ["vdnodes.cli"]),
])
def test_a_fresh_interpreter_loads_only_the_layers_below(imports: list[str], absent: list[str]) -> None:
    if any(m.startswith("vdnodes_gui") for m in imports):
        pytest.importorskip("PySide6")
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'gui')!r}); import importlib\n"
            f"for m in {imports!r}: importlib.import_module(m)\n"
            f"print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('vdnodes', 'vdnodes_gui', 'torch', 'ray'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert set(imports) <= set(loaded)
    leaked = [m for m in loaded if any(m == a or m.startswith(a + ".") for a in absent)]
    assert not leaked, f"importing {imports} loaded {leaked}"
