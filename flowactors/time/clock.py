"""Processing time: the wall clock operators read, and how timers on it fire.

:class:`SystemProcessingTimeService` schedules a callback on the event loop at
a wall-clock millisecond and delivers it through the task's control lane (so it
runs between batches, never concurrently with the operator).
:class:`ManualProcessingTimeService` is the deterministic clock of one operator
under test; :class:`ManualClock` the deterministic clock of a whole job
(``ExecutionConfig(clock=ManualClock())``): time moves only when the test
advances it, and every task's due timers fire through its control lane.
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


PostControl = Callable[[Callable[[], Awaitable[None]]], None]


class Clock(Protocol):
    """Where a job's tasks get their processing time from."""

    def service(self, post_control: PostControl) -> ProcessingTimeService:
        """The processing-time service of one task (callbacks go through ``post_control``)."""
        ...


class SystemClock:
    """The wall clock (the default)."""

    def service(self, post_control: PostControl) -> ProcessingTimeService:
        return SystemProcessingTimeService(post_control)


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


class ManualClock:
    """Processing time of a whole job, moved only by :meth:`advance_to`.

    >>> clock = ManualClock(start=1_000)
    >>> clock.now()
    1000
    """

    def __init__(self, start: int = 0) -> None:
        self._now = start
        self._queue: list[tuple[int, int, TimerCallback, _ManualTaskService, _ManualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> int:
        return self._now

    def service(self, post_control: PostControl) -> ProcessingTimeService:
        return _ManualTaskService(self, post_control)

    def _schedule(
        self, timestamp: int, callback: TimerCallback, owner: _ManualTaskService
    ) -> Cancellable:
        timer = _ManualTimer()
        heapq.heappush(self._queue, (timestamp, next(self._seq), callback, owner, timer))
        return timer

    async def advance(self, ms: int) -> None:
        await self.advance_to(self._now + ms)

    async def advance_to(self, timestamp: int) -> None:
        """Move time to ``timestamp``. Every callback that falls due runs in its task
        (between two batches), in time order, each before the next is taken."""
        while self._queue and self._queue[0][0] <= timestamp:
            due, _, callback, owner, timer = heapq.heappop(self._queue)
            self._now = max(self._now, due)
            if timer.cancelled or owner.closed:
                continue
            await owner.run(due, callback)
        self._now = max(self._now, timestamp)


class _ManualTaskService:
    """One task's view of a :class:`ManualClock`."""

    def __init__(self, clock: ManualClock, post_control: PostControl) -> None:
        self._clock = clock
        self._post = post_control
        self._running: set[asyncio.Future[None]] = set()
        self.closed = False

    def now(self) -> int:
        return self._clock.now()

    def schedule(self, timestamp: int, callback: TimerCallback) -> Cancellable:
        return self._clock._schedule(timestamp, callback, self)

    async def run(self, timestamp: int, callback: TimerCallback) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running.add(done)

        async def fire() -> None:
            try:
                await callback(timestamp)
            finally:
                if not done.done():
                    done.set_result(None)

        self._post(fire)
        try:
            await done
        finally:
            self._running.discard(done)

    def shutdown(self) -> None:
        """The task ended: its callbacks will not run (and nobody waits for them)."""
        self.closed = True
        for done in self._running:
            if not done.done():
                done.set_result(None)
