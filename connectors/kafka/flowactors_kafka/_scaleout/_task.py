"""One task (stage, partition) on this worker: its input queue, its transaction, its ports.

A task reads one partition (of a user topic or an internal topic) and writes through
one transactional producer, whose id ``<application_id>-<stage>-<partition>`` is the
same on every worker. Its records reach the runtime through :class:`TaskReader`, the
source of the task's one-chain plan. The reader is polled only between batches, when
every record it emitted before has gone through the chain into the sinks, so it
commits there: every commit interval, and once more when the task is revoked. A
commit is one Kafka transaction holding

- everything the task's sinks sent since the last commit (internal topics, user
  Kafka sinks),
- the task's keyed state changes, into its changelog partition,
- the next offset of its input partition (``send_offsets_to_transaction``),

so a task that moves resumes from exactly what its outputs and state reflect.

Records in internal topics are pickled ``(value, timestamp)`` pairs: internal topics
must be as trusted as the job's code (the same trust as checkpoint storage).
"""

from __future__ import annotations

import asyncio
import pickle
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

from flowactors.spi import (
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
from flowactors_kafka._sink import KafkaSink, RecordEncoder
from flowactors_kafka._source import KafkaSource

#: Pause fetching a partition when its task has this many fetched batches waiting.
_HIGH_WATER = 8


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
        self.sent = False
        self.next_commit = time.monotonic() + commit_interval_s
        self.final: asyncio.Future[None] | None = None
        #: Set once the task's plan has ended (failed, or cancelled): no final commit then.
        self.ended = asyncio.Event()
        self.stopped = False
        self.commits = 0
        self.records_in = 0
        self.decode = _decoder(stage)

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

    async def commit(self) -> None:
        handle = self.handle
        changes = handle.state_changes() if handle is not None else []
        topic = self.stage.changelog_topic
        if changes and topic is not None:
            await self.producer.send(
                topic, [self.partition] * len(changes), [(k, v, None, []) for k, v in changes]
            )
            self.sent = True
        offsets = {}
        if self.next_offset is not None and self.next_offset != self.committed_offset:
            offsets[self.tp] = self.next_offset
        if offsets or self.sent:
            await self.producer.commit(offsets, self.group_id)
            await self.producer.begin()
            self.committed_offset = self.next_offset
            self.sent = False
            self.commits += 1
        self.next_commit = time.monotonic() + self.commit_interval_s

    async def send(self, topic: str, partitions: list[int], records: list[Record]) -> None:
        if self.stopped:
            raise RuntimeError(f"task {self.uid} sent records after its final commit")
        await self.producer.send(topic, partitions, records)
        self.sent = True


def _decoder(stage: StageSpec) -> Any:
    """A function from fetched records to (values, timestamps)."""
    if stage.source is None:
        loads = pickle.loads

        def internal(records: list[Any]) -> tuple[list[Any], list[int | None]]:
            pairs = [loads(r.value) for r in records]
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
        if not task.batches:
            task.wakeup.clear()
            return InputStatus.NOTHING_AVAILABLE
        records = task.batches.popleft()
        values, timestamps = task.decode(records)
        await output.collect_batch(values, timestamps, split_id=task.tp)
        task.next_offset = records[-1].offset + 1
        task.records_in += len(records)
        return InputStatus.MORE_AVAILABLE if task.batches else InputStatus.NOTHING_AVAILABLE

    async def is_available(self) -> None:
        task = self.task
        if task.stopped:
            await asyncio.sleep(3600)
            return
        wait = task.next_commit - time.monotonic()
        if wait <= 0:
            return
        try:
            await asyncio.wait_for(task.wakeup.wait(), wait)
        except TimeoutError:
            pass


Write = Callable[[list[Any], list[int | None] | None], Awaitable[None]]


class _Writer(SinkWriter[Any]):
    def __init__(self, write: Write) -> None:
        self._write = write

    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        await self._write(values, timestamps)


class HopSink(Sink[Any]):
    """Writes a task's records into an internal topic, within the task's transaction."""

    def __init__(self, task: Task, spec: HopSpec) -> None:
        self.task = task
        self.spec = spec

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        task, spec = self.task, self.spec
        route = spec.make_router()
        headers: list[tuple[str, bytes]] = (
            [] if spec.input_index == 0 else [("flowactors.input", str(spec.input_index).encode())]
        )
        dumps = pickle.dumps

        async def write(values: list[Any], timestamps: list[int | None] | None) -> None:
            ts = timestamps if timestamps is not None else [None] * len(values)
            records: list[Record] = [(None, dumps((v, t)), t, headers) for v, t in zip(values, ts)]
            await task.send(spec.topic, route(values), records)

        return _Writer(write)


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

        return _Writer(write)
