"""One task (stage, partition) on this worker: its input queue, its transaction, its ports.

A task reads one partition (of a user topic or an internal topic) and writes through
one transactional producer, whose id ``<application_id>-<stage>-<partition>`` is the
same on every worker. Its records reach the runtime through :class:`TaskReader`, the
source of the task's one-chain plan. The reader is polled only between batches, when
every record it emitted before has gone through the chain into the sinks, so it
commits there: every commit interval, and once more when the task is revoked. A
revoked task is *suspended* after that commit (its plan and state stay, it takes
nothing) and may :meth:`Task.resume` with a fresh producer. A
commit is one Kafka transaction holding

- everything the task's sinks sent since the last commit (internal topics, user
  Kafka sinks),
- the task's keyed state changes, into its changelog partition,
- the next offset of its input partition (``send_offsets_to_transaction``), with the
  task's event time as the offset's metadata (:mod:`._event_time`),

so a task that moves resumes from exactly what its outputs and state reflect.

Event time crosses internal topics as *watermark markers*: at a commit, each hop writer
whose watermark or idleness changed (or every second, unchanged) writes ``(stage,
partition, watermark, idle)`` under the key :data:`WATERMARK_KEY` into every partition of
its topic, inside the transaction. A reading task keeps the newest watermark per
upstream task and emits the minimum over the active ones once every upstream task has
reported, never going back.

Records in internal topics are pickled ``(value, timestamp)`` pairs: internal topics
must be as trusted as the job's code (the same trust as checkpoint storage). When the
stage's head has two inputs (``StageSpec.inputs``), both share the topic and the header
:data:`flowactors.spi.INPUT_INDEX_HEADER` names the input of each record (absent: input
0); the reader hands runs of one input on with ``collect_input_batch``, in the
partition's order.
"""

from __future__ import annotations

import asyncio
import itertools
import pickle
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

from flowactors.spi import (
    INPUT_INDEX_HEADER,
    HopSpec,
    InputStatus,
    ReaderOutput,
    Sink,
    SinkWriter,
    SinkWriterContext,
    Source,
    SourceReader,
    SourceReaderContext,
    StageSpec,
    StageTask,
)
from flowactors_kafka._client import TopicPartition
from flowactors_kafka._scaleout._client import Record, TaskProducer
from flowactors_kafka._scaleout._event_time import TaskEventTime
from flowactors_kafka._sink import KafkaSink
from flowactors_kafka._source import KafkaSource
from flowactors_kafka._writer import RecordEncoder

#: Pause fetching a partition when its task has this many fetched batches waiting.
_HIGH_WATER = 8
#: The record key of a watermark marker in an internal topic (data records have none).
WATERMARK_KEY = b"flowactors.watermark"
#: An unchanged watermark is sent again after this long.
_MARKER_REPEAT_S = 1.0


class Task:
    """The worker's side of one task."""

    def __init__(
        self,
        stage: StageSpec,
        tp: TopicPartition,
        producer: TaskProducer,
        *,
        group_id: str,
        commit_interval_s: float,
        start_offset: int | None,
        group_offset: int | None = None,
        upstream_tasks: int = 0,
        event_time: TaskEventTime | None = None,
    ) -> None:
        self.stage = stage
        self.tp = tp
        self.partition = tp.partition
        self.producer = producer
        self.group_id = group_id
        self.commit_interval_s = commit_interval_s
        self.handle: StageTask | None = None
        self.batches: deque[list[Any]] = deque()
        self.wakeup = asyncio.Event()
        #: The next input offset to commit (everything before it went through the chain).
        self.next_offset = start_offset
        self.committed_offset = start_offset
        #: The input offset the group holds for this task, as this task last knew it
        #: (read when it opened, then what it committed): whether anyone else committed
        #: for it while it was suspended.
        self.group_offset = group_offset
        self.sent = False
        self.next_commit = time.monotonic() + commit_interval_s
        self.final: asyncio.Future[None] | None = None
        #: Set once the task's plan has ended (failed, or cancelled): no final commit then.
        self.ended = asyncio.Event()
        self.stopped = False
        self.commits = 0
        self.records_in = 0
        self.decode = self._decoder()
        #: Whether the input carries both inputs of a two-input operator.
        self.two_inputs = stage.inputs > 1
        #: Event time across the cut: the newest watermark of every upstream task seen
        #: in the input, and how many upstream tasks there are.
        self.upstream_tasks = upstream_tasks
        #: Event time as the previous owner committed it: the task goes on from there.
        self.restored_event_time = restored = event_time or TaskEventTime()
        self.upstream_watermarks: dict[tuple[str, int], int] = dict(restored.upstream_watermarks)
        self.upstream_idle: set[tuple[str, int]] = set(restored.upstream_idle)
        #: Whether the reader has shown its split to the source's watermark generators.
        self.split_registered = False
        self.emitted_watermark: int | None = restored.emitted
        #: The newest watermark that reached the task's user Kafka sinks.
        self.sink_watermark: int | None = restored.sinks
        #: Emitted into the chain before the first record (then ``None``).
        self.start_watermark = restored.watermark
        self.committed_metadata = restored.encode()
        self.hop_writers: list[HopWriter] = []

    @property
    def uid(self) -> tuple[str, int]:
        return (self.stage.uid, self.partition)

    def feed(self, records: list[Any]) -> bool:
        """Queue fetched records; whether the worker should pause the partition."""
        if self.stopped:
            return False
        self.batches.append(records)
        self.wakeup.set()
        return len(self.batches) >= _HIGH_WATER

    def wants_more(self) -> bool:
        return len(self.batches) < _HIGH_WATER // 2

    def request_final_commit(self) -> asyncio.Future[None]:
        """Commit at the task's next batch boundary and take nothing after it."""
        if self.final is None:
            self.final = asyncio.get_running_loop().create_future()
            self.wakeup.set()
        return self.final

    def suspend(self) -> None:
        """After its final commit: drop what was fetched past the committed offset (a
        resumed task reads on from there); the plan and its state stay."""
        self.batches.clear()
        self.next_offset = self.committed_offset

    def resume(self, producer: TaskProducer) -> None:
        """Run again, writing through ``producer`` (fresh, its transaction begun), from
        the committed offset."""
        self.producer = producer
        self.final = None
        self.stopped = False
        self.next_commit = time.monotonic() + self.commit_interval_s
        self.wakeup.set()

    async def _send_watermarks(self) -> None:
        """A marker with each hop's newest watermark into every partition it feeds."""
        now = time.monotonic()
        for writer in self.hop_writers:
            state = (writer.watermark, writer.idle)
            if state == (None, False):
                continue
            # Unchanged states are repeated now and then: a downstream task that moved
            # learns every upstream task's watermark from markers after its offset.
            if state == writer.sent_state and now - writer.sent_at < _MARKER_REPEAT_S:
                continue
            n = await self.producer.num_partitions(writer.spec.topic)
            marker = pickle.dumps((self.stage.uid, self.partition, *state))
            await self.producer.send(
                writer.spec.topic, range(n), [(WATERMARK_KEY, marker, None, [])] * n
            )
            writer.sent_state = state
            writer.sent_at = now
            self.sent = True

    def on_marker(self, value: bytes) -> None:
        stage, partition, watermark, idle = pickle.loads(value)
        key = (stage, partition)
        known = self.upstream_watermarks.get(key)
        if known is not None and watermark is not None:
            watermark = max(watermark, known)
        if watermark is not None:
            self.upstream_watermarks[key] = watermark
        if idle:
            self.upstream_idle.add(key)
        else:
            self.upstream_idle.discard(key)

    def watermark_to_emit(self) -> int | None:
        """The minimum over the active upstream tasks, once every upstream task has
        reported (a watermark, or that it is idle), and only when it rose."""
        marks, idle = self.upstream_watermarks, self.upstream_idle
        if not self.upstream_tasks or len(marks.keys() | idle) < self.upstream_tasks:
            return None
        active = [w for key, w in marks.items() if key not in idle]
        if not active:
            return None
        low = min(active)
        if self.emitted_watermark is not None and low <= self.emitted_watermark:
            return None
        self.emitted_watermark = low
        return low

    def event_time(self) -> TaskEventTime:
        """The task's event time now, as it is committed with the input offset."""
        return TaskEventTime(
            hops={w.key: w.watermark for w in self.hop_writers if w.watermark is not None},
            emitted=self.emitted_watermark,
            sinks=self.sink_watermark,
            upstream_watermarks=self.upstream_watermarks,
            upstream_idle=self.upstream_idle,
        )

    def _decoder(self) -> Callable[[list[Any]], tuple[list[Any], list[int | None]]]:
        """A function from fetched records to (values, timestamps)."""
        stage = self.stage
        if stage.source is None:
            loads = pickle.loads
            on_marker = self.on_marker

            def internal(records: list[Any]) -> tuple[list[Any], list[int | None]]:
                data = [r for r in records if r.key is None]
                if len(data) != len(records):  # watermark markers among them
                    for r in records:
                        if r.key is not None:
                            on_marker(r.value)
                pairs = [loads(r.value) for r in data]
                return [p[0] for p in pairs], [p[1] for p in pairs]

            return internal
        settings = cast(KafkaSource[Any], stage.source).settings
        value_fn, decode = settings.value_fn, settings.decode

        def user(records: list[Any]) -> tuple[list[Any], list[int | None]]:
            if value_fn is not None:
                values = [value_fn(r.value) for r in records]
            else:
                values = [decode(r) for r in records]
            return values, [r.timestamp for r in records]

        return user

    def decode_inputs(
        self, records: list[Any]
    ) -> Iterator[tuple[int, list[Any], list[int | None]]]:
        """Fetched records of a two-input task as ``(input index, values, timestamps)``
        runs, in the order the records came."""
        values, timestamps = self.decode(records)
        # records of input 0 carry no header: only the others need looking at
        indices = [_input_index(r) if r.headers else 0 for r in records if r.key is None]
        position = 0
        for index, run in itertools.groupby(indices):
            end = position + len(list(run))
            yield index, values[position:end], timestamps[position:end]
            position = end

    async def commit(self) -> None:
        await self._send_watermarks()
        handle = self.handle
        changes = handle.state_changes() if handle is not None else []
        topic = self.stage.changelog_topic
        if changes and topic is not None:
            await self.producer.send(
                topic, [self.partition] * len(changes), [(k, v, None, []) for k, v in changes]
            )
            self.sent = True
        metadata = self.event_time().encode()
        offsets = {}
        if self.next_offset is not None and (
            self.next_offset != self.committed_offset or metadata != self.committed_metadata
        ):
            offsets[self.tp] = (self.next_offset, metadata)
        if offsets or self.sent:
            await self.producer.commit(offsets, self.group_id)
            await self.producer.begin()
            if offsets:
                self.group_offset = self.next_offset
                self.committed_metadata = metadata
            self.committed_offset = self.next_offset
            self.sent = False
            self.commits += 1
        self.next_commit = time.monotonic() + self.commit_interval_s

    async def send(self, topic: str, partitions: list[int], records: list[Record]) -> None:
        if self.stopped:
            raise RuntimeError(f"task {self.uid} sent records after its final commit")
        await self.producer.send(topic, partitions, records)
        self.sent = True


def _input_index(record: Any) -> int:
    for name, value in record.headers:
        if name == INPUT_INDEX_HEADER:
            return int(value)
    return 0


class TaskInput(Source[Any]):
    """The source of a task's plan: the records the worker fetched for its partition."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def create_reader(self, context: SourceReaderContext) -> SourceReader[Any]:
        return TaskReader(self.task)


class TaskReader(SourceReader[Any]):
    def __init__(self, task: Task) -> None:
        self.task = task

    async def poll_next(self, output: ReaderOutput[Any]) -> InputStatus:
        task = self.task
        if task.stopped:
            return InputStatus.NOTHING_AVAILABLE
        if task.final is not None:
            try:
                await task.commit()
            except BaseException as exc:
                if not task.final.done():
                    task.final.set_exception(exc)
                raise
            task.stopped = True
            if not task.final.done():
                task.final.set_result(None)
            return InputStatus.NOTHING_AVAILABLE
        if time.monotonic() >= task.next_commit:
            await task.commit()
        if task.start_watermark is not None:
            # where the previous owner left event time: nothing after it goes below
            start, task.start_watermark = task.start_watermark, None
            await output.emit_watermark(start)
        if not task.split_registered and task.stage.source is not None:
            # An empty partition still gets its watermark generator, so that idleness
            # (with_idleness) can mark it idle instead of holding event time back.
            task.split_registered = True
            await output.collect_batch([], [], split_id=task.tp)
        if not task.batches:
            task.wakeup.clear()
            return InputStatus.NOTHING_AVAILABLE
        records = task.batches.popleft()
        if task.two_inputs:
            for input_index, values, timestamps in task.decode_inputs(records):
                await output.collect_input_batch(input_index, values, timestamps)
        else:
            values, timestamps = task.decode(records)
            if values:
                await output.collect_batch(values, timestamps, split_id=task.tp)
        watermark = task.watermark_to_emit()
        if watermark is not None:
            await output.emit_watermark(watermark)
        task.next_offset = records[-1].offset + 1
        task.records_in += len(records)
        return InputStatus.MORE_AVAILABLE if task.batches else InputStatus.NOTHING_AVAILABLE

    async def is_available(self) -> None:
        task = self.task
        if task.stopped:  # suspended (or closing): until it resumes
            task.wakeup.clear()
            await task.wakeup.wait()
            return
        wait = task.next_commit - time.monotonic()
        if wait <= 0:
            return
        try:
            await asyncio.wait_for(task.wakeup.wait(), wait)
        except TimeoutError:
            pass


Write = Callable[[list[Any], list[int | None] | None], Awaitable[None]]


class UserSinkWriter(SinkWriter[Any]):
    """Writes a user sink's records within the task's transaction, and keeps the task's
    event time as it reaches the sink (committed with the offset: see ``sinks`` in
    :mod:`._event_time`)."""

    def __init__(self, task: Task, write: Write) -> None:
        self.task = task
        self._write = write

    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        await self._write(values, timestamps)

    async def write_watermark(self, timestamp: int) -> None:
        task = self.task
        if task.sink_watermark is None or timestamp > task.sink_watermark:
            task.sink_watermark = timestamp


class HopWriter(SinkWriter[Any]):
    """Sends a task's records to an internal topic, remembering its newest watermark
    (sent as markers at the task's commits)."""

    def __init__(self, task: Task, spec: HopSpec) -> None:
        self.task = task
        self.spec = spec
        self.route = spec.make_router()
        self.headers: list[tuple[str, bytes]] = (
            [] if spec.input_index == 0 else [(INPUT_INDEX_HEADER, str(spec.input_index).encode())]
        )
        #: Where it is committed in the task's event time.
        self.key = f"{spec.topic}/{spec.input_index}"
        #: Never below what the task's previous owner sent (see :mod:`._event_time`).
        self.watermark: int | None = task.restored_event_time.hops.get(self.key)
        self.idle = False
        self.sent_state: tuple[int | None, bool] | None = None
        self.sent_at = 0.0
        task.hop_writers.append(self)

    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        dumps, headers = pickle.dumps, self.headers
        ts = timestamps if timestamps is not None else [None] * len(values)
        records: list[Record] = [(None, dumps((v, t)), t, headers) for v, t in zip(values, ts)]
        await self.task.send(self.spec.topic, self.route(values), records)

    async def write_watermark(self, timestamp: int) -> None:
        if self.watermark is None or timestamp > self.watermark:
            self.watermark = timestamp

    async def write_watermark_status(self, idle: bool) -> None:
        self.idle = idle


class HopSink(Sink[Any]):
    """Writes a task's records into an internal topic, within the task's transaction."""

    def __init__(self, task: Task, spec: HopSpec) -> None:
        self.task = task
        self.spec = spec

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        return HopWriter(self.task, self.spec)


class _ProducerPort:
    """What :class:`RecordEncoder` needs of a producer, over the task's transaction."""

    def __init__(self, task: Task) -> None:
        self.task = task

    async def partitions(self, topic: str) -> list[int]:
        return list(range(await self.task.producer.num_partitions(topic)))

    def create_batch(self) -> Any:
        return self.task.producer.create_batch()

    async def send_batch(self, batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
        if self.task.stopped:
            raise RuntimeError(f"task {self.task.uid} sent records after its final commit")
        self.task.sent = True
        return await self.task.producer.send_batch(batch, topic, partition)


class TransactionalKafkaSink(Sink[Any]):
    """A user's :class:`KafkaSink`, writing within the task's transaction (exactly once,
    whatever delivery guarantee it was built with)."""

    def __init__(self, task: Task, sink: KafkaSink[Any]) -> None:
        self.task = task
        self.sink = sink

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        encoder = RecordEncoder(self.sink.settings, self.task.partition)
        port = cast(Any, _ProducerPort(self.task))

        async def write(values: list[Any], timestamps: list[int | None] | None) -> None:
            await encoder.send(port, values, timestamps)

        return UserSinkWriter(self.task, write)
