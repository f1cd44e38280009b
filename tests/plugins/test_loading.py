"""Loading plugins from folders: ownership, failures reported and rolled back, safe mode, allow-list."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import vdnodes
from vdnodes.core.registry import Registry
from vdnodes.nodes import build_registry, build_registry_with_plugins
from vdnodes.plugins import Manifest, PluginError, load_plugins

from tests.plugins.support import FIXTURES, fixture_path

ROOT = Path(__file__).resolve().parents[2]


def load(*folders: str, **kw):
    registry = build_registry()
    return registry, load_plugins(registry, path=fixture_path(*folders), entry_points=False, **kw)


def state(registry: Registry) -> tuple:
    return (registry.ids(), sorted(registry.types.defs), sorted(registry.types.modalities),
            sorted(registry.model_groups), sorted(registry.file_migrations))


CORE = state(build_registry())


def test_a_good_plugin_adds_everything_it_declares_owned_by_it():
    registry, report = load("good")
    tidy = report.get("tidy")
    assert (tidy.status, tidy.version, tidy.reason) == ("loaded", "1.2.0", "")
    assert tidy.adds == {"nodes": ["tidy.shout"], "types": ["Shout"], "modalities": ["scent"],
                         "model_groups": ["unet.context.scent"]}
    decl = registry.get("tidy.shout")
    assert decl.plugin == "tidy" and registry.owner("tidy.shout") == "tidy"
    assert decl(None, ["  quiet   please "]) == ["QUIET PLEASE!"]  # a submodule and a data file of the package
    assert registry.owner_of("type", "Shout") == "tidy"
    assert registry.owner_of("modality", "scent") == "tidy"
    assert registry.owner_of("model_group", "unet.context.scent") == "tidy"
    assert registry.owner_of("file_migration", "41") == "tidy"
    group = registry.model_groups["unet.context.scent"]
    assert (group.component, group.modality) == ("unet.context.scent", "scent")
    assert registry.owner("vd.load_image") == "core" and registry.owner_of("type", "Image") == "core"


def test_the_api_only_works_inside_register():
    from tidy import LAST_API  # imported by the previous load, or now

    load("good")
    with pytest.raises(PluginError, match="only inside register"):
        LAST_API[-1].add_modality("late", "too late")


def test_loading_twice_into_two_registries_reuses_the_module():
    (_, first), (_, second) = load("good"), load("good")
    assert first.get("tidy").status == second.get("tidy").status == "loaded"


def test_an_import_error_is_reported_with_its_place_and_the_rest_loads():
    registry, report = load("broken", "good")
    crash = report.get("crashes")
    assert crash.status == "failed"
    assert crash.reason.startswith("import failed: ZeroDivisionError: division by zero (at ")
    assert str(FIXTURES / "broken" / "crashes.py") + ":3)" in crash.reason
    assert "Traceback" in crash.detail and "Traceback" not in crash.reason
    assert "crashes" not in sys.modules  # a failed import leaves nothing half-imported
    assert report.get("tidy").status == "loaded" and "tidy.shout" in registry
    assert set(CORE[0]) < set(registry.ids())
    assert any("'crashes' was not loaded" in w for w in report.warnings())


def test_a_plugin_failing_half_way_is_rolled_back_completely():
    registry, report = load("broken")
    half = report.get("halfway")
    assert half.status == "failed"
    assert "register() failed: RuntimeError: the second half is missing" in half.reason
    assert "halfway" in half.reason and "nothing it added was kept" in half.reason
    assert state(registry) == CORE  # no node, type, modality, layer group or migration of it stayed
    assert half.adds["nodes"] == ["halfway.first"]  # what it declared, for the report


def test_a_plugin_adding_what_its_manifest_does_not_list_is_refused():
    registry, report = load("broken")
    und = report.get("undeclared")
    assert und.status == "failed"
    assert "does not list: ['undeclared.sneaky']" in und.reason
    assert "undeclared.listed" not in registry


def test_a_plugin_cannot_replace_a_core_node_or_another_plugins_node():
    core_decl = build_registry().get("vd.load_image")
    registry, report = load("good", "clash")
    replacer, thief = report.get("replacer"), report.get("thief")
    assert replacer.status == thief.status == "failed"
    assert "'vd.load_image': id already registered by 'core'; a node cannot be replaced" in replacer.reason
    assert "replacer.py:" in replacer.reason  # the plugin's own line, not the registry's
    assert "already registered by 'tidy'" in thief.reason
    assert "replacer.fine" not in registry  # added before the refused one: rolled back too
    assert registry.get("vd.load_image").version == core_decl.version and registry.owner("vd.load_image") == "core"
    assert registry.get("tidy.shout").version == "1.0.0" and registry.owner("tidy.shout") == "tidy"


def test_a_plugin_needing_a_newer_vdnodes_is_skipped_before_register():
    registry, report = load("future")
    p = report.get("needs_new")
    assert (p.status, p.version, p.requires) == ("failed", "3.0.0", "vdnodes>=99")
    assert p.reason == f"it needs vdnodes>=99, and this is vdnodes {vdnodes.__version__}"
    assert state(registry) == CORE


def test_a_module_name_python_already_uses_is_refused():
    _, report = load("taken")
    assert report.get("json").status == "failed"
    assert "module name 'json' is already taken" in report.get("json").reason


def test_the_first_plugin_of_a_name_wins_and_the_second_is_reported():
    registry, report = load("good", "other_tidy")
    first, second = [p for p in report.plugins if p.name == "tidy"]
    assert first.status == "loaded" and second.status == "failed"
    assert "was found first at" in second.reason and "vdnodes_tidy.py" in second.origin
    assert registry.get("tidy.shout").plugin == "tidy"


def test_the_same_plugin_found_twice_is_loaded_once():
    _, report = load("good", "good")  # as with `pip install -e` plus its folder on the path
    first, second = [p for p in report.plugins if p.name == "tidy"]
    assert first.status == "loaded" and second.status == "skipped" and "the same code" in second.reason
    assert not any("tidy" in w for w in report.warnings())


def test_safe_mode_lists_plugins_but_imports_none():
    registry, report = load("untouched", "good", enabled=False)
    assert {p.status for p in report.plugins} == {"skipped"}
    assert "safe mode" in report.get("untouched").reason
    assert "untouched" not in sys.modules
    assert state(registry) == CORE
    assert report.summary() == "plugins off (safe mode)" and report.warnings() == []


def test_the_allow_list_loads_only_the_named_plugins():
    registry, report = load("untouched", "good", "broken", allow=["tidy", "nosuch"])
    assert report.get("tidy").status == "loaded"
    assert report.get("crashes").status == report.get("untouched").status == "skipped"
    assert "untouched" not in sys.modules
    assert report.missing == ["nosuch"] and "no plugin named 'nosuch'" in report.problems[0]


def test_a_missing_path_folder_is_a_problem_not_an_error():
    _, report = load("does_not_exist")
    assert report.plugins == [] and "does not exist" in report.problems[0]


def test_the_environment_sets_the_path_and_safe_mode(monkeypatch):
    monkeypatch.setenv("VDNODES_PLUGIN_PATH", os.pathsep.join(fixture_path("good", "broken")))
    registry, report = build_registry_with_plugins()
    assert "tidy.shout" in registry and report.get("crashes").status == "failed"
    monkeypatch.setenv("VDNODES_NO_PLUGINS", "1")
    registry, report = build_registry_with_plugins()
    assert "tidy.shout" not in registry and report.safe_mode


def test_discovery_and_loading_import_no_torch():
    code = ("import sys; from vdnodes.nodes import build_registry_with_plugins; "
            "r, rep = build_registry_with_plugins(); "
            "print(sorted(p.name for p in rep.loaded), 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VDNODES_NO_PLUGINS": "",
           "VDNODES_PLUGIN_PATH": os.pathsep.join([*fixture_path("good"), str(ROOT / "plugins" / "minimal")])}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "False", out.stdout
    assert "'minimal'" in out.stdout and "'tidy'" in out.stdout


# -- manifests ---------------------------------------------------------------------------------


def test_manifest_problems_are_named_together():
    with pytest.raises(PluginError) as info:
        Manifest.parse({"name": "x", "version": "1.0", "requries": ">=0.1", "adds": {"node": ["x.y"]}})
    msg = str(info.value)
    assert "unknown field 'requries' (did you mean 'requires'?)" in msg
    assert "missing field 'requires'" in msg
    assert "unknown kind 'node' in 'adds' (did you mean 'nodes'?)" in msg


@pytest.mark.parametrize("field, value, needle", [
    ("name", "Bad-Name", "lower-case"),
    ("version", "one", "PEP 440 version"),
    ("requires", "", "'requires' is empty"),
    ("requires", "~~1", "not a PEP 440 version specifier"),
    ("requires", "torch>=2", "about vdnodes only"),
    ("adds", {"model_groups": ["unet.extra.x"]}, "must be 'unet.context.<modality>'"),
    ("adds", {"nodes": "x.y"}, "must be a list of strings"),
])
def test_bad_manifest_fields(field, value, needle):
    raw = {"name": "ok", "version": "0.1.0", "requires": ">=0.1", field: value}
    with pytest.raises(PluginError, match="bad MANIFEST") as info:
        Manifest.parse(raw)
    assert needle in str(info.value)


def test_requires_accepts_a_bare_specifier_or_a_vdnodes_requirement():
    for text in (">=0.1,<1", "vdnodes>=0.1", "vdnodes ~= 0.1"):
        assert Manifest.parse({"name": "ok", "version": "0.1.0", "requires": text}).requires == text
