"""Processing time: the wall clock operators read, and how timers on it fire.

:class:`SystemProcessingTimeService` schedules a callback on the event loop at
a wall-clock millisecond and delivers it through the task's control lane (so it
runs between batches, never concurrently with the operator).
:class:`ManualProcessingTimeService` is the deterministic clock of tests: time
moves only when the test advances it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

TimerCallback = Callable[[int], Awaitable[None]]


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class ProcessingTimeService(Protocol):
    def now(self) -> int:
        """Current processing time in epoch milliseconds."""
        ...

    def schedule(self, timestamp: int, callback: TimerCallback) -> Cancellable:
        """Run ``await callback(timestamp)`` in the owning task once ``now() >= timestamp``."""
        ...

    def shutdown(self) -> None:
        """Cancel everything still scheduled."""
        ...


class SystemProcessingTimeService:
    """Wall-clock time; callbacks arrive through ``post_control``."""

    def __init__(self, post_control: Callable[[Callable[[], Awaitable[None]]], None]) -> None:
        self._post = post_control
        self._handles: set[asyncio.TimerHandle] = set()

    def now(self) -> int:
        return int(time.time() * 1000)

    def schedule(self, timestamp: int, callback: TimerCallback) -> Cancellable:
        loop = asyncio.get_running_loop()
        delay = max(0.0, (timestamp - self.now()) / 1000.0)
        handle: asyncio.TimerHandle

        def due() -> None:
            self._handles.discard(handle)

            async def fire() -> None:
                await callback(timestamp)

            self._post(fire)

        handle = loop.call_later(delay, due)
        self._handles.add(handle)
        return handle

    def shutdown(self) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()


class _ManualTimer:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualProcessingTimeService:
    """A clock that moves only in :meth:`advance_to`; callbacks run in time order there."""

    def __init__(self, start: int = 0) -> None:
        self._now = start
        self._queue: list[tuple[int, int, TimerCallback, _ManualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> int:
        return self._now

    def schedule(self, timestamp: int, callback: TimerCallback) -> Cancellable:
        timer = _ManualTimer()
        heapq.heappush(self._queue, (timestamp, next(self._seq), callback, timer))
        return timer

    async def advance_to(self, timestamp: int) -> None:
        """Move time forward to ``timestamp``, running every callback that falls due."""
        while self._queue and self._queue[0][0] <= timestamp:
            due, _, callback, timer = heapq.heappop(self._queue)
            self._now = max(self._now, due)
            if not timer.cancelled:
                await callback(due)
        self._now = max(self._now, timestamp)

    def pending(self) -> int:
        return sum(1 for entry in self._queue if not entry[3].cancelled)

    def shutdown(self) -> None:
        self._queue.clear()
