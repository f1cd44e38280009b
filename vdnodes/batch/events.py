"""Sweep events: what a sweep reports to the terminal, ``--json-events`` and the canvas.

Node and run events of the executor reach the listener wrapped in ``ItemEvent`` (with the
item's index and id); the others mark the sweep's and each item's start and end.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from vdnodes.core import events as ev


@dataclass(frozen=True)
class SweepEvent:
    time: float = field(default_factory=time.time, kw_only=True)

    def to_json(self) -> str:
        return json.dumps({"event": _KINDS[type(self)], **asdict(self)}, default=str)


@dataclass(frozen=True)
class SweepStarted(SweepEvent):
    total: int  # items in the sweep
    to_run: int  # items this run will run (the rest were done before: resume)
    skipped: list[int]  # indices already done


@dataclass(frozen=True)
class ItemStarted(SweepEvent):
    index: int
    item_id: str
    worker: str = ""  # "local", or the Ray worker that took it ("ray-1 pid 1234")
    worker_pid: int | None = None


@dataclass(frozen=True)
class ItemEvent(SweepEvent):
    """An executor event inside one item."""

    index: int
    item_id: str
    event: ev.Event

    def to_json(self) -> str:
        data = json.loads(self.event.to_json())
        data.update(item=self.index, item_id=self.item_id)
        return json.dumps(data, default=str)


@dataclass(frozen=True)
class ItemFinished(SweepEvent):
    index: int
    item_id: str
    status: str  # "ok" | "failed"
    seconds: float
    files: list[str]  # written, relative to the output folder
    error: str | None = None


@dataclass(frozen=True)
class SweepFinished(SweepEvent):
    status: str  # "ok" | "failed" | "cancelled"
    done: int  # items ok in this run
    failed: list[int]  # indices of items that failed in this run
    skipped: int
    seconds: float


_KINDS = {SweepStarted: "sweep_started", ItemStarted: "item_started", ItemEvent: "item_event",
          ItemFinished: "item_finished", SweepFinished: "sweep_finished"}
