"""Timers of a keyed operator: per key and timestamp, deduplicated, in two time domains.

Event-time timers fire when a watermark passes their timestamp; processing-time
timers fire when the wall clock does (the earliest one is scheduled on the
task's processing-time service, which delivers it through the control lane).
A timer is identified by ``(timestamp, (key, namespace))`` (the namespace is
a window for window operators, ``None`` otherwise): registering it twice keeps one,
deleting it removes it (lazily: its heap entry is skipped when popped). Timers
of one timestamp fire in the order they were first registered.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from flowactors.time import MIN_WATERMARK
from flowactors.time.clock import Cancellable, ProcessingTimeService


class TimeDomain(enum.Enum):
    EVENT_TIME = "EVENT_TIME"
    PROCESSING_TIME = "PROCESSING_TIME"


class _TimerQueue:
    __slots__ = ("heap", "live", "seq")

    def __init__(self, seq: Iterator[int]) -> None:
        self.heap: list[tuple[int, int, Any]] = []
        self.live: set[tuple[int, Any]] = set()
        self.seq = seq

    def add(self, key: Any, timestamp: int) -> bool:
        entry = (timestamp, key)
        if entry in self.live:
            return False
        self.live.add(entry)
        heapq.heappush(self.heap, (timestamp, next(self.seq), key))
        return True

    def remove(self, key: Any, timestamp: int) -> None:
        self.live.discard((timestamp, key))

    def pop_due(self, until: int) -> Iterator[tuple[int, Any]]:
        """Live timers with timestamp <= ``until``, earliest first (including ones
        registered while iterating)."""
        heap, live = self.heap, self.live
        while heap and heap[0][0] <= until:
            timestamp, _, key = heapq.heappop(heap)
            entry = (timestamp, key)
            if entry in live:
                live.remove(entry)
                yield entry

    def earliest(self) -> int | None:
        heap, live = self.heap, self.live
        while heap and (heap[0][0], heap[0][2]) not in live:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def __len__(self) -> int:
        return len(self.live)


class InternalTimerService:
    """The timers of one keyed operator subtask."""

    def __init__(
        self,
        processing_time: ProcessingTimeService,
        on_processing_time: Callable[[int], Awaitable[None]],
    ) -> None:
        seq = itertools.count()
        self.event = _TimerQueue(seq)
        self.processing = _TimerQueue(seq)
        self.clock = processing_time
        self._on_processing_time = on_processing_time
        self._wakeup: tuple[int, Cancellable] | None = None
        self.current_watermark = MIN_WATERMARK

    # event time -------------------------------------------------------------

    def register_event_time_timer(self, key: Any, timestamp: int) -> None:
        self.event.add(key, timestamp)

    def delete_event_time_timer(self, key: Any, timestamp: int) -> None:
        self.event.remove(key, timestamp)

    def due_event_timers(self, watermark: int) -> Iterator[tuple[int, Any]]:
        self.current_watermark = watermark
        return self.event.pop_due(watermark)

    # processing time --------------------------------------------------------

    def register_processing_time_timer(self, key: Any, timestamp: int) -> None:
        if self.processing.add(key, timestamp):
            self._schedule()

    def delete_processing_time_timer(self, key: Any, timestamp: int) -> None:
        self.processing.remove(key, timestamp)

    def due_processing_timers(self, now: int) -> Iterator[tuple[int, Any]]:
        return self.processing.pop_due(now)

    def _schedule(self) -> None:
        earliest = self.processing.earliest()
        if earliest is None:
            return
        if self._wakeup is not None:
            if self._wakeup[0] <= earliest:
                return
            self._wakeup[1].cancel()
        self._wakeup = (earliest, self.clock.schedule(earliest, self._wake))

    async def _wake(self, timestamp: int) -> None:
        self._wakeup = None
        await self._on_processing_time(max(timestamp, self.clock.now()))
        self._schedule()

    def shutdown(self) -> None:
        if self._wakeup is not None:
            self._wakeup[1].cancel()
            self._wakeup = None

    def __len__(self) -> int:
        return len(self.event) + len(self.processing)


class KeyedTimerService:
    """``ctx.timer_service()``: timers of the current key."""

    __slots__ = ("_backend", "_timers")

    def __init__(self, timers: InternalTimerService, backend: Any) -> None:
        self._timers = timers
        self._backend = backend

    def current_processing_time(self) -> int:
        return self._timers.clock.now()

    def current_watermark(self) -> int:
        return self._timers.current_watermark

    def register_event_time_timer(self, timestamp: int) -> None:
        self._timers.register_event_time_timer((self._backend.current_key, None), int(timestamp))

    def delete_event_time_timer(self, timestamp: int) -> None:
        self._timers.delete_event_time_timer((self._backend.current_key, None), int(timestamp))

    def register_processing_time_timer(self, timestamp: int) -> None:
        self._timers.register_processing_time_timer(
            (self._backend.current_key, None), int(timestamp)
        )

    def delete_processing_time_timer(self, timestamp: int) -> None:
        self._timers.delete_processing_time_timer((self._backend.current_key, None), int(timestamp))
