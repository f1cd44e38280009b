"""Fixtures for the canvas tests: an offscreen main window per test, one registry per session.

``QT_QPA_PLATFORM=offscreen`` comes from tests/conftest.py. Until packaging
installs ``vdnodes_gui``, the repository's ``gui/`` folder is put on sys.path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# As `vdnodes gui` does: idle OpenMP threads sleep, so runs do not crawl on a busy CPU
# (effective only if torch is not loaded yet; 7 s instead of 38 s for a run on a loaded 2-core box).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

ROOT = Path(__file__).resolve().parents[2]
try:
    import vdnodes_gui  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT / "gui"))

from PySide6.QtCore import QPoint  # noqa: E402
from PySide6.QtGui import QCursor  # noqa: E402

from vdnodes.nodes import build_registry_with_plugins  # noqa: E402

from vdnodes_gui.app import application  # noqa: E402
from vdnodes_gui.main_window import MainWindow  # noqa: E402


@pytest.fixture(scope="session")
def registry():
    """The core nodes plus the installed plugins, as `vdnodes gui` builds it."""
    return build_registry_with_plugins()[0]


@pytest.fixture
def window(qtbot, registry, tmp_path):
    """A themed main window writing outputs under tmp_path; its run is cancelled and joined at the end."""
    application()
    QCursor.setPos(QPoint(5000, 5000))  # off the canvas, unless a test puts it there
    win = MainWindow(registry, out_dir=str(tmp_path / "out"))
    win.ask_before_discard = False
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    if win.runner.is_running():
        win.runner.cancel()
        win.runner.wait()



_EXIT_STATUS = {"code": 0}


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS["code"] = int(exitstatus)


def pytest_unconfigure(config):
    """End the process without running C++ exit handlers once Qt has been used.

    With PySide6 6.11.3, after a session that ran the canvas tests *and* the model
    tests, a QtGui global destructor (run by libc's exit handlers, after Python
    has finalised) destroyed a shiboken wrapper and the process segfaulted --
    after every test had passed and the summary was printed (gdb: libQt6Gui exit
    handler -> Shiboken::Object::destroy -> _PyErr_Fetch with no thread state).
    All results are reported by now, so leave with pytest's own status instead.
    """
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS["code"])
