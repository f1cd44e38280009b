"""Undoable edits of the graph document, one ``QUndoCommand`` per kind of edit.

Each command captures old and new values when it is built, changes only the
document (never a view item), and carries a readable label for the Edit menu.
Gestures touching several nodes (paste, delete) are one command or a macro;
a drag is one ``MoveNodesCmd`` that swallows the next ones of the same drag
through ``mergeWith``.
"""

from __future__ import annotations

import copy
from typing import Any

from PySide6.QtGui import QUndoCommand

from vdnodes.core.graph import Link, NodeSpec

from vdnodes_gui.document import GraphDocument, NodeRecord, Pos

MOVE_ID, PARAM_ID, FRAME_ID = 1001, 1002, 1003


class AddNodeCmd(QUndoCommand):
    """Add one node (with its params) at a position."""

    def __init__(self, doc: GraphDocument, nid: str, spec: NodeSpec, pos: Pos,
                 parent: QUndoCommand | None = None) -> None:
        super().__init__(f"Add {doc.registry.get(spec.type).display_name} ({nid})", parent)
        self.doc = doc
        self.record = NodeRecord(nid, copy.deepcopy(spec), {"pos": [round(pos[0]), round(pos[1])]})

    def redo(self) -> None:
        self.doc.insert_node(self.record)

    def undo(self) -> None:
        self.doc.take_node(self.record.node_id)


class RemoveNodesCmd(QUndoCommand):
    """Remove nodes and every link touching them; undo puts all of it back."""

    def __init__(self, doc: GraphDocument, nids: list[str], parent: QUndoCommand | None = None) -> None:
        names = ", ".join(nids[:3]) + ("..." if len(nids) > 3 else "")
        super().__init__(f"Delete {len(nids)} node{'s' if len(nids) != 1 else ''} ({names})", parent)
        self.doc = doc
        self.nids = list(nids)
        gone = set(nids)
        # Links into removed nodes and links from removed nodes into kept ones.
        self.links = [(dst, name, link) for dst, name, link in doc.links()
                      if dst in gone or link.node in gone]
        self.records: list[NodeRecord] = []

    def redo(self) -> None:
        for dst, name, _ in self.links:
            self.doc.set_link(dst, name, None)
        self.records = [self.doc.take_node(nid) for nid in self.nids]

    def undo(self) -> None:
        for record in self.records:
            self.doc.insert_node(record)
        for dst, name, link in self.links:
            self.doc.set_link(dst, name, link)


class MoveNodesCmd(QUndoCommand):
    """Move nodes; consecutive moves of the same drag gesture merge into one step."""

    def __init__(self, doc: GraphDocument, new: dict[str, Pos], gesture: int,
                 parent: QUndoCommand | None = None) -> None:
        super().__init__(f"Move {len(new)} nodes" if len(new) != 1 else f"Move {next(iter(new))}", parent)
        self.doc = doc
        self.gesture = gesture
        self.old = {nid: doc.pos(nid) for nid in new}
        self.new = dict(new)

    def id(self) -> int:
        return MOVE_ID

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not isinstance(other, MoveNodesCmd) or other.gesture != self.gesture \
                or set(other.new) != set(self.new):
            return False
        self.new = dict(other.new)
        return True

    def redo(self) -> None:
        for nid, pos in self.new.items():
            self.doc.set_pos(nid, pos)

    def undo(self) -> None:
        for nid, pos in self.old.items():
            self.doc.set_pos(nid, pos)


class ConnectCmd(QUndoCommand):
    """Link ``src.output -> dst.name``, replacing whatever fed that input."""

    def __init__(self, doc: GraphDocument, src: str, output: str, dst: str, name: str,
                 parent: QUndoCommand | None = None) -> None:
        super().__init__(f"Connect {src}.{output} -> {dst}.{name}", parent)
        self.doc = doc
        self.dst, self.name = dst, name
        self.old = doc.link(dst, name)
        self.new = Link(src, output)

    def redo(self) -> None:
        self.doc.set_link(self.dst, self.name, self.new)

    def undo(self) -> None:
        self.doc.set_link(self.dst, self.name, self.old)


class DisconnectCmd(QUndoCommand):
    """Remove the link feeding ``dst.name``."""

    def __init__(self, doc: GraphDocument, dst: str, name: str, parent: QUndoCommand | None = None) -> None:
        super().__init__(f"Disconnect {dst}.{name}", parent)
        self.doc = doc
        self.dst, self.name = dst, name
        self.old = doc.link(dst, name)

    def redo(self) -> None:
        self.doc.set_link(self.dst, self.name, None)

    def undo(self) -> None:
        self.doc.set_link(self.dst, self.name, self.old)


class SetParamCmd(QUndoCommand):
    """Set one param. With ``merge`` (typing in a text field) successive edits make one step."""

    def __init__(self, doc: GraphDocument, nid: str, name: str, value: Any, *, merge: bool = False,
                 parent: QUndoCommand | None = None) -> None:
        super().__init__("", parent)
        self.doc = doc
        self.nid, self.name = nid, name
        self.old = copy.deepcopy(doc.graph.nodes[nid].params.get(name))
        self.new = copy.deepcopy(value)
        self.merge = merge
        self._relabel()

    def _relabel(self) -> None:
        shown = repr(self.new) if not isinstance(self.new, str) or len(self.new) < 24 else repr(self.new[:20] + "...")
        self.setText(f"Set {self.nid}.{self.name} = {shown}")

    def id(self) -> int:
        return PARAM_ID

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not (isinstance(other, SetParamCmd) and self.merge and other.merge
                and (other.nid, other.name) == (self.nid, self.name)):
            return False
        self.new = other.new
        self._relabel()
        return True

    def redo(self) -> None:
        self.doc.set_param(self.nid, self.name, copy.deepcopy(self.new))

    def undo(self) -> None:
        self.doc.set_param(self.nid, self.name, copy.deepcopy(self.old))


class SetUiCmd(QUndoCommand):
    """Set (or with ``None`` remove) one layout-only entry of a node's ``ui``: title, colour, collapsed..."""

    def __init__(self, doc: GraphDocument, nid: str, key: str, value: Any, label: str,
                 parent: QUndoCommand | None = None) -> None:
        super().__init__(label, parent)
        self.doc = doc
        self.nid, self.key = nid, key
        self.old = copy.deepcopy(doc.graph.ui.get(nid, {}).get(key))
        self.new = copy.deepcopy(value)

    def redo(self) -> None:
        self.doc.set_ui(self.nid, self.key, copy.deepcopy(self.new))

    def undo(self) -> None:
        self.doc.set_ui(self.nid, self.key, copy.deepcopy(self.old))


class ReplaceGraphCmd(QUndoCommand):
    """Swap the whole graph for another (restoring a run from the history); undo swaps back."""

    def __init__(self, doc: GraphDocument, graph: Any, label: str, parent: QUndoCommand | None = None) -> None:
        super().__init__(label, parent)
        self.doc = doc
        self.old = doc.graph.copy()
        self.new = graph.copy()

    def redo(self) -> None:
        self.doc.swap_graph(self.new.copy())

    def undo(self) -> None:
        self.doc.swap_graph(self.old.copy())


class SetBypassCmd(QUndoCommand):
    """Turn a node's bypass on or off (it changes what runs: the node and its descendants go stale)."""

    def __init__(self, doc: GraphDocument, nid: str, on: bool, parent: QUndoCommand | None = None) -> None:
        super().__init__(f"{'Bypass' if on else 'Stop bypassing'} {nid}", parent)
        self.doc, self.nid, self.on = doc, nid, on

    def redo(self) -> None:
        self.doc.set_bypass(self.nid, self.on)

    def undo(self) -> None:
        self.doc.set_bypass(self.nid, not self.on)


class SetFramesCmd(QUndoCommand):
    """Replace the frame list (add, rename, delete a frame); with ``moves`` also move nodes (a frame
    drag: the frame and the nodes in it, merged into one step per drag gesture)."""

    def __init__(self, doc: GraphDocument, frames: list, label: str, moves: dict[str, Pos] | None = None,
                 gesture: int = 0, parent: QUndoCommand | None = None) -> None:
        super().__init__(label, parent)
        self.doc = doc
        self.old, self.new = copy.deepcopy(doc.frames()), copy.deepcopy(frames)
        self.moves = dict(moves or {})
        self.origins = {n: doc.pos(n) for n in self.moves}
        self.gesture = gesture

    def id(self) -> int:
        return FRAME_ID if self.gesture else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not isinstance(other, SetFramesCmd) or not self.gesture or other.gesture != self.gesture:
            return False
        self.new, self.moves = other.new, other.moves
        return True

    def redo(self) -> None:
        for nid, pos in self.moves.items():
            self.doc.set_pos(nid, pos)
        self.doc.set_frames(copy.deepcopy(self.new))

    def undo(self) -> None:
        for nid, pos in self.origins.items():
            self.doc.set_pos(nid, pos)
        self.doc.set_frames(copy.deepcopy(self.old))


class SetSweepCmd(QUndoCommand):
    """Replace the graph's ``sweep`` block (set or clear a param's sweep)."""

    def __init__(self, doc: GraphDocument, block: dict, label: str, parent: QUndoCommand | None = None) -> None:
        super().__init__(label, parent)
        self.doc = doc
        self.old, self.new = copy.deepcopy(doc.graph.sweep or {}), copy.deepcopy(block)

    def redo(self) -> None:
        self.doc.set_sweep(copy.deepcopy(self.new))

    def undo(self) -> None:
        self.doc.set_sweep(copy.deepcopy(self.old))
