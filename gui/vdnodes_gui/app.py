"""Starting the canvas: the Qt application, the theme, one window, optionally a graph to open."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtWidgets import QApplication

from vdnodes.core.registry import Registry
from vdnodes.plugins import PluginReport

from vdnodes_gui import theme
from vdnodes_gui.main_window import MainWindow


def application(argv: Sequence[str] | None = None) -> QApplication:
    """The running QApplication (created and themed on first use)."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv) if argv is not None else sys.argv[:1])
        app.setApplicationName("vdnodes")
        app.setOrganizationName("vdnodes")
    theme.apply(app)
    return app


def run(graph: str | Path | None = None, *, out_dir: str = "out", device: str = "cpu",
        registry: Registry | None = None, plugin_report: PluginReport | None = None) -> int:
    """Open the canvas (with ``graph`` if given) and run the Qt event loop; returns its exit code.

    Without a ``registry``, the core nodes and every plugin that loads (``VDNODES_NO_PLUGINS=1``:
    none); ``vdnodes gui`` passes the one its ``--plugins`` / ``--no-plugins`` options built.
    """
    # Idle OpenMP workers sleep instead of spinning, so a CPU run leaves the GUI thread a core
    # (and does not crawl on a busy machine). Only effective before torch loads; users may override.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if registry is None:
        from vdnodes.nodes import build_registry_with_plugins

        registry, plugin_report = build_registry_with_plugins()
    app = application()
    window = MainWindow(registry, out_dir=out_dir, device=device, plugin_report=plugin_report)
    if graph is not None and not window.open_path(graph):
        window.show_message(f"could not open {graph}; see the Log tab")
    window.show()
    code = app.exec()
    # A second quit request (the last window closing, and an explicit quit) must not end the
    # next event loop of this process (a test, or a host application, that goes on).
    QCoreApplication.removePostedEvents(app, QEvent.Quit)
    return code
