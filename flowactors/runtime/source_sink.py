"""Operators that wrap the SPI: a source reader heads a chain, a sink writer ends one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from flowactors.checkpoint.snapshot import OperatorSnapshot, RestoreView
from flowactors.runtime.collector import SideOutputs
from flowactors.runtime.context import ReaderMetrics
from flowactors.runtime.operators import StreamOperator, Timestamps, Values
from flowactors.runtime.watermark_ops import SplitWatermarks, emit_progress, emit_segments
from flowactors.spi import (
    InputStatus,
    Sink,
    SinkWriter,
    SinkWriterContext,
    Source,
    SourceReader,
    SourceReaderContext,
)
from flowactors.time.watermarks import WatermarkStrategy

BatchHandler = Callable[[Values, Timestamps], Awaitable[None]]


class SourceOperator(StreamOperator):
    """Head of a source task: polls its reader and pushes batches down the chain.

    With a watermark strategy it assigns timestamps and generates watermarks
    per split (see :mod:`flowactors.runtime.watermark_ops`).
    """

    def __init__(self, source: Source[Any], strategy: WatermarkStrategy[Any] | None = None) -> None:
        super().__init__()
        self.source = source
        self.strategy = strategy
        self.reader: SourceReader[Any] | None = None
        self.records_out = 0
        self.tracker: SplitWatermarks | None = None
        self.reader_metrics = ReaderMetrics()
        #: What this subtask restores: (its share, every subtask's entries).
        self.restored: tuple[list[Any], list[Any]] | None = None

    @property
    def periodic_interval_ms(self) -> int:
        """How often the task should call :meth:`on_periodic` (0: never)."""
        return self.ctx.config.auto_watermark_interval_ms if self.tracker is not None else 0

    async def open(self) -> None:
        ctx = self.ctx
        self.side = SideOutputs()
        if self.strategy is not None:
            self.tracker = SplitWatermarks(self.strategy, ctx.processing_time.now)
        with self.attributing_failures():
            self.reader = self.source.create_reader(
                SourceReaderContext(
                    job_name=ctx.job_name,
                    source_name=ctx.operator_name,
                    subtask_index=ctx.subtask_index,
                    parallelism=ctx.parallelism,
                    batch_size=ctx.config.batch_size,
                    restored_state=None if self.restored is None else self.restored[0],
                    restored_union_state=None if self.restored is None else self.restored[1],
                    metrics=self.reader_metrics,
                )
            )
            await self.reader.start()

    # checkpoints -------------------------------------------------------------

    async def initialize_state(self, restore: RestoreView) -> None:
        if restore.has_state:
            self.restored = (await restore.operator_state(), await restore.union_operator_state())

    def snapshot_state(self, checkpoint_id: int) -> OperatorSnapshot | None:
        assert self.reader is not None
        with self.attributing_failures():
            return OperatorSnapshot(operator_state=list(self.reader.snapshot_state(checkpoint_id)))

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if self.reader is not None:
            with self.attributing_failures():
                await self.reader.notify_checkpoint_complete(checkpoint_id)

    # ReaderOutput -----------------------------------------------------------

    async def collect_batch(
        self, values: Values, timestamps: Timestamps = None, split_id: Any = None
    ) -> None:
        self.records_out += len(values)
        tracker = self.tracker
        if tracker is None:
            if values:
                await self.output.emit(values, timestamps)
            return
        with self.attributing_failures():
            timestamps = tracker.assign(values, timestamps)
        await emit_segments(self, tracker, split_id, values, timestamps)

    async def collect_input_batch(
        self, input_index: int, values: Values, timestamps: Timestamps = None
    ) -> None:
        """Records of one input of the operator this source feeds: a source feeds one
        input (a scaled-out task whose head has two uses :class:`TwoInputSourceOperator`)."""
        if input_index != 0:
            raise self.failure(
                TypeError(f"{self.name!r} feeds one input, got records of input {input_index}")
            )
        await self.collect_batch(values, timestamps)

    def emit_side_output(self, tag: Any, value: Any) -> None:
        self.side.add(tag, value, None)

    async def emit_watermark(self, timestamp: int) -> None:
        """A watermark the reader knows itself: event time for sources without a watermark
        strategy; with one, a floor (e.g. where a previous reader of the split left event
        time) that the generated watermarks only go up from."""
        if timestamp <= self.current_watermark:
            return
        if self.tracker is not None:
            valve = self.tracker.valve
            valve.watermark = max(valve.watermark, timestamp)
        await StreamOperator.process_watermark(self, timestamp)

    async def on_periodic(self) -> None:
        """Ask every split's generator for a watermark and pass on what advanced."""
        if self.tracker is not None:
            self.tracker.on_periodic()
            await emit_progress(self, self.tracker)

    # driven by the task -----------------------------------------------------

    async def poll_next(self) -> InputStatus:
        assert self.reader is not None
        with self.attributing_failures():
            status = await self.reader.poll_next(self)
        await self.side.flush(self.side_outputs)
        return status

    async def is_available(self) -> None:
        assert self.reader is not None
        with self.attributing_failures():
            await self.reader.is_available()

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        raise TypeError("a source has no input")

    async def close(self) -> None:
        if self.reader is not None:
            with self.attributing_failures():
                await self.reader.close()


class TwoInputSourceOperator(SourceOperator):
    """Head of a scaled-out task whose stage is headed by a two-input operator.

    Both inputs of the operator arrive in one internal topic; the task's reader
    hands each batch on with its input index, and this operator calls the chained
    two-input operator's ``process_batch`` (input 0) or ``process_batch2`` (input 1):
    what a task's per-channel handlers do in one process. Watermarks need no
    dispatch: the reader's watermark is already the minimum over every upstream
    task of both inputs, which is the two-input operator's watermark.
    """

    def __init__(self, source: Source[Any]) -> None:
        super().__init__(source)
        self.inputs: tuple[BatchHandler, BatchHandler] | None = None

    async def open(self) -> None:
        (head,) = self.output.operators  # the task graph chains the head right here
        self.inputs = (head.process_batch, head.process_batch2)  # type: ignore[attr-defined]
        await super().open()

    async def collect_input_batch(
        self, input_index: int, values: Values, timestamps: Timestamps = None
    ) -> None:
        assert self.inputs is not None
        self.records_out += len(values)
        self.output.records += len(values)  # the head's records in, per operator
        if values:
            await self.inputs[input_index](values, timestamps)


class SinkOperator(StreamOperator):
    """Tail of a chain: hands batches to a sink writer."""

    def __init__(self, sink: Sink[Any]) -> None:
        super().__init__()
        self.sink = sink
        self.writer: SinkWriter[Any] | None = None
        self.restored: tuple[list[Any], list[Any]] | None = None
        #: Records handed to the writer (a sink's output).
        self.records_written = 0

    async def initialize_state(self, restore: RestoreView) -> None:
        if restore.has_state:
            self.restored = (await restore.operator_state(), await restore.union_operator_state())

    async def open(self) -> None:
        ctx = self.ctx
        with self.attributing_failures():
            self.writer = self.sink.create_writer(
                SinkWriterContext(
                    job_name=ctx.job_name,
                    sink_name=ctx.operator_name,
                    subtask_index=ctx.subtask_index,
                    parallelism=ctx.parallelism,
                    restored_state=None if self.restored is None else self.restored[0],
                    restored_union_state=None if self.restored is None else self.restored[1],
                    attempt=ctx.attempt,
                    run_id=ctx.run_id,
                    checkpointing=ctx.checkpointing,
                    highest_parallelism=max(ctx.parallelism, ctx.highest_parallelism),
                )
            )
            await self.writer.open()

    async def process_batch(
        self, values: Values, timestamps: Timestamps, keys: Values | None = None
    ) -> None:
        assert self.writer is not None
        self.records_written += len(values)
        with self.attributing_failures():
            await self.writer.write(values, timestamps)

    async def process_watermark(self, timestamp: int) -> None:
        writer = self.writer
        if writer is not None and type(writer).write_watermark is not SinkWriter.write_watermark:
            with self.attributing_failures():
                await writer.write_watermark(timestamp)
        await super().process_watermark(timestamp)

    async def process_watermark_status(self, idle: bool) -> None:
        writer = self.writer
        if (
            writer is not None
            and type(writer).write_watermark_status is not SinkWriter.write_watermark_status
        ):
            with self.attributing_failures():
                await writer.write_watermark_status(idle)
        await super().process_watermark_status(idle)

    async def finish(self) -> None:
        assert self.writer is not None
        with self.attributing_failures():
            await self.writer.flush(end_of_input=True)

    async def prepare_snapshot_pre_barrier(self, checkpoint_id: int) -> None:
        assert self.writer is not None
        with self.attributing_failures():
            await self.writer.prepare_commit(checkpoint_id)

    def snapshot_state(self, checkpoint_id: int) -> OperatorSnapshot | None:
        assert self.writer is not None
        with self.attributing_failures():
            return OperatorSnapshot(operator_state=list(self.writer.snapshot_state(checkpoint_id)))

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if self.writer is not None:
            with self.attributing_failures():
                await self.writer.notify_checkpoint_complete(checkpoint_id)

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None:
        if self.writer is not None:
            with self.attributing_failures():
                await self.writer.notify_checkpoint_aborted(checkpoint_id)

    async def close(self) -> None:
        if self.writer is not None:
            with self.attributing_failures():
                await self.writer.close()
