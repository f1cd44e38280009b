"""A work-around for a reference-counting bug of the Qt binding, applied only where detected.

PySide6 6.12.0's stable-ABI wheels (cp310-abi3) return ``None`` from void
methods (``setPos``, ``update``, ``setPen``, ...) and ``True`` from
``Signal.emit()`` without taking a new reference. On Python >= 3.12 those
objects are immortal and nothing happens; on 3.10 / 3.11 every such call drops
one reference and the interpreter aborts after a few thousand calls ("Fatal
Python error: none_dealloc" / "bool_dealloc") -- a minute of painting, or a
few runs. ``guard_singleton_refcounts`` measures one call of each kind and,
only when one leaks, makes ``None``, ``True`` and ``False`` immortal the way
Python 3.12 does. Nothing else here.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

IMMORTAL = 1 << 40  # more references than any process will ever drop

_guarded = False


class _Probe(QObject):
    ping = Signal()


def singletons_leak() -> bool:
    """Whether a void Qt method or a ``Signal.emit()`` called from Python loses a reference."""
    probe = _Probe()
    probe.ping.connect(lambda: None)
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(8):
        probe.setObjectName("probe")  # returns None
        probe.ping.emit()  # returns True
    return sys.getrefcount(None) < none_before - 4 or sys.getrefcount(True) < true_before - 4


def guard_singleton_refcounts() -> bool:
    """Apply the work-around if this binding needs it (once per process); True when applied."""
    global _guarded
    if _guarded or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return _guarded
    if singletons_leak():
        for obj in (None, True, False):
            # ob_refcnt is the first field of every CPython object (a Py_ssize_t).
            ctypes.c_ssize_t.from_address(id(obj)).value += IMMORTAL
        _guarded = True
    return _guarded
