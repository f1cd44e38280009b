"""Plugins on the command line: `vdnodes plugins`, warnings for run/validate, safe mode, the allow-list."""

from __future__ import annotations

import json
import os

import pytest

from vdnodes.cli import main

from tests.plugins.support import fixture_path


@pytest.fixture(autouse=True)
def plugin_path(monkeypatch):
    """The good and the broken fixture plugins on VDNODES_PLUGIN_PATH (installed ones may load too)."""
    monkeypatch.setenv("VDNODES_PLUGIN_PATH", os.pathsep.join(fixture_path("good", "broken")))
    monkeypatch.delenv("VDNODES_NO_PLUGINS", raising=False)


@pytest.fixture
def shout_graph(tmp_path):
    path = tmp_path / "shout.json"
    path.write_text(json.dumps({"format": "vdnodes.graph", "version": 1, "nodes": {
        "words": {"type": "vd.text", "params": {"text": "hello   there"}},
        "loud": {"type": "tidy.shout", "inputs": {"text": ["words", "text"]}},
        "save": {"type": "vd.save_text", "params": {"prefix": "loud"}, "inputs": {"text": ["loud", "text"]}},
    }}))
    return path


def test_plugins_lists_what_loaded_and_what_failed_with_the_reason(capsys):
    assert main(["plugins"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert any(line.startswith("loaded   tidy") and "1.2.0" in line for line in lines)
    assert any(line.startswith("failed   crashes") for line in lines)
    assert "import failed: ZeroDivisionError: division by zero" in out
    assert "nodes: tidy.shout; types: Shout; modalities: scent; model_groups: unet.context.scent" in out
    assert "the second half is missing" in out and "nothing it added was kept" in out
    assert "Traceback" not in out + err
    assert "failed" in lines[-1] and lines[-1].startswith("plugins: ")


def test_plugins_json_and_debug(capsys):
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["tidy"]["status"] == "loaded" and by_name["tidy"]["adds"]["nodes"] == ["tidy.shout"]
    assert by_name["halfway"]["status"] == "failed" and "second half" in by_name["halfway"]["reason"]
    assert data["safe_mode"] is False and data["allow"] is None and len(data["plugin_path"]) == 2
    assert main(["plugins", "--debug"]) == 0
    assert "Traceback" in capsys.readouterr().out  # asked for


def test_run_and_validate_warn_about_broken_plugins_and_go_on(shout_graph, tmp_path, capsys):
    assert main(["validate", str(shout_graph)]) == 0
    err = capsys.readouterr().err
    assert "vdnodes: warning: plugin 'crashes' was not loaded: import failed: ZeroDivisionError" in err
    assert "vdnodes: warning: plugin 'halfway' was not loaded" in err
    assert "Traceback" not in err
    assert main(["run", str(shout_graph), "--out", str(tmp_path / "out")]) == 0
    assert "Traceback" not in capsys.readouterr().err
    (saved,) = (tmp_path / "out").iterdir()
    assert saved.read_text().strip() == "HELLO THERE!"


def test_nodes_marks_plugin_nodes(capsys):
    assert main(["nodes"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "tidy.shout" in x)
    assert line.endswith("[plugin tidy]")


def test_safe_mode_from_the_option_or_the_environment(shout_graph, monkeypatch, capsys):
    assert main(["validate", str(shout_graph), "--no-plugins"]) == 2
    err = capsys.readouterr().err
    assert "unknown node type 'tidy.shout'" in err and "plugins are off" in err
    assert "warning" not in err and "Traceback" not in err
    monkeypatch.setenv("VDNODES_NO_PLUGINS", "1")
    assert main(["validate", str(shout_graph)]) == 2
    assert "plugins are off" in capsys.readouterr().err
    assert main(["plugins"]) == 0
    assert "safe mode" in capsys.readouterr().out
    # An explicit allow-list wins over the environment.
    assert main(["validate", str(shout_graph), "--plugins", "tidy"]) == 0
    assert "warning" not in capsys.readouterr().err  # the broken ones were not even tried


def test_the_allow_list(shout_graph, capsys):
    assert main(["validate", str(shout_graph), "--plugins", "crashes"]) == 2
    err = capsys.readouterr().err
    assert "plugin 'crashes' was not loaded" in err
    assert "it may come from a plugin that was not loaded" in err
    assert main(["plugins", "--plugins", "tidy, halfway"]) == 0
    out = capsys.readouterr().out
    assert "loaded   tidy" in out and "failed   halfway" in out and "skipped  crashes" in out


@pytest.mark.parametrize("value, needle", [("nosuch", "no plugin named 'nosuch' was found"),
                                           ("tidi", "no plugin named 'tidi' (did you mean 'tidy'?) was found"),
                                           (" , ", "give one or more plugin names")])
def test_allow_list_mistakes_are_user_errors(shout_graph, capsys, value, needle):
    assert main(["validate", str(shout_graph), "--plugins", value]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_safe_mode_and_an_allow_list_exclude_each_other(shout_graph, capsys):
    with pytest.raises(SystemExit) as info:
        main(["validate", str(shout_graph), "--no-plugins", "--plugins", "tidy"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
