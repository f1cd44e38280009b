"""Plugins that misbehave at import: they print, hang or call os._exit.

Each test writes real plugin files into ``tmp_path``, finds them through ``VDNODES_PLUGIN_PATH``
and runs the real command line in a subprocess (docs/plugins.md, "Plugins that misbehave").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from vdnodes.nodes import build_registry
from vdnodes.plugins import load_plugins

ROOT = Path(__file__).resolve().parents[2]

GOOD = '''
from vdnodes.core.node import In, Out, node

MANIFEST = {{"name": "{name}", "version": "0.1.0", "requires": ">=0.1", "adds": {{"nodes": ["{name}.same"]}}}}


@node("{name}.same", version="1.0.0", category="text", doc="The text as it is.",
      inputs={{"text": In("Text")}}, outputs={{"text": Out("Text")}})
def same(ctx, text):
    return text


def register(api):
    {register}
    api.add_nodes(__name__)
'''


def write_plugin(folder: Path, name: str, top: str = "", register: str = "pass") -> Path:
    """A one-node plugin ``folder/name.py`` that runs ``top`` at import and ``register`` in register()."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(top) + GOOD.format(name=name, register=register))
    return path


def vdnodes(*args: str, plugin_path: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """The real command line in a fresh process; installed plugins are left out (--plugins picks)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VDNODES_")}
    environ.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), VDNODES_PLUGIN_PATH=str(plugin_path), **env)
    try:
        return subprocess.run([sys.executable, "-m", "vdnodes", *args], cwd=ROOT, env=environ,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"vdnodes {' '.join(args)} did not end within {timeout} s (a plugin hung it): {e.stderr!r}")


def by_name(stdout: str) -> dict:
    return {p["name"]: p for p in json.loads(stdout)["plugins"]}


# -- a plugin that prints -------------------------------------------------------------------------

LOUD = """
import os, sys
print("hello from loud at import")
print("loud complains", file=sys.stderr)
sys.stdout.flush()
os.write(1, b"raw bytes on fd 1\\n")
"""


@pytest.fixture
def loud(tmp_path):
    write_plugin(tmp_path / "plugins", "loud", LOUD, register='print("loud registers", "x" * 500)')
    return tmp_path / "plugins"


def test_a_printing_plugin_leaves_plugins_json_valid_and_its_text_goes_to_stderr(loud):
    proc = vdnodes("plugins", "--json", "--plugins", "loud", plugin_path=loud)
    assert proc.returncode == 0, proc.stderr
    plugins = by_name(proc.stdout)  # the whole of stdout is one JSON document
    assert plugins["loud"]["status"] == "loaded", plugins["loud"]["reason"]
    output = plugins["loud"]["output"]  # kept in the report, as data
    assert output["stdout"].startswith("hello from loud at import\nloud registers")
    assert "raw bytes on fd 1" in output["stdout"] and output["stderr"] == "loud complains\n"
    (line,) = [x for x in proc.stderr.splitlines() if "plugin 'loud'" in x]  # one line for the plugin
    for text in ("hello from loud at import", "loud complains", "raw bytes on fd 1", "loud registers"):
        assert text in line
    assert len(line) < 400 and "characters" in line  # the 500 x's are shortened
    assert "Traceback" not in proc.stderr


def test_a_printing_plugin_leaves_json_events_all_json_lines(loud, tmp_path):
    proc = vdnodes("run", "graphs/hello.json", "--json-events", "--out", str(tmp_path / "out"),
                   "--plugins", "loud", plugin_path=loud)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]  # every line is JSON
    assert events and events[-1]["event"] == "outputs"
    assert "hello from loud at import" in proc.stderr and "raw bytes on fd 1" in proc.stderr


def test_the_capture_is_undone_when_a_plugin_raises_after_printing(tmp_path, capfd):
    write_plugin(tmp_path, "chatty_crash", 'print("about to fail")\nraise RuntimeError("boom")\n')
    write_plugin(tmp_path, "chatty_register", "", register='print("in register"); raise ValueError("no")')
    streams = sys.stdout, sys.stderr, os._exit
    report = load_plugins(build_registry(), path=[str(tmp_path)], entry_points=False)
    assert (sys.stdout, sys.stderr, os._exit) == streams  # all put back
    crash, reg = report.get("chatty_crash"), report.get("chatty_register")
    assert crash.status == reg.status == "failed"
    assert "RuntimeError: boom" in crash.reason and "ValueError: no" in reg.reason
    assert crash.output["stdout"] == "about to fail\n" and reg.output["stdout"] == "in register\n"
    print("after")
    os.write(1, b"fd after\n")
    assert capfd.readouterr().out == "after\nfd after\n"  # the plugins' text is not in it


def test_file_descriptor_output_is_captured_without_memfd_too(tmp_path, monkeypatch, capfd):
    monkeypatch.delattr(os, "memfd_create", raising=False)  # macOS, Windows: a temporary file
    write_plugin(tmp_path, "rawfd", 'import os\nos.write(1, b"one\\n")\nos.write(2, b"two\\n")\n')
    (raw,) = load_plugins(build_registry(), path=[str(tmp_path)], entry_points=False).plugins
    assert raw.status == "loaded" and raw.output == {"stdout": "one\n", "stderr": "two\n"}
    assert capfd.readouterr() == ("", "")


def test_a_flood_of_output_is_kept_short(tmp_path):
    write_plugin(tmp_path, "flood", 'print("y" * 300_000)\n')
    (flood,) = load_plugins(build_registry(), path=[str(tmp_path)], entry_points=False).plugins
    assert flood.status == "loaded" and len(flood.output["stdout"]) == 10_000
    note = flood.output_note()
    assert note.startswith("plugin 'flood' printed while loading, on stdout: \"yyy")
    assert note.endswith("(shortened; 300001 characters in all)") and len(note) < 300


# -- a plugin that hangs --------------------------------------------------------------------------


def test_a_hanging_plugin_is_skipped_after_the_timeout_and_the_command_goes_on(tmp_path):
    folder = tmp_path / "plugins"
    write_plugin(folder, "sleepy", "import time\ntime.sleep(3600)\n")
    write_plugin(folder, "zzz_after")  # found after the hanging one: still loads
    start = time.monotonic()
    proc = vdnodes("plugins", "--json", plugin_path=folder, timeout=60, VDNODES_PLUGIN_TIMEOUT="2")
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    plugins = by_name(proc.stdout)
    assert plugins["sleepy"]["status"] == "failed"
    assert plugins["sleepy"]["reason"].startswith(
        "did not finish importing within 2 s; raise VDNODES_PLUGIN_TIMEOUT or remove it")
    assert plugins["zzz_after"]["status"] == "loaded"
    assert took < 30, took

    proc = vdnodes("nodes", plugin_path=folder, timeout=60, VDNODES_PLUGIN_TIMEOUT="2")
    assert proc.returncode == 0, proc.stderr
    assert "zzz_after.same" in proc.stdout and "vd.text" in proc.stdout
    assert "plugin 'sleepy' was not loaded: did not finish importing within 2 s" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = vdnodes("nodes", "--debug", plugin_path=folder, timeout=60, VDNODES_PLUGIN_TIMEOUT="2")
    assert "time.sleep(3600)" in proc.stderr  # --debug shows where it hangs

    # Safe mode imports nothing at all, hanging plugins included: no wait.
    for args, env in ((("nodes", "--no-plugins"), {}), (("nodes",), {"VDNODES_NO_PLUGINS": "1"})):
        start = time.monotonic()
        proc = vdnodes(*args, plugin_path=folder, timeout=60, VDNODES_PLUGIN_TIMEOUT="20", **env)
        assert proc.returncode == 0 and "zzz_after" not in proc.stdout and "sleepy" not in proc.stderr
        assert time.monotonic() - start < 15


def test_a_late_import_never_reaches_the_registry(tmp_path, monkeypatch):
    gate = threading.Event()
    monkeypatch.setattr("builtins._vdnodes_test_gate", gate, raising=False)
    write_plugin(tmp_path, "late", "import builtins\nbuiltins._vdnodes_test_gate.wait()\n")
    registry = build_registry()
    report = load_plugins(registry, path=[str(tmp_path)], entry_points=False, timeout=0.5)
    assert report.get("late").status == "failed" and "within 0.5 s" in report.get("late").reason
    # Tried again while the first import still hangs: refused at once, no second import.
    start = time.monotonic()
    again = load_plugins(build_registry(), path=[str(tmp_path)], entry_points=False, timeout=5)
    assert again.get("late").status == "failed" and "still" in again.get("late").reason
    assert time.monotonic() - start < 2
    gate.set()  # the first import now finishes, late: nothing of it is registered
    for _ in range(250):
        if hasattr(sys.modules.get("late"), "register"):  # its last line has run
            break
        time.sleep(0.02)
    time.sleep(0.2)
    assert "late.same" not in registry and "late" not in {d.plugin for d in registry}
    # Once it has finished, a new load uses the complete module.
    third = load_plugins(build_registry(), path=[str(tmp_path)], entry_points=False, timeout=5)
    assert third.get("late").status == "loaded", third.get("late").reason


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_timeout_is_a_user_error(tmp_path, value):
    write_plugin(tmp_path / "plugins", "fine")
    proc = vdnodes("nodes", plugin_path=tmp_path / "plugins", VDNODES_PLUGIN_TIMEOUT=value)
    assert proc.returncode == 2
    assert "VDNODES_PLUGIN_TIMEOUT" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# -- a plugin that calls os._exit -------------------------------------------------------------------


@pytest.mark.parametrize("where", ["import", "register"])
def test_a_plugin_calling_os_exit_fails_like_any_plugin_and_the_command_goes_on(tmp_path, where):
    folder = tmp_path / "plugins"
    if where == "import":
        write_plugin(folder, "quitter", 'print("bye")\nimport os\nos._exit(0)\n')
    else:
        write_plugin(folder, "quitter", "import os\n", register="os._exit(0)")
    write_plugin(folder, "zzz_after")
    proc = vdnodes("plugins", "--json", plugin_path=folder)
    assert proc.returncode == 0, proc.stderr
    plugins = by_name(proc.stdout)
    assert plugins["quitter"]["status"] == "failed"
    assert "it called os._exit(0)" in plugins["quitter"]["reason"]
    assert f"quitter.py:" in plugins["quitter"]["reason"]  # where it called it
    assert plugins["zzz_after"]["status"] == "loaded"

    proc = vdnodes("nodes", plugin_path=folder)
    assert proc.returncode == 0 and "zzz_after.same" in proc.stdout, proc.stderr
    assert "plugin 'quitter' was not loaded" in proc.stderr and "Traceback" not in proc.stderr
    # A command that fails for its own reasons still says so (exit 2), plugin or not.
    proc = vdnodes("validate", "graphs/nosuch.json", plugin_path=folder)
    assert proc.returncode == 2, proc.stderr


def test_os_exit_outside_plugin_loading_is_the_real_one(tmp_path):
    """The CLI's own fast exit (``entry`` ends with os._exit) is untouched after plugins loaded."""
    folder = tmp_path / "plugins"
    write_plugin(folder, "quitter", "import os\nos._exit(0)\n")
    code = ("import os, sys; from vdnodes.nodes import build_registry_with_plugins; "
            "build_registry_with_plugins(); sys.stdout.flush(); os._exit(7)")
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "VDNODES_PLUGIN_PATH": str(folder),
               "VDNODES_NO_PLUGINS": ""}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 7, proc.stderr
