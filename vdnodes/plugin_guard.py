"""Guards around loading a plugin: its output, ``os._exit`` and imports that hang.

While a plugin is imported and registered, what it writes to stdout/stderr (Python streams
and descriptors 1 and 2) is captured into its report, ``os._exit`` raises ``PluginExit``
instead of ending the process, and ``import_bounded`` runs the import in a daemon thread
with a time limit (``VDNODES_PLUGIN_TIMEOUT``). Used by ``vdnodes.plugins``; see
docs/plugins.md, "Plugins that misbehave".
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any

TIMEOUT_ENV = "VDNODES_PLUGIN_TIMEOUT"
OUTPUT_KEEP = 10_000  # characters of a plugin's captured output kept in its report (each stream)

class PluginExit(SystemExit):
    """Raised in place of ``os._exit`` called by a plugin while it loads (the process goes on)."""

    def __str__(self) -> str:
        return f"it called os._exit({self.code!r}), which would have ended vdnodes at once; vdnodes stopped it"


class Hung(Exception):
    """A plugin's import did not finish in time; ``stack`` is where its thread was."""

    def __init__(self, message: str, stack: traceback.StackSummary | None = None) -> None:
        super().__init__(message)
        self.stack = stack


class _Sink:
    """One stream of a plugin's output: the first ``OUTPUT_KEEP`` characters kept, all counted."""

    def __init__(self) -> None:
        self.kept: list[str] = []
        self.total = 0

    def append(self, text: str) -> None:
        room = OUTPUT_KEEP - min(self.total, OUTPUT_KEEP)
        if room:
            self.kept.append(text[:room])
        self.total += len(text)


class _Discard(_Sink):
    def append(self, text: str) -> None:  # writes from a plugin that was given up on
        pass


class Capture:
    """What one plugin wrote while it loaded, by stream (Python writes, then file-descriptor writes)."""

    def __init__(self) -> None:
        self.parts = {"stdout": _Sink(), "stderr": _Sink()}

    def text(self) -> dict[str, str]:
        return {k: "".join(v.kept) for k, v in self.parts.items()}

    def totals(self) -> dict[str, int]:
        return {k: v.total for k, v in self.parts.items()}


class _RoutedStream:
    """``sys.stdout`` / ``sys.stderr`` while plugins load: plugin writes go to the plugin's capture.

    While a plugin is imported or registered (``_Guard.active``) every write goes to its capture;
    a thread whose import outlived its time limit has its writes dropped, for as long as it runs;
    all other writes go to the stream this one stands in for.
    """

    def __init__(self, guard: _Guard, name: str, target: Any) -> None:
        self._guard, self._name, self._target = guard, name, target

    def write(self, text: str) -> int:
        sink = self._guard.sink(self._name)
        if sink is None:
            return self._target.write(text)
        sink.append(str(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._guard.sink(self._name) is None:
            self._target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


class _Guard:
    """Installed while ``load_plugins`` runs (and while an import that hung still runs)."""

    def __init__(self) -> None:
        self.active: Capture | None = None
        self.hung: dict[int, threading.Thread] = {}
        self.users = 0
        self.real_exit: Callable[[int], Any] = os._exit

    def sink(self, stream: str) -> _Sink | None:
        if threading.get_ident() in self.hung:
            return _Discard()
        active = self.active
        return None if active is None else active.parts[stream]

    def exit(self, code: int) -> Any:
        """Stands in for ``os._exit``: raises inside plugin loading, the real one elsewhere."""
        if self.active is not None or threading.get_ident() in self.hung:
            raise PluginExit(code)
        return self.real_exit(code)

    def install(self) -> None:
        self.users += 1
        self._put_in_place()

    def _put_in_place(self) -> None:
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if current is not None and not (isinstance(current, _RoutedStream) and current._guard is self):
                setattr(sys, name, _RoutedStream(self, name, current))  # None: no console, print is a no-op
        if os._exit != self.exit:  # a bound method: a new object each time, equal to the last
            self.real_exit = os._exit
            os._exit = self.exit

    def uninstall(self) -> None:
        self.users -= 1
        self.hung = {i: t for i, t in self.hung.items() if t.is_alive()}
        if self.users > 0 or self.hung:  # a hung import may still print or call os._exit
            return
        for name in ("stdout", "stderr"):
            current = getattr(sys, name)
            if isinstance(current, _RoutedStream) and current._guard is self:
                setattr(sys, name, current._target)
        if os._exit == self.exit:
            os._exit = self.real_exit

    def give_up_on(self, thread: threading.Thread) -> None:
        if thread.ident is not None:
            self.hung[thread.ident] = thread

    def capturing(self, capture: Capture) -> _Window:
        return _Window(self, capture)


class _Window:
    """One plugin's import and registration: its writes (Python and file descriptors 1, 2) captured."""

    def __init__(self, guard: _Guard, capture: Capture) -> None:
        self.guard, self.capture = guard, capture
        self.fds: list[tuple[str, int, int, int]] = []  # stream, fd, saved copy, temporary file's fd

    def __enter__(self) -> _Window:
        _flush_all()
        for name, fd in (("stdout", 1), ("stderr", 2)):
            try:
                saved = os.dup(fd)
            except OSError:  # no such descriptor (a GUI process without a console)
                continue
            try:
                tmp = _anonymous_file()
                os.dup2(tmp, fd)
            except OSError:  # no temporary file: Python-level capture only
                os.close(saved)
                continue
            self.fds.append((name, fd, saved, tmp))
        self.replaced = (sys.stdout, sys.stderr, os._exit)
        self.guard.active = self.capture
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            _flush_all()  # what a plugin left in the buffers of sys.__stdout__ / __stderr__
        finally:
            self.guard.active = None
            for name, fd, saved, tmp in self.fds:
                os.dup2(saved, fd)
                os.close(saved)
                size = os.fstat(tmp).st_size
                data = _read_start(tmp, min(size, 4 * OUTPUT_KEEP)).decode("utf-8", "replace")
                os.close(tmp)
                if size:
                    sink = self.capture.parts[name]
                    sink.append(data)
                    sink.total += max(0, size - len(data.encode()))  # bytes beyond what was read
            sys.stdout, sys.stderr, os._exit = self.replaced  # undo a plugin replacing them


def _anonymous_file() -> int:
    """A file descriptor of an unnamed temporary file (memory-backed where the system can)."""
    if hasattr(os, "memfd_create"):  # Linux: no file system, no tempfile import (3.6 ms)
        try:
            return os.memfd_create("vdnodes-plugin-output", getattr(os, "MFD_CLOEXEC", 0))
        except OSError:
            pass
    import tempfile

    with tempfile.TemporaryFile() as tmp:
        return os.dup(tmp.fileno())


def _read_start(fd: int, n: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks, got = [], 0
    while got < n and (chunk := os.read(fd, n - got)):
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _flush_all() -> None:
    for stream in {id(s): s for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)}.values():
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # closed, or a reader that left
            pass


GUARD = _Guard()
_STILL_RUNNING: dict[str, threading.Thread] = {}  # plugin origin -> its import that outlived its limit


def import_bounded(cand: Any, timeout: float) -> Any:
    """``cand.load()`` in a daemon thread; ``Hung`` if it takes more than ``timeout`` s (0: no limit).

    A thread cannot be stopped: one that hangs stays blocked (a daemon, so the process still
    exits). Its result is never used: the plugin has been reported as failed, and registration
    only ever happens on the caller's thread, after the import returned in time.
    """
    limit = f"did not finish importing within {timeout:g} s; raise {TIMEOUT_ENV} or remove it"
    earlier = _STILL_RUNNING.get(cand.origin)
    if earlier is not None:
        if earlier.is_alive():
            raise Hung(f"its import from an earlier attempt is still running (it {limit})")
        del _STILL_RUNNING[cand.origin]
    if not timeout:
        return cand.load()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = cand.load()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = e

    thread = threading.Thread(target=work, name=f"vdnodes plugin import {cand.name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        GUARD.give_up_on(thread)
        _STILL_RUNNING[cand.origin] = thread
        frame = sys._current_frames().get(thread.ident or -1)
        raise Hung(limit, traceback.extract_stack(frame) if frame is not None else None)
    if "error" in box:
        raise box["error"]
    return box["value"]


def one_line(text: str, total: int, limit: int = 200) -> str:
    """Captured output as one short line: its lines joined by ' | ', each and all shortened."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    shown = " | ".join(line if len(line) <= 80 else line[:79] + "…" for line in lines if line)
    cut = len(shown) > limit or any(len(line) > 80 for line in lines) or total > len(text)
    if len(shown) > limit:
        shown = shown[:limit - 1] + "…"
    shown = "".join(c if c.isprintable() else "?" for c in shown)
    return f'"{shown}"' + (f" (shortened; {total} characters in all)" if cut else "")
