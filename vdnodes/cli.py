"""The ``vdnodes`` command line: run, validate, nodes, plugins, graph-from-png, gui.

Exit codes: 0 ok, 1 the run failed, 2 invalid input or graph. User mistakes
print one paragraph, never a traceback (``--debug`` shows it). Heavy imports
(torch, the model) happen only inside the commands that need them, so
``vdnodes --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vdnodes",
        description="Versatile Diffusion as typed nodes: run, check and list node graphs.",
        epilog="Exit codes: 0 ok, 1 run failed, 2 invalid input or graph.")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    # Commands that build a registry take the plugin options (docs/plugins.md).
    plug = argparse.ArgumentParser(add_help=False)
    choice = plug.add_argument_group("plugins").add_mutually_exclusive_group()
    choice.add_argument("--no-plugins", action="store_true",
                        help="safe mode: load no plugins (also VDNODES_NO_PLUGINS=1)")
    choice.add_argument("--plugins", metavar="NAME[,NAME...]", default=None,
                        help="load only these plugins")

    run = sub.add_parser("run", parents=[plug], help="run a graph (JSON, or a PNG saved by vdnodes)")
    run.add_argument("graph", help="graph file: .json, or a .png that embeds a graph")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.PARAM=VALUE",
                     help="override a param (or a graph input by name); repeatable")
    run.add_argument("--seed", type=int, default=None, help="base seed mixed into every seeded node")
    run.add_argument("--out", default="out", metavar="DIR", help="folder for saved outputs (default: out)")
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    run.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                     help="compute dtype for model nodes (default: float32)")
    speed = run.add_argument_group("speed and memory (docs/performance.md)")
    speed.add_argument("--max-memory", type=float, default=None, metavar="GB",
                       help="memory an image VAE pass may use before it tiles (default: half of what is free)")
    speed.add_argument("--compile", action="store_true", help="torch.compile the UNet (pays off on CUDA)")
    speed.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                       help="NHWC convolutions (auto: on for CUDA, off for CPU)")
    run.add_argument("--output", dest="targets", action="append", default=None, metavar="NAME",
                     help="run only what this graph output (or NODE.OUTPUT / NODE) needs; repeatable")
    run.add_argument("--json-events", action="store_true", help="print run events as JSON lines on stdout")
    run.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    from vdnodes.cli_sweep import add_sweep_args

    add_sweep_args(run)

    val = sub.add_parser("validate", parents=[plug],
                         help="type-check a graph and dry-run it without loading weights")
    val.add_argument("graph")
    val.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.PARAM=VALUE")
    val.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    nodes = sub.add_parser("nodes", parents=[plug], help="list the installed node types")
    fmt = nodes.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable declarations")
    fmt.add_argument("--markdown", action="store_true", help="the node reference (docs/nodes.md)")
    nodes.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    plugins = sub.add_parser("plugins", parents=[plug], help="list the plugins found: loaded, failed, skipped")
    plugins.add_argument("--json", action="store_true", help="machine-readable report")
    plugins.add_argument("--debug", action="store_true", help="show the traceback of each failed plugin")

    g2p = sub.add_parser("graph-from-png", help="print the graph embedded in a PNG saved by vdnodes")
    g2p.add_argument("png")
    g2p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    sub.add_parser("train-nano", add_help=False,
                           help="train the embedded vd-nano model (see 'vdnodes train-nano --help')")
    sub.add_parser("eval-nano", add_help=False,
                   help="measure vd-nano's flows with the scene checker (see 'vdnodes eval-nano --help')")

    gui = sub.add_parser("gui", parents=[plug], help="open the desktop canvas (needs: pip install 'vdnodes[gui]')")
    gui.add_argument("graph", nargs="?", default=None, help="graph to open: .json, or a .png saved by vdnodes")
    gui.add_argument("--out", default="out", metavar="DIR", help="folder for saved outputs (default: out)")
    gui.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    gui.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never hang on a model hub lookup
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train-nano"]:  # its own parser owns every option, --help included
        from vdnodes.nano.training.cli import main as train_main

        return train_main(argv[1:])
    if argv[:1] == ["eval-nano"]:
        from vdnodes.nano.quality import main as eval_main

        return eval_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return EXIT_INVALID
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("vdnodes: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vdnodes nodes | head`: the reader left, nothing to report
        sys.stderr.close()
        return EXIT_OK
    except Exception as e:  # every error ends here: one paragraph unless --debug
        from vdnodes.core.errors import VDNodesError

        if args.debug:
            import traceback

            traceback.print_exc()
        if isinstance(e, VDNodesError):
            print(f"vdnodes: {e}", file=sys.stderr)
            return e.exit_code
        print(f"vdnodes: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_FAILED


_ONE_SHOT = False  # set by ``entry``: this process runs one command, then exits


def entry() -> None:
    """The ``vdnodes`` console command (and ``python -m vdnodes``): ``main``, then exit."""
    global _ONE_SHOT
    _ONE_SHOT = True
    argv = sys.argv[1:]
    code = main(argv)
    if argv[:1] == ["gui"] or "torch" not in sys.modules:
        sys.exit(code)  # Qt tears its windows down in the normal exit; without torch it is quick
    # With torch and transformers loaded, Python's own finalisation takes about a second on a
    # 2-core CPU (i2t2i_edit: 8.6 s -> 7.5 s from start to exit). Every file a command writes is
    # complete and closed when ``main`` returns (written atomically), so flush what is left in
    # the standard streams and the log handlers, and leave without it.
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed stream or a reader that left
            pass
    os._exit(code or 0)


def _registry(args: argparse.Namespace):
    return _registry_and_report(args)[0]


def _registry_and_report(args: argparse.Namespace, *, warn: bool = True):
    """The core nodes plus the plugins the options allow; plugin failures are warnings on stderr."""
    from vdnodes.core.errors import UserInputError
    from vdnodes.nodes import build_registry_with_plugins
    from vdnodes.plugins import PluginError, parse_allow, safe_mode_from_env, timeout_from_env

    allow = None
    if args.plugins is not None:
        allow = parse_allow(args.plugins)
        if not allow:
            raise UserInputError("--plugins: give one or more plugin names separated by commas, e.g. "
                                 "--plugins minimal,palette (or --no-plugins for none)")
    # An explicit --plugins list loads those plugins even when VDNODES_NO_PLUGINS is set.
    enabled = False if args.no_plugins else (True if allow else None)
    if enabled or (enabled is None and not safe_mode_from_env()):  # safe mode must always start
        try:
            timeout_from_env()
        except PluginError as e:
            raise UserInputError(str(e)) from None
    registry, report = build_registry_with_plugins(enabled=enabled, allow=allow)
    args.plugin_report = report
    if report.missing:
        from vdnodes.core.types import suggest

        found = sorted({p.name for p in report.plugins})
        names = ", ".join(repr(n) + suggest(n, found) for n in report.missing)
        raise UserInputError(f"--plugins: no plugin named {names} was found "
                             f"(found: {', '.join(found) or 'none'}); 'vdnodes plugins' lists what is installed")
    for line in report.output_notes():  # what plugins printed: stderr, so stdout stays machine-readable
        print(f"vdnodes: {line}", file=sys.stderr)
    if warn:
        for line in report.warnings():
            print(f"vdnodes: warning: {line}", file=sys.stderr)
        if report.failed:
            print("vdnodes: warning: 'vdnodes plugins' shows the details; --no-plugins starts without plugins",
                  file=sys.stderr)
        for p in report.failed if args.debug else ():
            print(p.detail, file=sys.stderr, end="")
    return registry, report


def _load(args: argparse.Namespace, registry: Any):
    from vdnodes.core.errors import GraphError
    from vdnodes.core.graph import load_graph, set_param, validate

    try:
        graph = load_graph(args.graph, registry)
    except GraphError as e:
        raise _with_plugin_hint(e, getattr(args, "plugin_report", None)) from None
    for item in args.sets:
        target, eq, value = item.partition("=")
        if not eq:
            from vdnodes.core.errors import UserInputError

            raise UserInputError(f"--set {item!r}: expected NODE.PARAM=VALUE")
        set_param(graph, registry, target.strip(), value)
    problems = validate(graph, registry)
    if problems:
        raise GraphError(problems, graph.source)
    return graph


def _with_plugin_hint(error: Any, report: Any) -> Any:
    """An unknown node type may belong to a plugin that is off or failed: say so in its hint."""
    from dataclasses import replace

    from vdnodes.core.errors import GraphError

    if report is None:
        return error
    if report.safe_mode:
        hint = "plugins are off: --no-plugins or VDNODES_NO_PLUGINS=1; it may come from a plugin"
    elif report.failed or report.skipped:
        hint = "it may come from a plugin that was not loaded; see 'vdnodes plugins'"
    else:
        return error
    problems = [replace(p, hint=hint) if p.message.startswith("unknown node type") else p for p in error.problems]
    return GraphError(problems, error.source)


def cmd_run(args: argparse.Namespace) -> int:
    from vdnodes.console import JsonEventWriter, ProgressPrinter
    from vdnodes.nodes.runtime import build_executor

    registry = _registry(args)
    graph = _load(args, registry)
    device = _check_device(args.device)
    _speed_options(args)  # --compile, --channels-last, --max-memory: for one run and for sweeps
    from vdnodes.cli_sweep import cmd_sweep, is_sweep

    if is_sweep(args, graph):
        return cmd_sweep(args, registry, graph, device)
    from vdnodes.nodes.models import preload_model_code

    preload_model_code(graph, registry, freeze=_ONE_SHOT)
    sink = JsonEventWriter() if args.json_events else ProgressPrinter()
    executor = build_executor(registry, device=device, dtype=args.dtype, out_dir=args.out)
    result = executor.run(graph, targets=args.targets, seed=args.seed, on_event=sink, raise_errors=False)
    if result.error is not None:
        raise result.error
    report = {name: _summary(v) for name, v in result.outputs.items()}
    if args.json_events:
        print(json.dumps({"event": "outputs", "outputs": report}), flush=True)
    else:
        for name, text in report.items():
            print(f"{name}: {text}")
    return EXIT_OK


def _speed_options(args: argparse.Namespace) -> None:
    """Hand --max-memory / --compile / --channels-last to the model layer (it reads the environment)."""
    from vdnodes.core.errors import UserInputError

    if args.max_memory is not None:
        if not args.max_memory > 0:
            raise UserInputError(f"--max-memory {args.max_memory}: give a positive number of GB")
        os.environ["VDNODES_MAX_MEMORY"] = str(args.max_memory)
    if args.compile:
        os.environ["VDNODES_COMPILE"] = "1"
    os.environ["VDNODES_CHANNELS_LAST"] = {"auto": "auto", "on": "1", "off": "0"}[args.channels_last]


def _check_device(device: str) -> str:
    from vdnodes.core.errors import UserInputError

    if device == "cpu":
        return device
    if not device.startswith(("cuda", "mps")):
        raise UserInputError(f"--device {device!r}: use cpu, cuda or cuda:N")
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserInputError("--device mps: MPS is not available on this machine")
    return device


def _summary(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} {list(shape)}"
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "; ".join(value) if value else "[]"
    return repr(value)


def cmd_validate(args: argparse.Namespace) -> int:
    from vdnodes.core.graph import infer_types

    from vdnodes.core.errors import GraphError
    from vdnodes.core.executor import Executor

    registry = _registry(args)
    graph = _load(args, registry)
    problems = Executor(registry).preflight(graph)
    if problems:
        raise GraphError(problems, graph.source)
    types = infer_types(graph, registry)
    print(f"{graph.source}: ok ({len(graph.nodes)} nodes)")
    if graph.sweep:
        from vdnodes.batch.spec import build_sweep

        sweep = build_sweep(graph, registry)
        print(f"  sweep: {len(sweep.items)} items over {', '.join(a.name for a in sweep.axes) or 'an items list'}")
    for name, ref in sorted(graph.outputs.items()):
        nid, _, out = ref.partition(".")
        print(f"  output {name}: {types.get((nid, out), '?')}")
    return EXIT_OK


def cmd_nodes(args: argparse.Namespace) -> int:
    from vdnodes.docgen import node_to_dict, registry_markdown

    registry = _registry(args)
    if args.json:
        print(json.dumps([node_to_dict(d) for d in registry], indent=2, default=str))
    elif args.markdown:
        sys.stdout.write(registry_markdown(registry))
    else:
        for category, decls in sorted(registry.by_category().items()):
            print(f"{category}:")
            for d in decls:
                first = d.doc.split(". ")[0].rstrip(".")
                origin = f"  [plugin {d.plugin}]" if d.plugin else ""
                print(f"  {d.id:<28} {d.version:<8} {first}{origin}")
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    """What was found, and for each plugin: loaded (with what it added), failed (why) or skipped."""
    from vdnodes.plugins import ENTRY_POINT_GROUP, PATH_ENV, plugin_path

    _, report = _registry_and_report(args, warn=False)
    if args.json:
        print(json.dumps({**report.to_dict(), "plugin_path": plugin_path()}, indent=2))
        return EXIT_OK
    for line in report.problems:
        print(f"problem: {line}")
    if not report.plugins:
        path = os.pathsep.join(plugin_path()) or "not set"
        print(f"no plugins found (entry-point group '{ENTRY_POINT_GROUP}'; {PATH_ENV}: {path})")
        return EXIT_OK
    width = max(len(p.name) for p in report.plugins)
    for p in report.plugins:
        print(f"{p.status:<8} {p.name:<{width}}  {p.version or '-':<8} {p.origin}")
        if p.status == "failed":
            print(f"{'':9}{p.reason}")
            if args.debug and p.detail:
                print("".join(f"{'':9}{line}\n" for line in p.detail.rstrip().splitlines()), end="")
        elif p.status == "skipped":
            print(f"{'':9}{p.reason}")
        added = "; ".join(f"{k}: {', '.join(v)}" for k, v in p.adds.items() if v)
        if added and p.status == "loaded":
            print(f"{'':9}{added}")
    print(report.summary())
    return EXIT_OK


def cmd_graph_from_png(args: argparse.Namespace) -> int:
    from vdnodes.core.graph import read_graph_data

    data = read_graph_data(args.png)
    print(json.dumps(data, indent=2, sort_keys=True))
    return EXIT_OK


def cmd_gui(args: argparse.Namespace) -> int:
    try:
        import PySide6  # noqa: F401
    except ImportError:
        print("vdnodes: the canvas needs PySide6, which is not installed; "
              "install it with: pip install 'vdnodes[gui]'", file=sys.stderr)
        return EXIT_INVALID
    try:
        import vdnodes_gui
    except ImportError:  # a source checkout: the canvas package lives in gui/
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gui"))
        import vdnodes_gui
    device = _check_device(args.device)
    registry, report = _registry_and_report(args)
    return vdnodes_gui.launch(args.graph, out_dir=args.out, device=device, registry=registry,
                              plugin_report=report)


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "nodes": cmd_nodes, "plugins": cmd_plugins,
            "graph-from-png": cmd_graph_from_png, "gui": cmd_gui}


if __name__ == "__main__":
    sys.exit(main())
