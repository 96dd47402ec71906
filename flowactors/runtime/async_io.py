"""``map_async``: many awaits in flight at once (Flink's async I/O operator).

Each record starts an asyncio task running the user's ``async def``; at most
``capacity`` run at a time (a new record waits for a slot, which is the
backpressure). Results are emitted in input order (``ordered=True``) or as they
complete. A watermark or the end of input waits for every call started before
it, so no result crosses a watermark. A completed call posts one control
message to the task, so results flow even while no new input arrives. A call
that raises or exceeds ``timeout`` fails the job; on failure or cancellation
every call still running is cancelled and awaited.
"""

from __future__ import annotations

import asyncio
from collections import deque
from itertools import repeat
from typing import Any

from flowactors.runtime.operators import Timestamps, UserFunctionOperator, Values


class AsyncMapOperator(UserFunctionOperator):
    method_name = "map"

    def __init__(self, fn: Any, capacity: int, ordered: bool, timeout: float | None) -> None:
        super().__init__(fn)
        if not self.is_async:
            raise TypeError("map_async needs an async function (async def ...)")
        self.capacity = capacity
        self.ordered = ordered
        self.timeout = timeout
        self.pending: deque[tuple[asyncio.Task[Any], int | None]] = deque()
        self.notified = False

    async def _call(self, value: Any) -> Any:
        if self.timeout is None:
            return await self.call(value)
        try:
            return await asyncio.wait_for(self.call(value), self.timeout)
        except TimeoutError:
            raise TimeoutError(
                f"map_async call timed out after {self.timeout} s for record {value!r:.200}"
            ) from None

    def _on_done(self, _: asyncio.Task[Any]) -> None:
        if not self.notified:
            self.notified = True
            self.ctx.post_control(self._emit_ready)

    async def _emit_ready(self) -> None:
        self.notified = False
        await self._emit_completed()

    def _take_completed(self) -> tuple[list[Any], list[int | None]]:
        values: list[Any] = []
        stamps: list[int | None] = []
        pending = self.pending
        if self.ordered:
            while pending and pending[0][0].done():
                task, ts = pending.popleft()
                values.append(self._result(task))
                stamps.append(ts)
        else:
            keep: deque[tuple[asyncio.Task[Any], int | None]] = deque()
            for task, ts in pending:
                if task.done():
                    values.append(self._result(task))
                    stamps.append(ts)
                else:
                    keep.append((task, ts))
            self.pending = keep
        return values, stamps

    def _result(self, task: asyncio.Task[Any]) -> Any:
        try:
            return task.result()
        except Exception as exc:
            raise self.failure(exc) from exc

    async def _emit_completed(self) -> None:
        values, stamps = self._take_completed()
        if values:
            has_ts = any(t is not None for t in stamps)
            await self.output.emit(values, stamps if has_ts else None)

    async def _wait_for_slot(self) -> None:
        while len(self.pending) >= self.capacity:
            if self.ordered:
                await asyncio.wait([self.pending[0][0]])
            else:
                await asyncio.wait(
                    [t for t, _ in self.pending], return_when=asyncio.FIRST_COMPLETED
                )
            await self._emit_completed()

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        for value, ts in zip(values, timestamps if timestamps is not None else repeat(None)):
            if len(self.pending) >= self.capacity:
                await self._wait_for_slot()
            task = loop.create_task(self._call(value))
            task.add_done_callback(self._on_done)
            self.pending.append((task, ts))
        await self._emit_completed()

    async def _drain(self) -> None:
        while self.pending:
            await asyncio.wait([t for t, _ in self.pending])
            await self._emit_completed()

    async def process_watermark(self, timestamp: int) -> None:
        await self._drain()
        await super().process_watermark(timestamp)

    async def finish(self) -> None:
        await self._drain()

    async def close(self) -> None:
        tasks = [t for t, _ in self.pending]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.pending.clear()
        await super().close()
