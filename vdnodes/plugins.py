"""Plugins: discovery, manifests, the API they register through, and the load report.

A plugin is a Python module (or package) with two names at its top level::

    MANIFEST = {"name": "minimal", "version": "0.1.0", "requires": ">=0.1",
                "adds": {"nodes": ["minimal.invert_image"]}}

    def register(api):                      # api: PluginAPI
        api.add_nodes(nodes_module)

It is found through the ``vdnodes.plugins`` entry-point group (an installed
distribution; the entry point's name is the plugin name) or as a package or
module in a folder listed in ``VDNODES_PLUGIN_PATH`` (its module name, less an
optional ``vdnodes_`` prefix, is the plugin name). ``load_plugins`` imports each
one, checks its manifest and the vdnodes version it needs, and calls
``register``. A plugin that fails anywhere is rolled back completely and
reported; the others and the core keep working. Nothing here imports torch.

Loading is guarded against plugins that misbehave: each import runs in a daemon
thread with a time limit (``VDNODES_PLUGIN_TIMEOUT``, default 10 s), what a
plugin writes to stdout/stderr while it is imported and registered is captured
into its report (never the command's stdout), and ``os._exit`` called from a
plugin raises instead of ending the process. See docs/plugins.md.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import threading
import traceback
import types as pytypes
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vdnodes
from vdnodes.core.node import NodeDecl
from vdnodes.core.registry import FileMigration, Registry, RegistryError
from vdnodes.core.types import TypeDef, suggest
from vdnodes.plugin_guard import GUARD, TIMEOUT_ENV, Capture, Hung, PluginExit, import_bounded, one_line

ENTRY_POINT_GROUP = "vdnodes.plugins"
PATH_ENV = "VDNODES_PLUGIN_PATH"
SAFE_MODE_ENV = "VDNODES_NO_PLUGINS"
DEFAULT_TIMEOUT = 10.0  # seconds one plugin's import may take
API_VERSION = 1  # bumped when PluginAPI changes incompatibly
ADD_KINDS = ("nodes", "types", "modalities", "model_groups")  # what a manifest declares
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MODULE_PREFIX = "vdnodes_"
_VDNODES_DIR = Path(vdnodes.__file__).resolve().parent


class PluginError(Exception):
    """Why one plugin cannot load (a bad manifest, a version it does not support...)."""


def safe_mode_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """``VDNODES_NO_PLUGINS`` set to 1/true/yes/on: start without plugins."""
    value = (environ if environ is not None else os.environ).get(SAFE_MODE_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def timeout_from_env(environ: Mapping[str, str] | None = None) -> float:
    """``VDNODES_PLUGIN_TIMEOUT`` in seconds (default 10; 0: no limit); raises ``PluginError`` if bad."""
    text = (environ if environ is not None else os.environ).get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (0 <= value < float("inf")):  # also refuses nan
        raise PluginError(f"{TIMEOUT_ENV}={text!r}: give the seconds one plugin's import may take, "
                          f"a number like 10 or 2.5 (0: no limit; default {DEFAULT_TIMEOUT:g})")
    return value


def parse_allow(text: str) -> tuple[str, ...]:
    """``"a, b"`` -> ``("a", "b")`` (the ``--plugins`` option)."""
    return tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))


# -- manifest ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """What a plugin says about itself; ``MANIFEST`` is a dict of these fields (or this class)."""

    name: str
    version: str  # the plugin's own version (PEP 440)
    requires: str  # the vdnodes versions it works with: a PEP 440 specifier, ">=0.1,<0.2"
    description: str = ""
    # What register() adds, by kind (ADD_KINDS): node ids, socket type names, modalities and
    # UNet layer groups ("unet.context.<modality>" / "unet.data.<modality>").
    adds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Any) -> Manifest:
        """Check a ``MANIFEST`` value; raises ``PluginError`` naming every problem."""
        if isinstance(raw, Manifest):
            raw = {f: getattr(raw, f) for f in cls.__dataclass_fields__}
        if not isinstance(raw, Mapping):
            raise PluginError(f"MANIFEST must be a dict, got {type(raw).__name__}")
        known = list(cls.__dataclass_fields__)
        problems = [f"unknown field {k!r}{suggest(str(k), known)}" for k in raw if k not in known]
        problems += [f"missing field {k!r}" for k in ("name", "version", "requires") if k not in raw]
        values: dict[str, Any] = {}
        for key in ("name", "version", "requires", "description"):
            if key in raw and not isinstance(raw[key], str):
                problems.append(f"{key!r} must be a string, got {type(raw[key]).__name__}")
            else:
                values[key] = raw.get(key, "")
        adds = raw.get("adds", {})
        values["adds"] = {}
        if not isinstance(adds, Mapping):
            problems.append(f"'adds' must be a dict like {{'nodes': [...]}}, got {type(adds).__name__}")
            adds = {}
        for kind, items in adds.items():
            if kind not in ADD_KINDS:
                problems.append(f"unknown kind {kind!r} in 'adds'{suggest(str(kind), ADD_KINDS)} "
                                f"(kinds: {', '.join(ADD_KINDS)})")
            elif isinstance(items, str) or not isinstance(items, (list, tuple)) or \
                    not all(isinstance(i, str) for i in items):
                problems.append(f"adds[{kind!r}] must be a list of strings")
            else:
                values["adds"][kind] = tuple(items)
        if problems:
            raise PluginError("bad MANIFEST: " + "; ".join(problems))
        if not _NAME.match(values["name"]):
            problems.append(f"name {values['name']!r} must be lower-case letters, digits and '_'")
        for check, key in ((_version, "version"), (requires_specifier, "requires")):
            try:
                check(values[key])
            except PluginError as e:
                problems.append(str(e))
        for g in values["adds"].get("model_groups", ()):
            kind, _, modality = g.removeprefix("unet.").partition(".")
            if not g.startswith("unet.") or kind not in ("context", "data") or not modality:
                problems.append(f"model group {g!r} must be 'unet.context.<modality>' or 'unet.data.<modality>'")
        if problems:
            raise PluginError("bad MANIFEST: " + "; ".join(problems))
        return cls(**values)

    def declared(self, kind: str) -> set[str]:
        return set(self.adds.get(kind, ()))

    def adds_lists(self) -> dict[str, list[str]]:
        return {k: list(self.adds.get(k, ())) for k in ADD_KINDS}


def _version(text: str) -> Any:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text)
    except InvalidVersion:
        raise PluginError(f"version {text!r} is not a PEP 440 version like '0.1.0'") from None


def requires_specifier(text: str) -> Any:
    """``">=0.1,<0.2"`` or ``"vdnodes>=0.1"`` as a ``packaging`` SpecifierSet."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    text = text.strip()
    if not text:
        raise PluginError("'requires' is empty: give the vdnodes versions the plugin works with, "
                          "e.g. '>=0.1,<0.2'")
    try:
        if text[0].isalpha():
            req = Requirement(text)
            if req.name.lower() != "vdnodes":
                raise PluginError(f"'requires' names {req.name!r}; it is about vdnodes only "
                                  "(declare other dependencies in the plugin's package)")
            return req.specifier
        return SpecifierSet(text)
    except (InvalidRequirement, InvalidSpecifier):
        raise PluginError(f"'requires' {text!r} is not a PEP 440 version specifier like '>=0.1,<0.2'") from None


# -- the API a plugin registers through -------------------------------------------------------


class PluginAPI:
    """Handed to ``register(api)``; everything added through it is owned by the plugin.

    Usable only while ``register`` runs. Nothing can replace a core node, type, modality
    or layer group, or another plugin's: the registry refuses duplicates.
    """

    version = API_VERSION

    def __init__(self, registry: Registry, manifest: Manifest) -> None:
        self._registry = registry
        self.manifest = manifest
        self.name = manifest.name
        self._open = True
        self.implicit_modalities: set[str] = set()  # added by add_*_layers for their sockets

    def _check_open(self) -> None:
        if not self._open:
            raise PluginError(f"plugin {self.name!r}: the plugin API is usable only inside register(api)")

    def add_nodes(self, module: pytypes.ModuleType | str) -> list[NodeDecl]:
        """Every ``NodeDecl`` defined in ``module`` (a module or its dotted name), in definition order."""
        self._check_open()
        if isinstance(module, str):
            module = importlib.import_module(module)
        return self._registry.register_module(module, owner=self.name)

    def add_node(self, decl: NodeDecl) -> NodeDecl:
        self._check_open()
        return self._registry.register(decl, owner=self.name)

    def add_type(self, typedef: TypeDef) -> None:
        """A new socket type (``vdnodes.core.types.TypeDef``: name, doc, colour, value check)."""
        self._check_open()
        self._registry.add_type(typedef, owner=self.name)

    def add_modality(self, name: str, doc: str) -> None:
        """A new modality, usable as ``Latent[name]`` / ``Context[name]``."""
        self._check_open()
        self._registry.add_modality(name, doc, owner=self.name)

    def add_file_migration(self, from_version: int, upgrade: FileMigration) -> None:
        """Upgrade a whole graph file from format version ``from_version`` to the next."""
        self._check_open()
        self._registry.add_file_migration(from_version, upgrade, owner=self.name)

    def add_context_layers(self, modality: str, build: Callable[[Any], Any], doc: str = "",
                           presets: Iterable[str] = ()) -> Any:
        """UNet layers that read a new conditioning modality (``unet.context.<modality>``).

        ``build(config)`` returns the ``ContextGroup`` with its weights for a model of that
        ``VDConfig``; ``presets`` names the model configs it was trained for (empty: any).
        """
        return self._add_layers("context", modality, build, doc, presets)

    def add_data_layers(self, modality: str, build: Callable[[Any], Any], doc: str = "",
                        presets: Iterable[str] = ()) -> Any:
        """UNet layers that generate a new modality (``unet.data.<modality>``); see ``add_context_layers``."""
        return self._add_layers("data", modality, build, doc, presets)

    def _add_layers(self, kind: str, modality: str, build: Callable[[Any], Any], doc: str,
                    presets: Iterable[str]) -> Any:
        self._check_open()
        from vdnodes.nodes.models import ModelGroup  # torch-free; imported late to keep this module light

        if modality not in self._registry.types.modalities:  # its sockets need the modality
            self._registry.add_modality(modality, doc or f"added by plugin {self.name!r}", owner=self.name)
            self.implicit_modalities.add(modality)
        component = f"unet.{kind}.{modality}"
        group = ModelGroup(component, build, doc, tuple(presets))
        self._registry.add_model_group(component, group, owner=self.name)
        return group


# -- discovery ---------------------------------------------------------------------------------


@dataclass
class Candidate:
    """A plugin found but not imported yet."""

    name: str
    origin: str  # where it comes from, in words
    load: Callable[[], Any]  # imports it; returns the object holding MANIFEST and register
    problem: str = ""  # set when it cannot even be tried (a bad name)
    location: Path | None = None  # the package folder or .py file, for plugins found on the path


def plugin_path(environ: Mapping[str, str] | None = None) -> list[str]:
    text = (environ if environ is not None else os.environ).get(PATH_ENV, "")
    return [p for p in text.split(os.pathsep) if p.strip()]


def discover(path: Sequence[str] | None = None, *, entry_points: bool = True
             ) -> tuple[list[Candidate], list[str]]:
    """Installed plugins (entry points, by name) then those in ``path`` folders, in order.

    Returns the candidates and the problems found on the way (a folder that does not exist).
    Imports nothing.
    """
    found: list[Candidate] = []
    problems: list[str] = []
    if entry_points:
        found += _entry_point_candidates()
    for folder in plugin_path() if path is None else path:
        cands, problem = _folder_candidates(Path(folder).expanduser())
        found += cands
        if problem:
            problems.append(problem)
    return found, problems


def _entry_point_candidates() -> list[Candidate]:
    from importlib.metadata import entry_points

    out = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)):
        dist = getattr(ep, "dist", None)
        origin = f"entry point {ep.name} = {ep.value}" + (f" ({dist.name} {dist.version})" if dist else "")
        problem = "" if _NAME.match(ep.name) else \
            f"entry point name {ep.name!r} is not a plugin name (lower-case letters, digits and '_')"
        out.append(Candidate(ep.name, origin, ep.load, problem))
    return out


def _folder_candidates(folder: Path) -> tuple[list[Candidate], str]:
    if not folder.is_dir():
        return [], f"{PATH_ENV} folder {str(folder)!r} does not exist"
    out = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and (entry / "__init__.py").is_file():
            module = entry.name
        elif entry.is_file() and entry.suffix == ".py":
            module = entry.stem
        else:
            continue
        if module.startswith("_") or not module.isidentifier():
            continue
        name = module.removeprefix(_MODULE_PREFIX) or module
        problem = "" if _NAME.match(name) else \
            f"module name {module!r} does not make a plugin name (lower-case letters, digits and '_')"
        out.append(Candidate(name, str(entry), lambda e=entry, m=module: _import_path(e, m), problem, entry))
    if not out:
        projects = [str(d) for d in sorted(folder.iterdir()) if (d / "pyproject.toml").is_file()]
        hint = f"; for plugin projects, list their folders: {os.pathsep.join(projects)}" if projects else ""
        return [], (f"{PATH_ENV} folder {str(folder)!r} holds no plugin (a package folder with "
                    f"__init__.py, or a .py module){hint}")
    return out, ""


def _import_path(entry: Path, module: str) -> pytypes.ModuleType:
    """Import a package folder or a .py file under its own name (relative imports work).

    A package without ``MANIFEST`` in its ``__init__`` gives its ``plugin`` submodule, where an
    entry point like ``palette = "vdnodes_palette.plugin"`` would point.
    """
    mod = _import_file(entry, module)
    if entry.is_dir() and not hasattr(mod, "MANIFEST") and (entry / "plugin.py").is_file():
        return importlib.import_module(f"{module}.plugin")
    return mod


def _import_file(entry: Path, module: str) -> pytypes.ModuleType:
    is_pkg = entry.is_dir()
    init = (entry / "__init__.py") if is_pkg else entry
    loaded = sys.modules.get(module)
    if loaded is not None:
        if getattr(loaded, "__file__", None) and Path(loaded.__file__).resolve() == init.resolve():
            return loaded  # imported before (another registry in this process)
        raise PluginError(f"module name {module!r} is already taken by {_where(loaded)}; rename the plugin")
    other = importlib.util.find_spec(module)
    if other is not None and other.origin and Path(other.origin).resolve() != init.resolve():
        raise PluginError(f"module name {module!r} is already taken by {other.origin}; rename the plugin")
    spec = importlib.util.spec_from_file_location(
        module, init, submodule_search_locations=[str(entry)] if is_pkg else None)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    before = set(sys.modules)
    sys.modules[module] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        for name in set(sys.modules) - before:  # the package and whatever of it got imported
            if name == module or name.startswith(module + "."):
                del sys.modules[name]
        raise
    return mod


def _where(mod: pytypes.ModuleType) -> str:
    return str(getattr(mod, "__file__", None) or mod.__name__)


# -- loading -----------------------------------------------------------------------------------


@dataclass
class PluginStatus:
    """What happened to one plugin: ``loaded``, ``failed`` (with the reason) or ``skipped``."""

    name: str
    origin: str
    status: str
    reason: str = ""
    version: str = ""
    requires: str = ""
    description: str = ""
    adds: dict[str, list[str]] = field(default_factory=dict)  # what it added (or declares, if not loaded)
    detail: str = ""  # the traceback, for --debug
    file: str = ""  # the file its MANIFEST was read from
    # What it wrote to stdout / stderr while it was imported and registered (captured, never shown
    # on the command's stdout), each kept to OUTPUT_KEEP characters.
    output: dict[str, str] = field(default_factory=lambda: {"stdout": "", "stderr": ""})
    output_chars: dict[str, int] = field(default_factory=dict, repr=False)  # before keeping OUTPUT_KEEP

    def output_note(self) -> str:
        """One line saying what it printed while loading ("" if nothing)."""
        said = [f"on {k}: {one_line(v, self.output_chars.get(k, len(v)))}"
                for k, v in self.output.items() if v.strip()]
        return f"plugin {self.name!r} printed while loading, " + "; ".join(said) if said else ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "reason": self.reason, "version": self.version,
                "requires": self.requires, "origin": self.origin, "description": self.description,
                "adds": self.adds, "output": self.output}


@dataclass
class PluginReport:
    """The outcome of ``load_plugins``: every plugin found, and problems not tied to one."""

    plugins: list[PluginStatus] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # a missing path folder, an unknown --plugins name
    missing: list[str] = field(default_factory=list)  # allow-list names that no plugin has
    safe_mode: bool = False
    allow: tuple[str, ...] | None = None

    def _with(self, status: str) -> list[PluginStatus]:
        return [p for p in self.plugins if p.status == status]

    @property
    def loaded(self) -> list[PluginStatus]:
        return self._with("loaded")

    @property
    def failed(self) -> list[PluginStatus]:
        return self._with("failed")

    @property
    def skipped(self) -> list[PluginStatus]:
        return self._with("skipped")

    def get(self, name: str) -> PluginStatus:
        for p in self.plugins:
            if p.name == name:
                return p
        raise KeyError(name)

    def warnings(self) -> list[str]:
        """One line per failed plugin and per problem (what run/validate print on stderr)."""
        return [*self.problems, *(f"plugin {p.name!r} was not loaded: {p.reason}" for p in self.failed)]

    def output_notes(self) -> list[str]:
        """One line per plugin that printed while it loaded (the CLI shows them on stderr)."""
        return [note for p in self.plugins if (note := p.output_note())]

    def summary(self) -> str:
        if self.safe_mode:
            return "plugins off (safe mode)"
        parts = [f"{len(self.loaded)} loaded"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        return "plugins: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"vdnodes": vdnodes.__version__, "api": API_VERSION, "safe_mode": self.safe_mode,
                "allow": list(self.allow) if self.allow is not None else None,
                "plugins": [p.to_dict() for p in self.plugins], "problems": self.problems}


def load_plugins(registry: Registry, allow: Iterable[str] | None = None, enabled: bool = True, *,
                 path: Sequence[str] | None = None, entry_points: bool = True,
                 timeout: float | None = None) -> PluginReport:
    """Load every plugin found (only those named in ``allow``, if given) into ``registry``.

    ``enabled=False`` is safe mode: plugins are listed, not imported. ``path`` replaces
    ``VDNODES_PLUGIN_PATH``. ``timeout`` (seconds one plugin's import may take; 0: no limit)
    replaces ``VDNODES_PLUGIN_TIMEOUT``. Never raises for a plugin's fault: see the report.
    """
    allow = tuple(allow) if allow is not None else None
    report = PluginReport(safe_mode=not enabled, allow=allow)
    candidates, report.problems = discover(path, entry_points=entry_points)
    if timeout is None:
        try:
            timeout = timeout_from_env()
        except PluginError as e:
            report.problems.append(f"{e}; using {DEFAULT_TIMEOUT:g} s")
            timeout = DEFAULT_TIMEOUT
    elif not 0 <= timeout < float("inf"):
        raise ValueError(f"timeout={timeout!r}: seconds, 0 or more (0: no limit)")
    seen: dict[str, PluginStatus] = {}
    for cand in candidates:
        status = PluginStatus(cand.name, cand.origin, "failed")
        report.plugins.append(status)
        first = seen.get(cand.name)
        if not enabled:
            status.status, status.reason = "skipped", "safe mode (--no-plugins or VDNODES_NO_PLUGINS=1)"
        elif allow is not None and cand.name not in allow:
            status.status, status.reason = "skipped", "not in the allow-list (--plugins)"
        elif first is not None and _same_code(first.file, cand.location):
            status.status = "skipped"
            status.reason = f"the same code as the plugin loaded from {first.origin}"
        elif first is not None:
            status.reason = f"a plugin named {cand.name!r} was found first at {first.origin}; this one is ignored"
        elif cand.problem:
            status.reason = cand.problem
        else:
            _load_guarded(registry, cand, status, timeout)
        seen.setdefault(cand.name, status)
    if allow is not None and enabled:
        report.missing = [n for n in allow if n not in seen]
        report.problems += [f"no plugin named {n!r} was found{suggest(n, sorted(seen))}" for n in report.missing]
    return report


def _same_code(file: str, location: Path | None) -> bool:
    """A plugin on the path that is the installed one (``pip install -e`` plus the folder on the path)."""
    if not file or location is None:
        return False
    file_path, location = Path(file).resolve(), location.resolve()
    return file_path == location or location in file_path.parents


def _load_guarded(registry: Registry, cand: Candidate, status: PluginStatus, timeout: float) -> None:
    """``_load_one`` with the plugin's output captured and ``os._exit`` turned into an error."""
    capture = Capture()
    GUARD.install()
    try:
        with GUARD.capturing(capture):
            _load_one(registry, cand, status, timeout)
    finally:
        GUARD.uninstall()
        status.output, status.output_chars = capture.text(), capture.totals()


def _load_one(registry: Registry, cand: Candidate, status: PluginStatus, timeout: float) -> None:
    """Import, check and register one plugin; on any failure leave the registry as it was."""
    try:
        obj = import_bounded(cand, timeout)
    except Hung as e:
        status.reason = str(e)
        if e.stack:
            where = _plugin_frame_in(e.stack)
            status.reason += f" (at {where})" if where else ""
            status.detail = ("The import was still running here (most recent call last):\n"
                             + "".join(e.stack.format()))
        return
    except (Exception, SystemExit) as e:
        _fail(status, "import failed", e)
        return
    module = obj if isinstance(obj, pytypes.ModuleType) else sys.modules.get(getattr(obj, "__module__", ""), None)
    status.file = str(getattr(module, "__file__", "") or "")
    try:
        if not hasattr(obj, "MANIFEST"):
            raise PluginError("it has no MANIFEST (see docs/plugins.md)")
        manifest = Manifest.parse(obj.MANIFEST)
        register = getattr(obj, "register", None)
        if not callable(register):
            raise PluginError("it has no register(api) function")
        if manifest.name != cand.name:
            raise PluginError(f"its manifest names it {manifest.name!r}, but it was found as {cand.name!r} "
                              "(the entry point's name, or the module name less 'vdnodes_', must match)")
    except PluginError as e:
        status.reason = str(e)
        return
    status.version, status.requires = manifest.version, manifest.requires
    status.description, status.adds = manifest.description, manifest.adds_lists()
    if not requires_specifier(manifest.requires).contains(vdnodes.__version__, prereleases=True):
        wanted = manifest.requires if manifest.requires[0].isalpha() else f"vdnodes {manifest.requires}"
        status.reason = f"it needs {wanted}, and this is vdnodes {vdnodes.__version__}"
        return
    saved = registry.checkpoint()
    before = _contents(registry)
    api = PluginAPI(registry, manifest)
    try:
        register(api)
        added = {k: sorted(_contents(registry)[k] - before[k]) for k in ADD_KINDS}
        _check_declared(manifest, added, api.implicit_modalities)
    except (Exception, SystemExit) as e:
        registry.rollback(saved)
        _fail(status, "register() failed" if not isinstance(e, PluginError) else "", e)
        status.reason += "; nothing it added was kept"
        return
    finally:
        api._open = False
    status.status, status.adds = "loaded", added


def _contents(registry: Registry) -> dict[str, set[str]]:
    return {"nodes": set(registry.ids()), "types": set(registry.types.defs),
            "modalities": set(registry.types.modalities), "model_groups": set(registry.model_groups)}


def _check_declared(manifest: Manifest, added: Mapping[str, list[str]], implicit: set[str]) -> None:
    """The manifest is a promise: register() must add exactly what it lists."""
    problems = []
    for kind in ADD_KINDS:
        declared, got = manifest.declared(kind), set(added[kind])
        extra = sorted(got - declared - (implicit if kind == "modalities" else set()))
        short = sorted(declared - got)
        if extra:
            problems.append(f"it added {kind} that its MANIFEST['adds'] does not list: {extra}")
        if short:
            problems.append(f"its MANIFEST['adds'] lists {kind} that register() did not add: {short}")
    if problems:
        raise PluginError("; ".join(problems))


def _fail(status: PluginStatus, what: str, e: BaseException) -> None:
    where = _plugin_frame(e)
    text = str(e) if isinstance(e, (PluginError, RegistryError, PluginExit)) else f"{type(e).__name__}: {e}"
    status.reason = f"{what}: {text}" if what else text
    if where and not isinstance(e, PluginError):
        status.reason += f" (at {where})"
    status.detail = "".join(traceback.format_exception(type(e), e, e.__traceback__))


def _plugin_frame(e: BaseException) -> str:
    """``file:line`` of the innermost frame outside vdnodes and importlib (the plugin's own code)."""
    where = _plugin_frame_in(traceback.extract_tb(e.__traceback__))
    if not where and isinstance(e, SyntaxError) and e.filename:
        return f"{e.filename}:{e.lineno}"
    return where


def _plugin_frame_in(stack: traceback.StackSummary) -> str:
    for frame in reversed(stack):
        name = frame.filename
        if name.startswith("<") or "importlib" in Path(name).parts or name == threading.__file__:
            continue
        try:
            Path(name).resolve().relative_to(_VDNODES_DIR)
            continue
        except ValueError:
            return f"{name}:{frame.lineno}"
    return ""
