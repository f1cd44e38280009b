"""Node run states that say what is true, from a run's events and its result.

During a run, events move nodes through queued / running / done / cached /
failed. When the run ends, every node gets a state for the *current* graph:
what ran is done, what came from the cache is cached, what was planned but
did not run is cancelled (a cancel) or skipped (an earlier node failed), and a
node the plan did not need (a later result was cached) is cached when its own
result is in the cache, skipped otherwise. Each settled state remembers the
cache key it describes, so edits made during the run, and undo/redo later,
turn it stale or fresh again by comparing keys (``GraphDocument.restore_fresh``).
Not here: widgets, the worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vdnodes.core import events as ev
from vdnodes.core.executor import RunResult
from vdnodes.core.keys import output_key

from vdnodes_gui.document import GraphDocument, NodeState

UNSETTLED = (NodeState.QUEUED, NodeState.RUNNING)


class RunStates:
    """Applies one run at a time to a document's node states."""

    def __init__(self, doc: GraphDocument, in_cache: Callable[[str], bool]) -> None:
        self.doc = doc
        self.in_cache = in_cache  # whether a cache key ("<node key>/<output>") is held
        self.planned: list[str] = []
        self.failed: str | None = None

    def begin(self, nids: list[str]) -> None:
        """The moment Run is pressed: every node that may run says so before the worker reports."""
        self.planned, self.failed = [], None
        for nid in nids:
            status = self.doc.status.get(nid)
            if status is not None and status.state not in (NodeState.DONE, NodeState.CACHED):
                self.doc.set_status(nid, state=NodeState.QUEUED, progress=0.0, error="", message="waiting")

    def on_event(self, e: ev.Event) -> None:
        doc = self.doc
        if isinstance(e, ev.RunStarted):
            self.planned = list(e.planned)
            for nid in doc.status:
                if nid in e.planned:
                    doc.set_status(nid, state=NodeState.QUEUED, progress=0.0, error="", message="")
                elif doc.status[nid].state is NodeState.QUEUED:  # Run marked it; the plan does not need it
                    doc.set_status(nid, state=NodeState.IDLE, message="")
        elif isinstance(e, ev.NodeStarted):
            doc.set_status(e.node_id, state=NodeState.RUNNING, progress=0.0)
        elif isinstance(e, ev.NodeProgress):
            changes: dict[str, Any] = {"progress": e.fraction, "message": e.message}
            if e.preview is not None:
                changes["preview"] = e.preview
            doc.set_status(e.node_id, **changes)
        elif isinstance(e, ev.NodeCached):
            doc.set_status(e.node_id, state=NodeState.CACHED, progress=1.0, message="")
        elif isinstance(e, ev.NodeFinished):
            doc.set_status(e.node_id, state=NodeState.DONE, progress=1.0, seconds=e.seconds, message="")
        elif isinstance(e, ev.NodeFailed):
            self.failed = e.node_id
            doc.set_status(e.node_id, state=NodeState.FAILED, error=e.message)
        elif isinstance(e, ev.NodeWarning):
            doc.set_status(e.node_id, message=e.message)

    def finish(self, result: RunResult | None) -> None:
        """Settle every node's state for the graph as it is now."""
        doc = self.doc
        if result is None or not self.planned:  # crashed, or refused before planning (preflight)
            for nid, status in doc.status.items():
                if status.state in UNSETTLED:
                    doc.set_status(nid, state=NodeState.IDLE, progress=0.0, message="")
            doc.restore_fresh()
            return
        executed, cached = set(result.executed), set(result.cached)
        for nid, status in doc.status.items():
            key = result.keys.get(nid)
            if nid in executed:
                doc.set_status(nid, state=NodeState.DONE, key=key, settled=None)
            elif nid in cached:
                doc.set_status(nid, state=NodeState.CACHED, key=key, settled=None, seconds=None)
            elif nid == self.failed:
                doc.set_status(nid, key=key, settled=None)
            elif nid in self.planned:
                if result.status == "cancelled":
                    doc.set_status(nid, state=NodeState.CANCELLED, progress=0.0, message="cancelled",
                                   key=None, settled=None)
                else:
                    why = f"not run: {self.failed} failed" if self.failed else "not run"
                    doc.set_status(nid, state=NodeState.SKIPPED, progress=0.0, message=why, key=None,
                                   settled=None)
            elif key is not None:
                self._not_needed(nid, key)
        self._stale_since_start()

    def _not_needed(self, nid: str, key: str) -> None:
        """A node the plan left out because a later node's result was cached."""
        outputs = self.doc.decl(nid).outputs
        if outputs and all(self.in_cache(output_key(key, o)) for o in outputs):
            self.doc.set_status(nid, state=NodeState.CACHED, key=key, settled=None, seconds=None,
                                message="in the cache; not needed by this run")
        else:
            self.doc.set_status(nid, state=NodeState.SKIPPED, key=None, settled=None, seconds=None,
                                message="not needed: a later node's result was cached")

    def _stale_since_start(self) -> None:
        """Results of a graph the user edited while the run went on are stale on arrival."""
        keys = self.doc.current_keys()
        if not keys:
            return
        for nid, status in self.doc.status.items():
            if status.key and keys.get(nid) not in (None, status.key) and status.state is not NodeState.STALE:
                self.doc.set_status(nid, state=NodeState.STALE,
                                    settled=(status.state, status.error, status.message),
                                    error="", message="")

    def mark_cached(self) -> None:
        """After the graph was swapped (history restore): nodes whose results are in the cache say so."""
        keys = self.doc.current_keys()
        for nid, key in keys.items():
            outputs = self.doc.decl(nid).outputs if nid in self.doc.status else {}
            if outputs and all(self.in_cache(output_key(key, o)) for o in outputs):
                self.doc.set_status(nid, state=NodeState.CACHED, key=key, settled=None,
                                    message="restored; its result is in the cache")
