"""The history recorder: every event, in order, with one monotonic clock.

Rules: times are nanoseconds since the test started, from ``time.monotonic_ns`` (or the
simulator's virtual clock, given as ``clock_ns``), never the wall clock, which the clock
nemesis may skew for nodes and which can jump; events get consecutive indices in the
order they are recorded; each event is appended to ``history.jsonl`` as it happens
(flushed), so a crashed run still leaves its history.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from kvstore.checker import Event, History, JsonlWriter


class Recorder:
    def __init__(
        self,
        path: Path | None,
        extra: dict[str, Any] | None = None,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """``path`` None keeps the history in memory only (``write``): the simulator's
        choice, whose process is the whole world and whose passing seeds keep nothing."""
        self.clock_ns = clock_ns
        self.t0 = clock_ns()
        self.events: list[Event] = []
        self.extra = extra or {}
        # flushed per event, so a crashed run still leaves its history
        self._writer = JsonlWriter(str(path)) if path is not None else None

    def restart_clock(self) -> None:
        """Make time 0 now; only before the first event, so times stay monotonic."""
        if self.events:
            raise RuntimeError("the clock can only restart before the first event")
        self.t0 = self.clock_ns()

    def now(self) -> int:
        return self.clock_ns() - self.t0

    def record(
        self,
        process: Hashable,
        type_: str,
        f: str,
        *,
        key: Any = None,
        value: Any = None,
        error: Any = None,
        extra: dict[str, Any] | None = None,
    ) -> Event:
        event = Event(
            process=process,
            type=type_,
            f=f,
            value=value,
            key=key,
            time=self.now(),
            index=len(self.events),
            error=error,
            extra={**self.extra, **(extra or {})},
        )
        self.events.append(event)
        if self._writer is not None:
            self._writer.write(event)
        return event

    def nemesis(self, f: str, value: Any) -> None:
        self.record("nemesis", "info", f, value=value)

    def history(self) -> History:
        return History(list(self.events), format="jsonl")

    def write(self, path: Path) -> None:
        """The whole history to ``path`` as JSON Lines: the same bytes the live writer
        would have written."""
        with JsonlWriter(str(path), flush=False) as writer:
            for event in self.events:
                writer.write(event)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
