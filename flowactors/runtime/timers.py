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
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from flowactors.time import MIN_WATERMARK
from flowactors.time.clock import Cancellable, ProcessingTimeService


class TimeDomain(enum.Enum):
    EVENT_TIME = "EVENT_TIME"
    PROCESSING_TIME = "PROCESSING_TIME"


class _TimerQueue:
    """Timers of one time domain, bucketed by timestamp.

    ``buckets`` maps a timestamp to its owners in registration order (a dict used
    as an ordered set), ``heap`` holds the timestamps (an entry whose bucket is
    gone is skipped when popped). Firing takes a whole bucket at once: the
    window operator fires every window that ends at one timestamp as a batch,
    without a heap operation or a tuple per timer.

    A caller that knows a timer is new (the tumbling window path registers a
    window's timers only when the window gets its first element) adds it with
    :meth:`add_new`: its bucket is then a plain list, appended to without a
    duplicate check (a list grows without rehashing; a dict of 200,000 owners
    rehashes all of them in one go). Any other operation on such a bucket first
    turns it into a dict.
    """

    __slots__ = ("buckets", "firing", "heap", "size")

    def __init__(self) -> None:
        self.buckets: dict[int, dict[Any, None] | list[Any]] = {}
        self.heap: list[int] = []
        self.size = 0
        #: The bucket being fired (taken out of ``buckets``), so a timer deleted
        #: while its bucket fires does not fire.
        self.firing: tuple[int, dict[Any, None]] | None = None

    def add(self, key: Any, timestamp: int) -> bool:
        bucket = self.buckets.get(timestamp)
        if bucket is None:
            self.buckets[timestamp] = {key: None}
            heapq.heappush(self.heap, timestamp)
        else:
            if type(bucket) is list:
                bucket = self._as_dict(timestamp, bucket)
            if key in bucket:
                return False
            bucket[key] = None
        self.size += 1
        return True

    def add_new(self, key: Any, timestamp: int) -> None:
        """Add a timer the caller knows is not registered (no duplicate check)."""
        bucket = self.buckets.get(timestamp)
        if bucket is None:
            self.buckets[timestamp] = [key]
            heapq.heappush(self.heap, timestamp)
        elif type(bucket) is list:
            bucket.append(key)
        else:
            bucket[key] = None
        self.size += 1

    def _as_dict(self, timestamp: int, bucket: list[Any]) -> dict[Any, None]:
        owners = self.buckets[timestamp] = dict.fromkeys(bucket)
        return owners

    def remove(self, key: Any, timestamp: int) -> None:
        bucket = self.buckets.get(timestamp)
        if type(bucket) is list:
            bucket = self._as_dict(timestamp, bucket)
        if bucket is not None and key in bucket:
            del bucket[key]
            self.size -= 1
            if not bucket:
                del self.buckets[timestamp]
            return
        firing = self.firing
        if firing is not None and firing[0] == timestamp and key in firing[1]:
            del firing[1][key]
            self.size -= 1

    def pop_due(self, until: int) -> Iterator[tuple[int, Any]]:
        """Live timers with timestamp <= ``until``, earliest first, in registration order
        within a timestamp (including ones registered while iterating)."""
        heap, buckets = self.heap, self.buckets
        while heap and heap[0] <= until:
            timestamp = heapq.heappop(heap)
            popped = buckets.pop(timestamp, None)
            if popped is None:
                continue
            bucket: dict[Any, None] = dict.fromkeys(popped) if isinstance(popped, list) else popped
            self.firing = (timestamp, bucket)
            try:
                for key in list(bucket):
                    if key in bucket:  # not deleted since
                        del bucket[key]
                        self.size -= 1
                        yield timestamp, key
            finally:
                self.firing = None

    def pop_due_buckets(self, until: int) -> Iterator[tuple[int, list[Any]]]:
        """Like :meth:`pop_due`, a whole timestamp at a time: ``(timestamp, owners)``.

        For callers that delete none of the timers they are handed while firing them."""
        heap, buckets = self.heap, self.buckets
        while heap and heap[0] <= until:
            timestamp = heapq.heappop(heap)
            bucket = buckets.pop(timestamp, None)
            if bucket:
                self.size -= len(bucket)
                yield timestamp, bucket if type(bucket) is list else list(bucket)

    @property
    def live(self) -> list[tuple[int, Any]]:
        """Every pending timer as ``(timestamp, owner)``."""
        return [(ts, key) for ts, bucket in self.buckets.items() for key in bucket]

    def earliest(self) -> int | None:
        heap, buckets = self.heap, self.buckets
        while heap and heap[0] not in buckets:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def __len__(self) -> int:
        return self.size


class InternalTimerService:
    """The timers of one keyed operator subtask."""

    def __init__(
        self,
        processing_time: ProcessingTimeService,
        on_processing_time: Callable[[int], Awaitable[None]],
    ) -> None:
        self.event = _TimerQueue()
        self.processing = _TimerQueue()
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
