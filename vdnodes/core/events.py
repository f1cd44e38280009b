"""Typed run events, shared by the terminal progress bar, ``--json-events`` and the canvas."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    run_id: str
    time: float = field(default_factory=time.time, kw_only=True)

    @property
    def kind(self) -> str:
        return _KINDS[type(self)]

    def to_json(self) -> str:
        """One JSON object; tensors (e.g. previews) are left out."""
        data = {"event": self.kind}
        for k, v in asdict(self).items():
            if k == "preview":
                data["has_preview"] = v is not None
                continue
            data[k] = v
        return json.dumps(data, default=str)


@dataclass(frozen=True)
class RunStarted(Event):
    planned: list[str]  # node ids that will run or be served from cache, in order
    targets: list[str]


@dataclass(frozen=True)
class NodeQueued(Event):
    node_id: str
    node_type: str


@dataclass(frozen=True)
class NodeStarted(Event):
    node_id: str
    node_type: str


@dataclass(frozen=True)
class NodeProgress(Event):
    node_id: str
    fraction: float
    message: str = ""
    preview: Any = None  # e.g. an image tensor [B,3,H,W] for the live preview


@dataclass(frozen=True)
class NodeCached(Event):
    node_id: str
    node_type: str


@dataclass(frozen=True)
class NodeFinished(Event):
    node_id: str
    node_type: str
    seconds: float


@dataclass(frozen=True)
class NodeFailed(Event):
    node_id: str
    node_type: str
    message: str


@dataclass(frozen=True)
class NodeWarning(Event):
    node_id: str
    message: str


@dataclass(frozen=True)
class RunFinished(Event):
    status: str  # "ok" | "failed" | "cancelled"
    seconds: float
    executed: list[str]
    cached: list[str]


_KINDS = {
    RunStarted: "run_started", NodeQueued: "node_queued", NodeStarted: "node_started",
    NodeProgress: "node_progress", NodeCached: "node_cached", NodeFinished: "node_finished",
    NodeFailed: "node_failed", NodeWarning: "node_warning", RunFinished: "run_finished",
}
