"""Plugins on the canvas: their nodes in the palette; broken ones reported while the canvas works."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from vdnodes.cli import main
from vdnodes.nodes import build_registry
from vdnodes.plugins import load_plugins

from vdnodes_gui.app import application
from vdnodes_gui.main_window import MainWindow

from tests.gui.actions import add_from_palette, drag_link
from tests.plugins.support import fixture_path


@pytest.fixture
def plugin_window(qtbot, tmp_path):
    """A window whose registry holds the fixture plugins: tidy loads, three broken ones fail."""
    application()
    registry = build_registry()
    report = load_plugins(registry, path=fixture_path("good", "broken"), entry_points=False)
    win = MainWindow(registry, out_dir=str(tmp_path / "out"), plugin_report=report)
    win.ask_before_discard = False
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    if win.runner.is_running():
        win.runner.cancel()
        win.runner.wait()


def test_a_plugin_node_is_in_the_palette_and_links_like_a_core_node(plugin_window):
    win = plugin_window
    item = win.palette.items["tidy.shout"]
    assert "from plugin tidy" in item.toolTip(0)
    win.palette.search.setText("shout")
    assert win.palette.visible_types() == ["tidy.shout"]
    win.palette.search.clear()
    text = add_from_palette(win, "vd.text")
    shout = add_from_palette(win, "tidy.shout")
    assert drag_link(win, text, "text", shout, "text") is None
    assert win.doc.graph.nodes[shout].inputs["text"].node == text


def test_broken_plugins_are_reported_and_the_canvas_still_works(plugin_window):
    win = plugin_window
    assert win.last_message.startswith("3 plugins could not be loaded (crashes, halfway, undeclared)")
    assert win.plugin_label.text() == "plugins: 1 loaded, 3 failed"
    log = win.viewer.log_view.toPlainText()
    assert "plugin tidy 1.2.0 loaded" in log
    assert "warning: plugin 'crashes' was not loaded: import failed: ZeroDivisionError" in log
    help_menu = [a.menu() for a in win.menuBar().actions() if a.text() == "&Help"][0]
    assert win.act_plugins in help_menu.actions()
    box = win.show_plugins()
    details = box.informativeText()
    assert "\u2713 tidy 1.2.0: loaded (nodes: tidy.shout; types: Shout;" in details
    assert "\u2717 halfway 0.1.0: failed: register() failed: RuntimeError: the second half is missing" in details
    box.close()
    assert "halfway.first" not in win.palette.items  # rolled back, so never offered
    assert add_from_palette(win, "vd.load_image")  # the core nodes work as ever


def test_a_window_without_plugins_shows_no_plugin_status(window):
    assert window.plugin_report is None and window.plugin_label.text() == ""
    assert "not loaded in this window" in window.plugins_text()


def test_the_gui_command_passes_the_plugin_options_on(qapp, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("VDNODES_PLUGIN_PATH", os.pathsep.join(fixture_path("good", "broken")))
    monkeypatch.delenv("VDNODES_NO_PLUGINS", raising=False)
    seen = []

    def inspect_and_close() -> None:
        (win,) = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        seen.append(("tidy.shout" in win.palette.items, win.plugin_label.text()))
        win.close()
        QApplication.quit()

    for options in ([], ["--plugins", "tidy"], ["--no-plugins"]):
        QTimer.singleShot(0, inspect_and_close)
        assert main(["gui", "--out", str(tmp_path), *options]) == 0
    (all_on, label_all), (allowed, label_allowed), (off, label_off) = seen
    assert all_on and "3 failed" in label_all  # (installed plugins load too)
    assert allowed and label_allowed.startswith("plugins: 1 loaded, ") and "failed" not in label_allowed
    assert not off and label_off == "plugins off (safe mode)"
    err = capsys.readouterr().err
    assert err.count("plugin 'crashes' was not loaded") == 1 and "Traceback" not in err
