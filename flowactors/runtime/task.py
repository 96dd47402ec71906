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
from pathlib import Path
from typing import Any, Protocol

from flowactors.checkpoint.barrier import CheckpointBarrier
from flowactors.checkpoint.config import Serializer
from flowactors.checkpoint.snapshot import OperatorSnapshot, RestoreView, write_subtask_snapshot
from flowactors.runtime import gc_policy
from flowactors.runtime.alignment import BarrierAligner
from flowactors.runtime.budget import TurnBudget
from flowactors.runtime.config import ExecutionConfig
from flowactors.runtime.elements import (
    MAX_WATERMARK,
    MIN_WATERMARK,
    Batch,
    EndOfInput,
    Watermark,
    WatermarkStatus,
)
from flowactors.runtime.failures import OperatorFailure, TaskFailure
from flowactors.runtime.mailbox import CONTROL, Mailbox
from flowactors.runtime.operators import StreamOperator, Timestamps, Values
from flowactors.runtime.source_sink import SourceOperator
from flowactors.runtime.valve import WatermarkValve
from flowactors.runtime.writer import RecordWriter
from flowactors.spi import InputStatus
from flowactors.time.clock import ProcessingTimeService

BatchHandler = Callable[[Values, Timestamps, Values | None], Awaitable[None]]
ControlMessage = Callable[[], Awaitable[None]]


class CheckpointParticipant(Protocol):
    """What a task needs from the checkpoint coordinator."""

    serializer: Serializer

    def directory_of(self, checkpoint_id: int) -> Path | None: ...

    def shared_dir_of(self, checkpoint_id: int) -> Path | None: ...

    def acknowledge(
        self, checkpoint_id: int, task: StreamTask, meta: dict[str, Any], pause_s: float
    ) -> None: ...

    def decline(self, checkpoint_id: int, task: StreamTask, cause: BaseException) -> None: ...


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
        #: How long this task keeps the event loop before it yields (see budget.py).
        self.turn = TurnBudget(config.time_slice_ms, config.report_loop_hold_ms)
        self.writers: list[RecordWriter] = []
        #: Per input channel: the head's batch handler (input 1 or 2 of a two-input head).
        self.channel_handlers: list[BatchHandler] = []
        self.records_in = 0
        self.finished = False
        self.started_at = 0.0
        self.ended_at: float | None = None
        self.input_watermark = MIN_WATERMARK
        self.processing_time: ProcessingTimeService
        #: Per operator, what to restore from (``None``: start empty).
        self.restore_views: list[RestoreView] | None = None
        #: Per operator, its uid in checkpoints.
        self.uids: list[str] = []
        self.checkpoints: CheckpointParticipant | None = None
        self.snapshot_writers: set[asyncio.Task[None]] = set()
        #: False after a stop (stop-with-savepoint): end without finishing operators.
        self.drain = True
        #: Set once every operator's state is restored (or found empty): what live state
        #: readers and ``execute_async`` wait for.
        self.state_restored = asyncio.Event()
        #: True from then until the operators are closed (their backends may be gone).
        self.state_readable = False
        #: Operators whose ``open`` ran (their state handles exist).
        self.opened: list[StreamOperator] = []
        self._stop_requested = False
        self._stop_checkpoint: int | None = None

    @property
    def description(self) -> str:
        return f"operator {self.name!r} (subtask {self.subtask_index})"

    @property
    def head(self) -> StreamOperator:
        return self.operators[0]

    @property
    def is_source(self) -> bool:
        return isinstance(self.head, SourceOperator)

    @property
    def running(self) -> bool:
        return not self.finished and self.ended_at is None

    def post_control(self, message: ControlMessage) -> None:
        self.mailbox.put_control(message)

    async def flush_outputs(self) -> None:
        for writer in self.writers:
            await writer.flush()

    # -- lifecycle ---------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.started_at = loop.time()
        self.turn.begin()
        metrics = self.head.ctx.metric_group
        metrics.gauge("loopHolds", lambda: self.turn.holds)
        metrics.gauge("longestLoopHoldMs", lambda: self.turn.longest_hold_s * 1000.0)
        opened = self.opened
        failed = False
        freezing = self.config.freeze_long_lived_objects
        if freezing:
            gc_policy.hold()
        try:
            if self.restore_views is not None:
                for op, view in zip(self.operators, self.restore_views):
                    await op.initialize_state(view)
                if freezing:
                    gc_policy.freeze_now()  # restored state lives long
            self.state_readable = True
            self.state_restored.set()
            for op in reversed(self.operators):
                await op.open()
                opened.append(op)
            if isinstance(self.head, SourceOperator):
                await self._run_source(self.head)
            else:
                await self._run_inputs()
            self.turn.check_hold(self.description)
            if self.drain:
                for op in self.operators:
                    await op.finish()
            for writer in self.writers:
                await writer.end_input(self.drain)
            if not self.drain:
                await self._await_stop_savepoint()
            # A snapshot still being written belongs to a checkpoint that can still
            # complete: see it through before the task counts as finished.
            if self.snapshot_writers:
                await asyncio.gather(*self.snapshot_writers)
            self.finished = True
        except asyncio.CancelledError:
            failed = True
            raise
        except Exception as exc:
            failed = True
            raise self._attribute(exc) from exc
        finally:
            self.ended_at = loop.time()
            self.state_readable = False
            self.state_restored.set()  # nobody waits for a task that ended
            self.processing_time.shutdown()
            for writer_task in self.snapshot_writers:
                writer_task.cancel()
            if self.snapshot_writers:
                await asyncio.gather(*self.snapshot_writers, return_exceptions=True)
            try:
                await self._close(opened, failed)
            finally:
                if freezing:
                    gc_policy.release()

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
        return TaskFailure.of(exc, self.name, self.head.name, self.subtask_index)

    # -- source tasks ------------------------------------------------------

    async def _run_source(self, head: SourceOperator) -> None:
        loop = asyncio.get_running_loop()
        mailbox = self.mailbox
        timeout = self.config.buffer_timeout_ms / 1000.0
        next_flush = loop.time() + timeout
        periodic = head.periodic_interval_ms / 1000.0
        next_periodic = loop.time() + periodic if periodic else float("inf")
        turn = self.turn
        more = InputStatus.MORE_AVAILABLE
        end = InputStatus.END_OF_INPUT
        while True:
            control = mailbox.poll_control()
            while control is not None:
                await control()
                control = mailbox.poll_control()
            if self._stop_requested:
                self.drain = False
                return
            status = await head.poll_next()
            now = loop.time()
            if now >= next_periodic:
                await head.on_periodic()
                next_periodic = now + periodic
            if status is more:
                if self.writers and now >= next_flush:
                    await self.flush_outputs()
                    next_flush = now + timeout
                if turn.expired():
                    # A source whose chain never has to wait would keep the event loop to
                    # itself: let timers, the coordinator and other coroutines run.
                    turn.check_hold(self.description)
                    await turn.pause()
                continue
            if status is end:
                turn.check_hold(self.description)
                break
            await self.flush_outputs()
            next_flush = loop.time() + timeout
            wait = next_periodic - loop.time()
            turn.check_hold(self.description)
            await _first_of(head.is_available(), mailbox.wait_control(), timeout=max(0.0, wait))
            turn.begin()
        # A finished source ends event time: every pending timer and window fires.
        await head.process_watermark(MAX_WATERMARK)

    # -- tasks with inputs -------------------------------------------------

    async def _run_inputs(self) -> None:
        loop = asyncio.get_running_loop()
        mailbox = self.mailbox
        handlers = self.channel_handlers
        open_channels = mailbox.num_channels
        valve = WatermarkValve(range(open_channels))
        aligner = BarrierAligner(mailbox)
        timeout = self.config.buffer_timeout_ms / 1000.0
        next_flush = loop.time() + timeout
        turn = self.turn
        poll = mailbox.poll
        has_writers = bool(self.writers)

        async def advance() -> None:
            watermark, idle = valve.advance()
            if idle is not None:
                await self.head.process_watermark_status(idle)
            if watermark is not None:
                self.input_watermark = watermark
                await self.head.process_watermark(watermark)

        while open_channels:
            item = poll()
            if item is None:
                if has_writers:
                    await self.flush_outputs()
                    next_flush = loop.time() + timeout
                turn.check_hold(self.description)
                item = await mailbox.take()
                turn.begin()
            channel, message = item
            kind = type(message)
            if kind is Batch:
                self.records_in += len(message.values)
                await handlers[channel](message.values, message.timestamps, message.keys)
            elif channel == CONTROL:
                await message()
            elif kind is Watermark:
                valve.set_watermark(channel, message.timestamp)
                await advance()
            elif kind is WatermarkStatus:
                valve.set_idle(channel, message.idle)
                await advance()
            elif kind is CheckpointBarrier:
                aligned = aligner.on_barrier(channel, message)
                if aligned is not None:
                    await self.perform_checkpoint(aligned)
            elif kind is EndOfInput:
                open_channels -= 1
                if not message.drain:
                    self.drain = False  # a stop: do not advance event time
                elif self.drain:
                    valve.set_watermark(channel, MAX_WATERMARK)
                    await advance()
                aligned = aligner.on_end_of_input(channel)
                if aligned is not None:
                    await self.perform_checkpoint(aligned)
            else:
                raise TypeError(f"unexpected message on channel {channel}: {message!r}")
            now = loop.time()
            if has_writers and now >= next_flush:
                await self.flush_outputs()
                next_flush = now + timeout
            if turn.expired():  # as in the source loop: never hold the loop for long
                turn.check_hold(self.description)
                await turn.pause()

    # -- checkpoints -------------------------------------------------------

    async def trigger_checkpoint(self, barrier: CheckpointBarrier) -> None:
        """A source task starts checkpoint ``barrier.checkpoint_id`` (from the coordinator)."""
        await self.perform_checkpoint(barrier)
        if barrier.stop:
            self._stop_requested = True

    async def perform_checkpoint(self, barrier: CheckpointBarrier) -> None:
        """Snapshot every operator of the chain, pass the barrier on, write in the background."""
        participant = self.checkpoints
        if participant is None:
            for writer in self.writers:
                await writer.broadcast_element(barrier)
            return
        n = barrier.checkpoint_id
        if barrier.stop:
            self._stop_checkpoint = n  # end only once its savepoint is complete (or aborted)
        clock = asyncio.get_running_loop().time
        snapshots: list[tuple[str, StreamOperator, OperatorSnapshot | None]] = []
        # A failure while flushing before the barrier (a sink that could not deliver)
        # fails the task: records may be lost, and only a restart brings them back.
        for op in self.operators:
            await op.prepare_snapshot_pre_barrier(n)
        try:
            started = clock()
            for uid, op in zip(self.uids, self.operators):
                snapshots.append((uid, op, await op.capture_snapshot(n)))
            pause = clock() - started
        except Exception as exc:
            # A failed snapshot (nothing was lost) fails the checkpoint, not the job: the
            # coordinator counts it against the tolerable failures, as Flink does.
            for _, op, snapshot in snapshots:
                if snapshot is not None:
                    op.snapshot_finished(n)
            cause = exc.cause if isinstance(exc, OperatorFailure) else exc
            participant.decline(n, self, cause)
            for writer in self.writers:  # downstream must not wait for it forever
                await writer.broadcast_element(barrier)
            return
        for writer in self.writers:
            await writer.broadcast_element(barrier)
        writer_task = asyncio.create_task(
            self._write_snapshot(participant, n, snapshots, pause),
            name=f"flowactors:snapshot:{self.name}#{self.subtask_index}:{n}",
        )
        self.snapshot_writers.add(writer_task)
        writer_task.add_done_callback(self.snapshot_writers.discard)

    async def _write_snapshot(
        self,
        participant: CheckpointParticipant,
        checkpoint_id: int,
        snapshots: list[tuple[str, StreamOperator, OperatorSnapshot | None]],
        pause: float,
    ) -> None:
        try:
            directory = participant.directory_of(checkpoint_id)
            meta: dict[str, Any] = {}
            if directory is not None:
                # The writer runs beside the task, with a budget of its own. Its units of
                # work are coarse (pickling one key group can take a few ms), so it checks
                # against half a slice to stay within one.
                turn = TurnBudget(self.config.time_slice_ms / 2, self.config.report_loop_hold_ms)
                meta = await write_subtask_snapshot(
                    directory,
                    self.subtask_index,
                    [(uid, snapshot) for uid, _, snapshot in snapshots],
                    participant.serializer,
                    participant.shared_dir_of(checkpoint_id),
                    turn.pause_if_expired,
                )
            participant.acknowledge(checkpoint_id, self, meta, pause)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            participant.decline(checkpoint_id, self, exc)
        finally:
            for _, op, snapshot in snapshots:
                if snapshot is not None:
                    op.snapshot_finished(checkpoint_id)

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if checkpoint_id == self._stop_checkpoint:
            self._stop_checkpoint = None
        for op in self.operators:
            await op.notify_checkpoint_complete(checkpoint_id)

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        if checkpoint_id == self._stop_checkpoint:
            self._stop_checkpoint = None
        for op in self.operators:
            await op.notify_checkpoint_aborted(checkpoint_id)

    async def _await_stop_savepoint(self) -> None:
        """After a stop: take control messages until the savepoint completed or aborted,
        so that sinks commit what it covers before the job ends."""
        while self._stop_checkpoint is not None:
            control = self.mailbox.poll_control()
            if control is None:
                await self.mailbox.wait_control()
                continue
            await control()

    # -- metrics -----------------------------------------------------------

    def backpressured_seconds(self) -> float:
        return sum(w.backpressured_seconds for w in self.writers)

    def records_out(self) -> int:
        """Records sent to other tasks, and records a sink at the end of the chain wrote."""
        sent = sum(w.records_out for w in self.writers)
        return sent + sum(getattr(op, "records_written", 0) for op in self.operators)

    @property
    def watermark(self) -> int:
        """The task's event time: its input watermark, or for a source the watermark its
        chain emitted."""
        if self.is_source:
            return max(op.current_watermark for op in self.operators)
        return self.input_watermark


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
