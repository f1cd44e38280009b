"""vdnodes_gui: the desktop canvas for vdnodes (PySide6).

Layers, one way only: ``document`` (the graph + node run status, the single
source of truth) <- ``commands`` (undoable edits) <- ``editor`` (checked
requests) <- ``view`` (scene items that draw the document and request edits)
and the panels (``palette``, ``params``, ``viewer``); ``run`` executes the
shared ``vdnodes`` executor in a worker thread; ``main_window`` wires them.
The package imports ``vdnodes.core`` and ``vdnodes.nodes``; they never import it.
"""

from __future__ import annotations

from vdnodes_gui.compat import guard_singleton_refcounts

# Before any Qt call: PySide6 6.12.0 on Python < 3.12 drops a reference to None / True on
# every void call and signal emit, and the interpreter aborts within minutes (see compat.py).
# A no-op where the binding is fine.
guard_singleton_refcounts()

__all__ = ["launch"]


def launch(graph=None, *, out_dir: str = "out", device: str = "cpu", registry=None, plugin_report=None) -> int:
    """Open the canvas (optionally with a graph) and block until it closes; see ``vdnodes_gui.app.run``.

    (Not called ``run``: that name is the ``vdnodes_gui.run`` module, the worker thread.)
    """
    from vdnodes_gui.app import run as _run

    return _run(graph, out_dir=out_dir, device=device, registry=registry, plugin_report=plugin_report)
