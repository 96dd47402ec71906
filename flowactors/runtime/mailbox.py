"""The mailbox of an actor: bounded data lanes per input channel and a control lane.

Every upstream subtask that sends to an actor owns one *channel* of its
mailbox. A channel holds at most ``capacity`` messages; a sender that finds its
channel full suspends in :meth:`Mailbox.put` until the actor takes one, which is
how backpressure travels upstream. Messages of one channel are taken in the
order they were put (Flink's per-channel ordering); across channels they are
taken in arrival order.

The control lane is unbounded and always taken first, so a full data lane
can never keep a control message (cancel, timer firing, async result ready,
checkpoint trigger) from reaching the actor.

A channel can be *blocked* (barrier alignment): its messages stay queued
(still counting against its capacity) and are not taken until it is unblocked.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Final

#: Channel number reported for messages taken from the control lane.
CONTROL: Final = -1


class Mailbox:
    """One actor's inbox. Single consumer (the actor), many producers."""

    __slots__ = (
        "_blocked",
        "_capacity",
        "_control",
        "_counts",
        "_data",
        "_getter",
        "_held",
        "_loop",
        "_putters",
        "queued_records",
    )

    def __init__(self, num_channels: int, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be >= 1, got {capacity}")
        self._loop = asyncio.get_running_loop()
        self._capacity = capacity
        self._data: deque[tuple[int, Any, int]] = deque()
        self._control: deque[Any] = deque()
        self._counts = [0] * num_channels
        self._putters: list[deque[asyncio.Future[None]]] = [deque() for _ in range(num_channels)]
        self._getter: asyncio.Future[None] | None = None
        self._blocked: set[int] = set()
        self._held: dict[int, deque[tuple[int, Any, int]]] = {}
        #: Records (not messages) waiting in the data lanes.
        self.queued_records = 0

    @property
    def num_channels(self) -> int:
        return len(self._counts)

    @property
    def capacity(self) -> int:
        """Messages one channel may hold before its sender waits."""
        return self._capacity

    async def put(self, channel: int, message: Any, size: int = 0) -> float:
        """Queue ``message`` (holding ``size`` records) on ``channel``.

        Waits while the channel is full. Returns the seconds spent waiting
        (the sender's backpressure time).
        """
        waited = 0.0
        if self._counts[channel] >= self._capacity:
            start = self._loop.time()
            putters = self._putters[channel]
            while self._counts[channel] >= self._capacity:
                fut = self._loop.create_future()
                putters.append(fut)
                try:
                    await fut
                except BaseException:
                    fut.cancel()
                    try:
                        putters.remove(fut)
                    except ValueError:
                        pass
                    # A wake-up meant for us must not be lost for the next sender.
                    self._wake_putter(channel)
                    raise
            waited = self._loop.time() - start
        self._counts[channel] += 1
        self.queued_records += size
        entry = (channel, message, size)
        if channel in self._blocked:
            self._held[channel].append(entry)
        else:
            self._data.append(entry)
            getter = self._getter
            if getter is not None and not getter.done():
                getter.set_result(None)
        return waited

    def put_control(self, message: Any) -> None:
        """Queue a control message; never waits."""
        self._control.append(message)
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)

    def poll(self) -> tuple[int, Any] | None:
        """Take the next message without waiting: ``(channel, message)`` or ``None``.

        Control messages come first and report channel :data:`CONTROL`.
        """
        if self._control:
            return CONTROL, self._control.popleft()
        if self._data:
            channel, message, size = self._data.popleft()
            self._counts[channel] -= 1
            self.queued_records -= size
            if self._putters[channel]:
                self._wake_putter(channel)
            return channel, message
        return None

    def poll_control(self) -> Any | None:
        """Take the next control message, or ``None``; data stays queued."""
        if self._control:
            return self._control.popleft()
        return None

    async def take(self) -> tuple[int, Any]:
        """Take the next message, waiting for one."""
        while True:
            item = self.poll()
            if item is not None:
                return item
            await self.wait_ready()

    async def wait_ready(self) -> None:
        """Wait until a message may be available (returns at once if one is)."""
        if self._control or self._data:
            return
        getter = self._loop.create_future()
        self._getter = getter
        try:
            await getter
        finally:
            self._getter = None

    async def wait_control(self) -> None:
        """Wait until a control message is queued (data is ignored)."""
        while not self._control:
            getter = self._loop.create_future()
            self._getter = getter
            try:
                await getter
            finally:
                self._getter = None

    def block(self, channel: int) -> None:
        """Stop taking ``channel``'s messages (they keep their order and their place)."""
        if channel in self._blocked:
            return
        self._blocked.add(channel)
        mine: deque[tuple[int, Any, int]] = deque()
        rest: deque[tuple[int, Any, int]] = deque()
        for entry in self._data:
            (mine if entry[0] == channel else rest).append(entry)
        self._data = rest
        self._held[channel] = mine

    def unblock_all(self) -> None:
        """Take blocked channels' messages again, ahead of what arrived since."""
        if not self._blocked:
            return
        front: deque[tuple[int, Any, int]] = deque()
        for channel in sorted(self._blocked):
            front.extend(self._held.pop(channel))
        front.extend(self._data)
        self._data = front
        self._blocked.clear()
        getter = self._getter
        if self._data and getter is not None and not getter.done():
            getter.set_result(None)

    def _wake_putter(self, channel: int) -> None:
        putters = self._putters[channel]
        while putters:
            fut = putters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
