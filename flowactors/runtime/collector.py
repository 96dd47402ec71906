"""What user code emits into: the collector (``out``) and side outputs (``ctx.output``).

Records collected while a batch (or a round of timers) is processed are kept
with the timestamp of the record (or timer) that produced them and emitted
together afterwards, main output first, then each side output.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from itertools import repeat
from typing import Any, Protocol

__all__ = ["Collector", "SideOutputs"]


class Emitter(Protocol):
    """Where a side output's records go (an operator's ``Output``)."""

    emit: Callable[[list[Any], list[int | None] | None], Awaitable[None]]


class Collector:
    """``out.collect(value)`` for process functions; the input's timestamp rides along."""

    __slots__ = ("timestamp", "timestamps", "values")

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.timestamps: list[int | None] = []
        self.timestamp: int | None = None

    def collect(self, value: Any) -> None:
        self.values.append(value)
        self.timestamps.append(self.timestamp)

    def collect_all(self, values: Iterable[Any]) -> None:
        before = len(self.values)
        self.values.extend(values)
        self.timestamps.extend(repeat(self.timestamp, len(self.values) - before))

    def take(self) -> tuple[list[Any], list[int | None] | None]:
        values, timestamps = self.values, self.timestamps
        self.values, self.timestamps = [], []
        if all(t is None for t in timestamps):
            return values, None
        return values, timestamps


class SideOutputs:
    """Records sent to side outputs during a batch, by tag, flushed after it."""

    __slots__ = ("buffers",)

    def __init__(self) -> None:
        self.buffers: dict[Any, tuple[list[Any], list[int | None]]] = {}

    def add(self, tag: Any, value: Any, timestamp: int | None) -> None:
        if tag is None:
            raise TypeError("ctx.output(tag, value) needs an OutputTag, got None")
        buf = self.buffers.get(tag)
        if buf is None:
            buf = self.buffers[tag] = ([], [])
        buf[0].append(value)
        buf[1].append(timestamp)

    async def flush(self, outputs: Mapping[Any, Emitter]) -> None:
        """Emit what was added, each tag to its output (tags nobody reads are dropped)."""
        if not self.buffers:
            return
        buffers, self.buffers = self.buffers, {}
        for tag, (values, timestamps) in buffers.items():
            out = outputs.get(tag)
            if out is not None:
                ts = None if all(t is None for t in timestamps) else timestamps
                await out.emit(values, ts)
