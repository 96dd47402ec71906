"""The actor: one asyncio task per chain subtask, driving its operators from its mailbox.

A :class:`StreamTask` takes one message at a time from its :class:`Mailbox`
(control lane first), so its operators' state needs no locks. It tracks the
watermark of every input channel and passes the minimum over the active ones
to the head of its chain, only ever forward. When every input channel has
ended it finishes its operators in chain order and sends end-of-input on.

A source task has no data input: it polls its reader in a loop, taking
control messages between polls.

Output buffers are flushed when the task is about to wait (nothing queued),
when ``buffer_timeout_ms`` has passed while busy, and before any in-band
control element.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from flowactors.runtime.config import ExecutionConfig
from flowactors.runtime.elements import (
    MAX_WATERMARK,
    MIN_WATERMARK,
    Batch,
    EndOfInput,
    Watermark,
    WatermarkStatus,
)
from flowactors.runtime.mailbox import CONTROL, Mailbox
from flowactors.runtime.operators import OperatorFailure, StreamOperator, Timestamps, Values
from flowactors.runtime.source_sink import SourceOperator
from flowactors.runtime.writer import RecordWriter
from flowactors.spi import InputStatus
from flowactors.time.clock import ProcessingTimeService

BatchHandler = Callable[[Values, Timestamps, Values | None], Awaitable[None]]
ControlMessage = Callable[[], Awaitable[None]]


class TaskFailure(Exception):
    """A task ended with an error; ``operator`` is the operator it is attributed to."""

    def __init__(self, task_name: str, operator: str, subtask: int, cause: BaseException) -> None:
        super().__init__(f"{operator} (subtask {subtask}): {type(cause).__name__}: {cause}")
        self.task_name = task_name
        self.operator = operator
        self.subtask = subtask
        self.cause = cause


class StreamTask:
    """One subtask of one chain: an actor with a mailbox."""

    def __init__(
        self,
        name: str,
        subtask_index: int,
        operators: list[StreamOperator],
        mailbox: Mailbox,
        config: ExecutionConfig,
    ) -> None:
        self.name = name
        self.subtask_index = subtask_index
        #: Chain members in topological order; ``operators[0]`` is the head.
        self.operators = operators
        self.mailbox = mailbox
        self.config = config
        self.writers: list[RecordWriter] = []
        #: Per input channel: the head's batch handler (input 1 or 2 of a two-input head).
        self.channel_handlers: list[BatchHandler] = []
        self.records_in = 0
        self.finished = False
        self.started_at = 0.0
        self.ended_at: float | None = None
        self.input_watermark = MIN_WATERMARK
        self.processing_time: ProcessingTimeService

    @property
    def head(self) -> StreamOperator:
        return self.operators[0]

    def post_control(self, message: ControlMessage) -> None:
        self.mailbox.put_control(message)

    async def flush_outputs(self) -> None:
        for writer in self.writers:
            await writer.flush()

    # -- lifecycle ---------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.started_at = loop.time()
        opened: list[StreamOperator] = []
        failed = False
        try:
            for op in reversed(self.operators):
                await op.open()
                opened.append(op)
            if isinstance(self.head, SourceOperator):
                await self._run_source(self.head)
            else:
                await self._run_inputs()
            for op in self.operators:
                await op.finish()
            for writer in self.writers:
                await writer.end_input()
            self.finished = True
        except asyncio.CancelledError:
            failed = True
            raise
        except Exception as exc:
            failed = True
            raise self._attribute(exc) from exc
        finally:
            self.ended_at = loop.time()
            self.processing_time.shutdown()
            await self._close(opened, failed)

    async def _close(self, opened: list[StreamOperator], failed: bool) -> None:
        first_error: BaseException | None = None
        for op in reversed(opened):
            try:
                await op.close()
            except Exception as exc:
                first_error = first_error or exc
        if first_error is not None and not failed:
            raise self._attribute(first_error) from first_error

    def _attribute(self, exc: BaseException) -> TaskFailure:
        if isinstance(exc, OperatorFailure):
            return TaskFailure(self.name, exc.operator, self.subtask_index, exc.cause)
        return TaskFailure(self.name, self.head.name, self.subtask_index, exc)

    # -- source tasks ------------------------------------------------------

    async def _run_source(self, head: SourceOperator) -> None:
        loop = asyncio.get_running_loop()
        mailbox = self.mailbox
        timeout = self.config.buffer_timeout_ms / 1000.0
        next_flush = loop.time() + timeout
        periodic = head.periodic_interval_ms / 1000.0
        next_periodic = loop.time() + periodic if periodic else float("inf")
        more = InputStatus.MORE_AVAILABLE
        end = InputStatus.END_OF_INPUT
        while True:
            control = mailbox.poll_control()
            while control is not None:
                await control()
                control = mailbox.poll_control()
            status = await head.poll_next()
            now = loop.time()
            if now >= next_periodic:
                await head.on_periodic()
                next_periodic = now + periodic
            if status is more:
                if self.writers and now >= next_flush:
                    await self.flush_outputs()
                    next_flush = now + timeout
                continue
            if status is end:
                break
            await self.flush_outputs()
            next_flush = loop.time() + timeout
            wait = next_periodic - loop.time()
            await _first_of(head.is_available(), mailbox.wait_control(), timeout=max(0.0, wait))
        # A finished source ends event time: every pending timer and window fires.
        await head.process_watermark(MAX_WATERMARK)

    # -- tasks with inputs -------------------------------------------------

    async def _run_inputs(self) -> None:
        loop = asyncio.get_running_loop()
        mailbox = self.mailbox
        handlers = self.channel_handlers
        n = mailbox.num_channels
        watermarks = [MIN_WATERMARK] * n
        idle = [False] * n
        open_channels = n
        all_idle = False
        timeout = self.config.buffer_timeout_ms / 1000.0
        next_flush = loop.time() + timeout
        poll = mailbox.poll
        has_writers = bool(self.writers)

        async def advance() -> None:
            nonlocal all_idle
            active = [w for w, i in zip(watermarks, idle) if not i]
            if not active:
                if not all_idle:
                    all_idle = True
                    await self.head.process_watermark_status(True)
                return
            if all_idle:
                all_idle = False
                await self.head.process_watermark_status(False)
            low = min(active)
            if low > self.input_watermark:
                self.input_watermark = low
                await self.head.process_watermark(low)

        while open_channels:
            item = poll()
            if item is None:
                if has_writers:
                    await self.flush_outputs()
                    next_flush = loop.time() + timeout
                item = await mailbox.take()
            channel, message = item
            kind = type(message)
            if kind is Batch:
                self.records_in += len(message.values)
                await handlers[channel](message.values, message.timestamps, message.keys)
            elif channel == CONTROL:
                await message()
            elif kind is Watermark:
                if message.timestamp > watermarks[channel]:
                    watermarks[channel] = message.timestamp
                idle[channel] = False
                await advance()
            elif kind is WatermarkStatus:
                idle[channel] = message.idle
                await advance()
            elif kind is EndOfInput:
                watermarks[channel] = MAX_WATERMARK
                idle[channel] = False
                open_channels -= 1
                await advance()
            else:
                raise TypeError(f"unexpected message on channel {channel}: {message!r}")
            if has_writers and loop.time() >= next_flush:
                await self.flush_outputs()
                next_flush = loop.time() + timeout

    # -- metrics -----------------------------------------------------------

    def backpressured_seconds(self) -> float:
        return sum(w.backpressured_seconds for w in self.writers)

    def records_out(self) -> int:
        return sum(w.records_out for w in self.writers)


async def _first_of(*awaitables: Awaitable[Any], timeout: float = float("inf")) -> None:
    """Wait until the first of ``awaitables`` completes or ``timeout`` passes; cancel the
    rest (re-raising the error of one that failed)."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(
            tasks,
            timeout=None if timeout == float("inf") else timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for t in done:
        t.result()
