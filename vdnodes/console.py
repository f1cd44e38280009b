"""Turn run events into terminal output: progress bars, plain lines or JSON lines."""

from __future__ import annotations

import sys
from typing import IO, Any

from vdnodes.core import events as ev


class JsonEventWriter:
    """One JSON object per line (``--json-events``), flushed as it happens."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: ev.Event) -> None:
        self.stream.write(event.to_json() + "\n")
        self.stream.flush()


class ProgressPrinter:
    """A line per node on stderr, with a tqdm bar for nodes that report progress."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = 0
        self.index = 0
        self.bar: Any = None
        self.interactive = self.stream.isatty()

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self.total = len(event.planned)
        elif isinstance(event, ev.NodeCached):
            self.index += 1
            self._line(f"[{self.index}/{self.total}] {event.node_id} ({event.node_type}): cached")
        elif isinstance(event, ev.NodeStarted):
            self.index += 1
            self._label = f"[{self.index}/{self.total}] {event.node_id} ({event.node_type})"
        elif isinstance(event, ev.NodeProgress):
            if self.bar is None and self.interactive:
                from tqdm import tqdm

                self.bar = tqdm(total=1000, desc=self._label, file=self.stream, leave=False,
                                bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")
            if self.bar is not None:
                self.bar.n = int(event.fraction * 1000)
                self.bar.refresh()
        elif isinstance(event, ev.NodeFinished):
            self._close_bar()
            self._line(f"{self._label}: done in {event.seconds:.2f}s")
        elif isinstance(event, ev.NodeFailed):
            self._close_bar()
            self._line(f"{self._label}: failed")
        elif isinstance(event, ev.NodeWarning):
            self._line(f"warning: node '{event.node_id}': {event.message}")
        elif isinstance(event, ev.RunFinished):
            self._close_bar()
            ran, cached = len(event.executed), len(event.cached)
            self._line(f"run {event.status} in {event.seconds:.2f}s ({ran} ran, {cached} cached)")

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


class SweepJsonWriter(JsonEventWriter):
    """Sweep events as JSON lines; node events inside an item carry ``item`` and ``item_id``."""


class SweepProgress:
    """An items bar (done/total, failures, ETA) over the current item's node bar, on stderr.

    Without a terminal: one line per finished item.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.items: Any = None
        self.node: Any = None
        self.total = self.finished = self.failed = 0

    def __call__(self, event: Any) -> None:
        from vdnodes.batch import events as bev

        if isinstance(event, bev.SweepStarted):
            self.total = event.to_run
            self._line(f"sweep: {event.total} items, {event.to_run} to run"
                       + (f", {len(event.skipped)} done before (resumed)" if event.skipped else ""))
            if self.interactive:
                from tqdm import tqdm

                self.items = tqdm(total=event.to_run, desc="items", file=self.stream, position=0,
                                  bar_format="{desc}: {n}/{total} |{bar}| {elapsed}<{remaining}{postfix}")
        elif isinstance(event, bev.ItemStarted) and self.items is not None:
            self.items.set_description(f"item {event.index}")
        elif isinstance(event, bev.ItemEvent) and self.interactive:
            inner = event.event
            if isinstance(inner, ev.NodeProgress):
                if self.node is None:
                    from tqdm import tqdm

                    self.node = tqdm(total=1000, file=self.stream, position=1, leave=False,
                                     bar_format="  {desc}: {percentage:3.0f}%|{bar}|")
                self.node.set_description_str(inner.node_id, refresh=False)
                self.node.n = int(inner.fraction * 1000)
                self.node.refresh()
            elif isinstance(inner, ev.NodeFinished) and self.node is not None:
                self.node.close()
                self.node = None
        elif isinstance(event, bev.ItemFinished):
            self.finished += 1
            self.failed += event.status != "ok"
            if self.items is not None:
                self.items.update(1)
                if self.failed:
                    self.items.set_postfix_str(f" {self.failed} failed", refresh=True)
            else:
                what = "ok" if event.status == "ok" else f"FAILED: {event.error}"
                self._line(f"[{self.finished}/{self.total}] item {event.index} {what} ({event.seconds:.2f}s)")
        elif isinstance(event, bev.SweepFinished):
            for bar in (self.node, self.items):
                if bar is not None:
                    bar.close()
            self.node = self.items = None

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
