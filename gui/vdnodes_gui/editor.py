"""Edit actions as a user asks for them, turned into checked undo commands.

View items, panels and menu actions call an ``Editor``; it checks the request
(a link must type-check, a value must fit its param), builds the command(s),
pushes them on the undo stack, and says why when it refuses. Copy and paste
serialise nodes to the graph file's own node format. Nothing here draws.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from PySide6.QtCore import QMimeData, QObject, Signal
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import QApplication

from vdnodes.core.graph import Link, NodeSpec

from vdnodes_gui.commands import (
    AddNodeCmd, ConnectCmd, DisconnectCmd, MoveNodesCmd, RemoveNodesCmd, ReplaceGraphCmd, SetBypassCmd, SetFramesCmd,
    SetParamCmd, SetSweepCmd, SetUiCmd,
)
from vdnodes_gui.document import GraphDocument, Pos

CLIPBOARD_MIME = "application/x-vdnodes-nodes"
PASTE_OFFSET = 40.0


class Editor(QObject):
    """Checked edit requests for one document and its undo stack."""

    refused = Signal(str)  # why a request was refused, for the status bar / tooltip

    def __init__(self, doc: GraphDocument, undo: QUndoStack) -> None:
        super().__init__()
        self.doc = doc
        self.undo = undo
        self._gesture = 0
        self._pastes = 0

    # -- nodes ------------------------------------------------------------------
    def add_node(self, node_type: str, pos: Pos) -> str:
        """Add a node of ``node_type`` with default params; returns its new id."""
        decl = self.doc.registry.get(node_type)
        nid = self.doc.new_id(node_type.split(".")[-1])
        spec = NodeSpec(node_type, decl.version, decl.default_params())
        self.undo.push(AddNodeCmd(self.doc, nid, spec, pos))
        return nid

    def remove(self, nids: list[str]) -> None:
        nids = [n for n in nids if n in self.doc.graph.nodes]
        if nids:
            self.undo.push(RemoveNodesCmd(self.doc, nids))

    def new_gesture(self) -> int:
        """A token grouping the moves of one drag into one undo step."""
        self._gesture += 1
        return self._gesture

    def move(self, positions: dict[str, Pos], gesture: int) -> None:
        if any(self.doc.pos(n) != (round(p[0]), round(p[1])) for n, p in positions.items()):
            self.undo.push(MoveNodesCmd(self.doc, positions, gesture))

    def set_ui(self, nid: str, key: str, value: Any, label: str) -> None:
        """A layout-only change of one node (title, colour, collapsed, seed mode); one undo step."""
        if self.doc.graph.ui.get(nid, {}).get(key) != value:
            self.undo.push(SetUiCmd(self.doc, nid, key, value, label))

    # -- frames and reroutes (layout only) ------------------------------------------------
    def frame_nodes(self, nids: list[str], rects: dict[str, tuple[float, float, float, float]],
                    title: str = "Frame") -> int:
        """A frame around the given cards (``rects``: their x, y, w, h); returns its index."""
        if not nids:
            return -1
        m, bar = 24.0, 34.0
        left = min(rects[n][0] for n in nids) - m
        top = min(rects[n][1] for n in nids) - m - bar
        right = max(rects[n][0] + rects[n][2] for n in nids) + m
        bottom = max(rects[n][1] + rects[n][3] for n in nids) + m
        frames = [*self.doc.frames(), {"title": title, "rect": [round(left), round(top), round(right - left),
                                                                  round(bottom - top)]}]
        self.undo.push(SetFramesCmd(self.doc, frames, f"Frame {len(nids)} nodes"))
        return len(frames) - 1

    def edit_frame(self, index: int, label: str, **changes: Any) -> None:
        """Change a frame's title, colour or rect; ``None`` for ``remove=True`` deletes it."""
        frames = copy.deepcopy(self.doc.frames())
        if changes.pop("remove", False):
            del frames[index]
        else:
            frames[index].update(changes)
        self.undo.push(SetFramesCmd(self.doc, frames, label))

    def move_frame(self, index: int, dx: float, dy: float, origin: list[float],
                   nodes: dict[str, Pos], gesture: int) -> None:
        """Drag a frame by (dx, dy) from ``origin`` with the cards that started inside it (one step)."""
        frames = copy.deepcopy(self.doc.frames())
        frames[index]["rect"] = [round(origin[0] + dx), round(origin[1] + dy), origin[2], origin[3]]
        moves = {n: (x + dx, y + dy) for n, (x, y) in nodes.items()}
        self.undo.push(SetFramesCmd(self.doc, frames, f"Move frame {frames[index].get('title', '')}", moves,
                                    gesture))

    def set_reroutes(self, dst: str, name: str, points: list[Pos]) -> None:
        """The points the link into ``dst.name`` is drawn through ([] removes them); one undo step."""
        table = dict(self.doc.graph.ui.get(dst, {}).get("reroutes", {}))
        if points:
            table[name] = [[round(x), round(y)] for x, y in points]
        else:
            table.pop(name, None)
        self.set_ui(dst, "reroutes", table or None, f"Reroute {dst}.{name}")

    def param_socket(self, nid: str, name: str, on: bool) -> str | None:
        """Show a param as an input socket (``on``) or put it back on the node (its link goes)."""
        p = self.doc.decl(nid).params[name]
        if on and p.type == "Enum":
            why = f"{nid}.{name}: an Enum param cannot be linked (its choice can change output types)"
            self.refused.emit(why)
            return why
        asked = [n for n in self.doc.graph.ui.get(nid, {}).get("param_inputs", []) if n != name]
        self.undo.beginMacro(f"{'Make' if on else 'Stop making'} {nid}.{name} an input")
        if not on and self.doc.link(nid, name) is not None:
            self.undo.push(DisconnectCmd(self.doc, nid, name))
        self.set_ui(nid, "param_inputs", (asked + [name] if on else asked) or None, f"{nid}.{name} as input")
        self.undo.endMacro()
        return None

    def set_bypass(self, nid: str, on: bool) -> str | None:
        """Bypass a node (or stop); returns the reason when it cannot pass its inputs through."""
        from vdnodes.core.bypass import pass_through

        if self.doc.graph.nodes[nid].bypass == on:
            return None
        why = pass_through(self.doc.graph, self.doc.registry, nid)[1] if on else None
        if why:
            self.refused.emit(why)
            return why
        self.undo.push(SetBypassCmd(self.doc, nid, on))
        return None

    def rename(self, nid: str, title: str) -> None:
        """Give a node a title of its own ("" goes back to its type's name); its id stays."""
        title = " ".join(title.split())
        default = self.doc.decl(nid).display_name
        self.set_ui(nid, "title", title if title and title != default else None,
                    f"Rename {nid} to {title or default!r}")

    def layout(self, positions: dict[str, Pos], label: str = "Auto-layout") -> None:
        """Move many nodes at once (auto-layout); one undo step."""
        moved = {n: p for n, p in positions.items() if self.doc.pos(n) != (round(p[0]), round(p[1]))}
        if moved:
            cmd = MoveNodesCmd(self.doc, moved, self.new_gesture())
            cmd.setText(label)
            self.undo.push(cmd)

    def restore_graph(self, graph: Any, label: str) -> None:
        """Put a whole earlier graph back (from the run history); one undo step."""
        self.undo.push(ReplaceGraphCmd(self.doc, graph, label))

    # -- links ------------------------------------------------------------------
    def connect(self, src: str, output: str, dst: str, name: str) -> str | None:
        """Link ``src.output -> dst.name``; returns the reason when refused (and emits ``refused``)."""
        why = self.doc.link_problem(src, output, dst, name)
        if why:
            self.refused.emit(why)
            return why
        if self.doc.link(dst, name) != Link(src, output):
            self.undo.push(ConnectCmd(self.doc, src, output, dst, name))
        return None

    def disconnect(self, dst: str, name: str) -> None:
        if self.doc.link(dst, name) is not None:
            self.undo.push(DisconnectCmd(self.doc, dst, name))

    def move_link(self, old: tuple[str, str], src: str, output: str, dst: str, name: str) -> str | None:
        """Drag an existing link's end from input ``old`` onto ``dst.name`` (one undo step)."""
        if old == (dst, name):
            return self.connect(src, output, dst, name)
        why = self.doc.link_problem(src, output, dst, name)
        if why:
            self.refused.emit(why)
            return why
        self.undo.beginMacro(f"Move link {src}.{output} -> {dst}.{name}")
        self.undo.push(DisconnectCmd(self.doc, *old))
        self.undo.push(ConnectCmd(self.doc, src, output, dst, name))
        self.undo.endMacro()
        return None

    # -- params -----------------------------------------------------------------
    def set_param(self, nid: str, name: str, value: Any, *, merge: bool = False) -> str | None:
        """Set a param if the value fits its declaration; returns the reason when refused."""
        p = self.doc.decl(nid).params[name]
        value = p.coerce(value)
        why = p.problem(value)
        if why:
            why = f"{nid}.{name}: {why}"
            self.refused.emit(why)
            return why
        if self.doc.graph.nodes[nid].params.get(name) != value:
            self.undo.push(SetParamCmd(self.doc, nid, name, value, merge=merge))
        return None

    # -- sweeps -----------------------------------------------------------------
    def set_sweep(self, nid: str, name: str, spec: str | None) -> str | None:
        """Sweep ``nid.name`` over SPEC (the CLI's syntax: ``1,2,3``, ``0:1:0.25``, ``@values.txt``),
        or clear its sweep (None); checked by the sweep engine itself; returns the reason when refused."""
        from vdnodes.batch.spec import build_sweep
        from vdnodes.core.errors import UserInputError

        ref = f"{nid}.{name}"
        block = copy.deepcopy(self.doc.graph.sweep or {})
        params = {k: v for k, v in block.get("params", {}).items() if self.doc.graph.inputs.get(k, k) != ref}
        why = None
        if spec is not None:
            spec = spec.strip()
            if not spec:
                why = f"{ref}: give the values to sweep (a,b,c | start:stop:step | @values.txt)"
            elif name in self.doc.graph.nodes[nid].inputs:
                why = f"{ref} takes its value from a link; sweep the node that drives it"
            params[ref] = spec
        block["params"] = params
        if not params and not block.get("items"):
            block = {}
        if spec is not None and why is None:
            graph = self.doc.graph.copy()
            graph.sweep = block
            try:
                build_sweep(graph, self.doc.registry)
            except UserInputError as e:
                why = str(e)
        if why:
            self.refused.emit(why)
            return why
        if block != (self.doc.graph.sweep or {}):
            label = f"Sweep {ref} over {spec}" if spec is not None else f"Clear the sweep of {ref}"
            self.undo.push(SetSweepCmd(self.doc, block, label))
        return None

    def apply_overrides(self, overrides: dict[str, Any], label: str) -> None:
        """Set several params at once (``{"node.param": value}``: a sweep item's values); one undo step."""
        changes = [(ref.partition(".")[0], ref.partition(".")[2], v) for ref, v in overrides.items()]
        changes = [(n, p, v) for n, p, v in changes if self.doc.graph.nodes[n].params.get(p) != v]
        if not changes:
            return
        self.undo.beginMacro(label)
        for nid, name, value in changes:
            self.undo.push(SetParamCmd(self.doc, nid, name, value))
        self.undo.endMacro()

    # -- clipboard ----------------------------------------------------------------
    def copy_nodes(self, nids: list[str]) -> dict[str, Any]:
        """Nodes, their positions and the links among them, as graph-file dicts."""
        chosen = [n for n in nids if n in self.doc.graph.nodes]
        nodes = {}
        for nid in chosen:
            spec = self.doc.graph.nodes[nid]
            nodes[nid] = {"type": spec.type, "version": spec.version, "params": copy.deepcopy(spec.params),
                          "inputs": {k: [v.node, v.output] for k, v in spec.inputs.items()
                                     if v.node in chosen},
                          "pos": list(self.doc.pos(nid))}
        return {"format": "vdnodes.clipboard", "nodes": nodes}

    def paste_nodes(self, data: dict[str, Any], offset: Pos | None = None) -> list[str]:
        """Add copies with fresh ids, shifted by ``offset``; links among them follow. One undo step."""
        nodes = {k: v for k, v in data.get("nodes", {}).items() if v.get("type") in self.doc.registry}
        if not nodes:
            return []
        if offset is None:
            self._pastes += 1
            offset = (PASTE_OFFSET * self._pastes, PASTE_OFFSET * self._pastes)
        self.undo.beginMacro(f"Paste {len(nodes)} node{'s' if len(nodes) != 1 else ''}")
        new_ids: dict[str, str] = {}
        for old, raw in nodes.items():
            decl = self.doc.registry.get(raw["type"])
            params = decl.default_params()
            params.update({k: v for k, v in raw.get("params", {}).items() if k in decl.params})
            nid = self.doc.new_id(old)
            x, y = raw.get("pos", (0, 0))
            self.undo.push(AddNodeCmd(self.doc, nid, NodeSpec(raw["type"], decl.version, params),
                                      (x + offset[0], y + offset[1])))
            new_ids[old] = nid
        for old, raw in nodes.items():
            for name, (src, output) in raw.get("inputs", {}).items():
                if src in new_ids and not self.doc.link_problem(new_ids[src], output, new_ids[old], name):
                    self.undo.push(ConnectCmd(self.doc, new_ids[src], output, new_ids[old], name))
        self.undo.endMacro()
        return list(new_ids.values())

    def copy_to_clipboard(self, nids: list[str]) -> int:
        data = self.copy_nodes(nids)
        if not data["nodes"]:
            return 0
        mime = QMimeData()
        text = json.dumps(data, indent=2, sort_keys=True)
        mime.setData(CLIPBOARD_MIME, text.encode("utf-8"))
        mime.setText(text)
        QApplication.clipboard().setMimeData(mime)
        self._pastes = 0
        return len(data["nodes"])

    def paste_from_clipboard(self) -> list[str]:
        data = self.clipboard_data()
        return self.paste_nodes(data) if data else []

    def clipboard_data(self) -> dict[str, Any] | None:
        """The nodes on the clipboard, as ``copy_nodes`` made them (None: no vdnodes nodes there)."""
        mime = QApplication.clipboard().mimeData()
        if mime is None:
            return None
        if mime.hasFormat(CLIPBOARD_MIME):
            text = bytes(mime.data(CLIPBOARD_MIME)).decode("utf-8")
        elif mime.hasText():
            text = mime.text()
        else:
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not isinstance(data, dict) or data.get("format") != "vdnodes.clipboard":
            return None
        return data
