"""A worker: this replica's member of the consumer group ``application_id``.

The group consumer subscribes to every topic a stage reads (the user topics of source
stages, the internal topics); Kafka's group protocol assigns their partitions, and a
partition of a stage's input topic *is* a task of that stage. aiokafka rebalances
eagerly, so:

- on revocation every task commits (at its next batch boundary) and is dropped;
- on assignment the new partitions are paused, and each task is opened: its
  transactional producer is initialised (fencing any previous owner and aborting what
  it left open), then the committed offset is read, the changelog partition restored
  up to its last stable offset, the partition sought, the task's plan started, and
  the partition resumed.

One fetch loop feeds every task's queue and pauses partitions whose task is behind.
A planned :meth:`stop` commits every task and leaves the group at once; :meth:`cancel`
commits nothing (the next owner's fence aborts what is open).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, cast

from flowactors import ConnectorError, InvalidGraphError
from flowactors.spi import (
    ScaleOutJob,
    ScaleOutSettings,
    ScaleOutStatistics,
    Sink,
    StageSpec,
    TaskPorts,
)
from flowactors_kafka._client import TopicPartition, client_options
from flowactors_kafka._offsets import KafkaOffsetsInitializer
from flowactors_kafka._scaleout._client import (
    GroupConsumer,
    NoPosition,
    RecordPurger,
    TaskFenced,
    TaskProducer,
    ensure_topics,
    leave_group_as_static_member,
    read_partition,
    topic_partitions,
)
from flowactors_kafka._scaleout._event_time import TaskEventTime
from flowactors_kafka._scaleout._stall import LoopStallWatch
from flowactors_kafka._scaleout._task import HopSink, Task, TaskInput, TransactionalKafkaSink
from flowactors_kafka._scaleout._topics import InternalTopicSettings
from flowactors_kafka._sink import KafkaSink
from flowactors_kafka._source import KafkaSource

log = logging.getLogger("flowactors_kafka.scaleout")

_STARTUP_TIMEOUT_S = 60.0
#: A revoked task that cannot commit within this (blocked, or fenced while sending) is
#: dropped uncommitted: the rebalance must finish within the group's rebalance timeout.
_FINAL_COMMIT_TIMEOUT_S = 5.0
#: aiokafka's default ``session.timeout.ms``.
_DEFAULT_SESSION_TIMEOUT_MS = 10_000
#: A task that failed on a retriable Kafka error is opened again after this long, then
#: after twice as long each time opening fails, up to the maximum.
_REOPEN_BACKOFF_S = 0.5
_REOPEN_BACKOFF_MAX_S = 5.0


class KafkaScaleOutWorker:
    """This replica's share of a scaled-out job (a :class:`flowactors.spi.ScaleOutWorker`)."""

    def __init__(self, settings: ScaleOutSettings, job: ScaleOutJob) -> None:
        self.settings = settings
        self.job = job
        self.stage_of_topic: dict[str, StageSpec] = {}
        for stage in job.stages:
            if stage.source is not None:
                topics = cast(KafkaSource[Any], stage.source).settings.topics
                if topics is None or len(topics) != 1:
                    raise InvalidGraphError(
                        f"stage {stage.uid!r}: a scaled-out Kafka source reads exactly one "
                        "topic for now (set_topics with one name)"
                    )
                topic = topics[0]
            else:
                assert stage.input_topic is not None
                topic = stage.input_topic
            if topic in self.stage_of_topic:
                raise InvalidGraphError(f"topic {topic!r} is read by two stages")
            self.stage_of_topic[topic] = stage
        props = dict(settings.properties)
        #: How internal topics are created (not client properties).
        self.topic_settings = InternalTopicSettings.take_from(props)
        #: How often records of internal topics that their readers committed past are
        #: deleted (Kafka Streams' ``repartition.purge.interval.ms``).
        self.purge_interval_s = int(props.pop("repartition.purge.interval.ms", 30_000)) / 1000
        self.consumer_options = client_options(props, "consumer")
        self.producer_options = client_options(props, "producer")
        self.tasks: dict[TopicPartition, Task] = {}
        self.consumer: GroupConsumer | None = None
        self.rebalances = 0
        self._fetcher: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        #: Tasks being opened again after a retriable failure, by partition.
        self._reopening: dict[TopicPartition, asyncio.Task[None]] = {}
        self._done: asyncio.Future[None] | None = None
        self._closing = False
        self._purger: asyncio.Task[None] | None = None
        #: Rebalance callbacks opening tasks right now (their partitions have no position).
        self._opening = 0
        self.restore_seconds = 0.0
        self.last_rebalance_seconds = 0.0
        self._rebalance_started: float | None = None
        self._commits_of_closed = 0
        #: Tasks per stage (the partitions of its input topic).
        self.task_counts: dict[str, int] = {}
        self.purged: dict[TopicPartition, int] = {}
        self.stall_watch = LoopStallWatch(
            self.consumer_options.get("session_timeout_ms", _DEFAULT_SESSION_TIMEOUT_MS) / 1000
        )
        self._stall_watcher: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._stall_watcher = asyncio.create_task(
            self.stall_watch.run(), name="flowactors:scale-out:loop-stalls"
        )
        await self._create_topics()
        s = self.settings
        self.consumer = GroupConsumer(
            s.bootstrap_servers,
            group_id=s.application_id,
            instance_id=s.instance_id,
            topics=sorted(self.stage_of_topic),
            options=self.consumer_options,
            on_revoked=self._on_revoked,
            on_assigned=self._on_assigned,
        )
        await self.consumer.start(_STARTUP_TIMEOUT_S)
        self._fetcher = asyncio.create_task(self._fetch_loop(), name="flowactors:scale-out:fetch")
        self._fetcher.add_done_callback(self._fetcher_done)
        if self.job.internal_topics:
            self._purger = asyncio.create_task(
                self._purge_loop(), name="flowactors:scale-out:purge"
            )

    async def _create_topics(self) -> None:
        s = self.settings
        topics: dict[str, tuple[int, Mapping[str, str]]] = {
            name: (n, self.topic_settings.repartition())
            for name, n in self.job.internal_topics.items()
        }
        source_topics = [t for t, st in self.stage_of_topic.items() if st.source is not None]
        counts = await topic_partitions(
            s.bootstrap_servers, source_topics, options=self.consumer_options
        )
        for topic, stage in self.stage_of_topic.items():
            self.task_counts[stage.uid] = (
                stage.partitions if stage.partitions is not None else counts[topic]
            )
        for topic, stage in self.stage_of_topic.items():
            if stage.changelog_topic is None:
                continue
            n = stage.partitions if stage.partitions is not None else counts[topic]
            topics[stage.changelog_topic] = (n, self.topic_settings.changelog())
        await ensure_topics(
            s.bootstrap_servers,
            topics,
            options=self.consumer_options,
            replication_factor=self.topic_settings.replication_factor,
            timeout_s=_STARTUP_TIMEOUT_S,
        )

    def _fail(self, exc: BaseException) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)

    def _fetcher_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._fail(cast(BaseException, task.exception()))

    async def wait(self) -> None:
        assert self._done is not None, "not started"
        await asyncio.shield(self._done)

    def assignment(self) -> list[tuple[str, int]]:
        return sorted(t.uid for t in self.tasks.values())

    def statistics(self) -> ScaleOutStatistics:
        lag: dict[tuple[str, int], int] = {}
        consumer = self.consumer
        for tp, task in list(self.tasks.items()):
            if consumer is None:
                break
            end, position = consumer.stable_end(tp), consumer.position(tp)
            if end is not None and position is not None:
                # not fetched yet, plus fetched and not taken by the task yet
                lag[task.uid] = max(0, end - position) + sum(map(len, task.batches))
        return ScaleOutStatistics(
            assignment=tuple(self.assignment()),
            rebalances=self.rebalances,
            last_rebalance_seconds=self.last_rebalance_seconds,
            restore_seconds=self.restore_seconds,
            commits=self._commits_of_closed + sum(t.commits for t in self.tasks.values()),
            lag=lag,
            loop_stalls=self.stall_watch.stalls,
            longest_loop_stall_seconds=self.stall_watch.longest_stall_s,
        )

    async def stop(self) -> None:
        """Commit every task, leave the group, end."""
        await self._shut_down(commit=True)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def cancel(self) -> None:
        await self._shut_down(commit=False)
        if self._done is not None and not self._done.done():
            self._done.cancel()

    async def _shut_down(self, *, commit: bool) -> None:
        if self._closing:
            return
        self._closing = True
        reopening = self._reopening.values()
        for loop_task in (self._fetcher, self._purger, self._stall_watcher, *reopening):
            if loop_task is not None:
                loop_task.cancel()
                await asyncio.gather(loop_task, return_exceptions=True)
        tasks = list(self.tasks.values())
        self.tasks.clear()
        await asyncio.gather(*(self._close(t, commit=commit) for t in tasks))
        if self.consumer is not None:
            await self.consumer.stop()
            s = self.settings
            if commit and s.instance_id is not None:
                try:
                    await leave_group_as_static_member(
                        s.bootstrap_servers,
                        group_id=s.application_id,
                        instance_id=s.instance_id,
                        options=self.consumer_options,
                    )
                except ConnectorError as exc:  # its tasks move after the session timeout
                    log.warning("could not leave the group at once: %s", exc)

    # -- the fetch loop --------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        paused: set[TopicPartition] = set()
        while True:
            try:
                got = await consumer.fetch(100, None)
            except NoPosition:
                if not self._opening:
                    raise
                await asyncio.sleep(0.05)  # tasks still opening seek their partitions
                continue
            for tp, records in got.items():
                task = self.tasks.get(tp)
                if task is not None and records and task.feed(records):
                    consumer.pause(tp)
                    paused.add(tp)
            for tp in list(paused):
                task = self.tasks.get(tp)
                if task is None:
                    paused.discard(tp)
                elif task.wants_more():
                    consumer.resume(tp)
                    paused.discard(tp)
            if not got:
                await asyncio.sleep(0)

    async def _purge_loop(self) -> None:
        """Delete what the owned tasks of internal topics committed past; a failure is
        logged and retried at the next interval (purging only saves disk)."""
        purger = RecordPurger(self.settings.bootstrap_servers, options=self.consumer_options)
        await purger.start(_STARTUP_TIMEOUT_S)
        try:
            while True:
                await asyncio.sleep(self.purge_interval_s)
                todo = {
                    tp: t.committed_offset
                    for tp, t in list(self.tasks.items())
                    if t.stage.source is None
                    and t.committed_offset is not None
                    and t.committed_offset > self.purged.get(tp, 0)
                }
                try:
                    await purger.delete_before(todo)
                    self.purged.update(todo)
                except ConnectorError as exc:
                    log.warning("purging internal topics failed (retried later): %s", exc)
        finally:
            await purger.stop()

    # -- rebalances ------------------------------------------------------------------

    async def _on_revoked(self, tps: list[TopicPartition]) -> None:
        self.rebalances += 1
        self._rebalance_started = time.monotonic()
        reopening = [self._reopening[tp] for tp in tps if tp in self._reopening]
        for reopen in reopening:
            reopen.cancel()
        await asyncio.gather(*reopening, return_exceptions=True)
        tasks = [self.tasks.pop(tp) for tp in tps if tp in self.tasks]
        if tasks:
            log.info("revoked: committing and closing %s", sorted(t.uid for t in tasks))
        await asyncio.gather(*(self._close(t, commit=True) for t in tasks))

    async def _on_assigned(self, tps: list[TopicPartition]) -> None:
        consumer = self.consumer
        if consumer is None or self._closing:
            return
        mine = [tp for tp in tps if tp.topic in self.stage_of_topic]
        for tp in mine:
            consumer.pause(tp)
        self._opening += 1
        try:
            results = await asyncio.gather(*(self._open(tp) for tp in mine), return_exceptions=True)
        finally:
            self._opening -= 1
        for tp, result in zip(mine, results):
            if isinstance(result, BaseException):
                if self._closing:
                    log.debug("opening task for %s while stopping: %r", tp, result)
                    return
                log.error("opening task for %s failed: %r", tp, result)
                self._fail(result)
                return
            consumer.resume(tp)
        if self._rebalance_started is not None:
            self.last_rebalance_seconds = time.monotonic() - self._rebalance_started
        log.info("assigned: %s", self.assignment())

    async def _open(self, tp: TopicPartition) -> None:
        s = self.settings
        consumer = self.consumer
        assert consumer is not None
        stage = self.stage_of_topic[tp.topic]
        producer = TaskProducer(
            s.bootstrap_servers,
            transactional_id=f"{s.application_id}-{stage.uid}-{tp.partition}",
            options=self.producer_options,
        )
        await producer.start(_STARTUP_TIMEOUT_S)  # fences the previous owner first
        try:
            committed, metadata = await consumer.committed_with_metadata(tp)
            restored: list[bytes] = []
            if stage.changelog_topic is not None:
                began = time.monotonic()
                restored = _latest_values(
                    await read_partition(
                        s.bootstrap_servers,
                        TopicPartition(stage.changelog_topic, tp.partition),
                        options=self.consumer_options,
                        timeout_s=_STARTUP_TIMEOUT_S,
                    )
                )
                self.restore_seconds += time.monotonic() - began
            start = committed
            if start is None and stage.source is not None:
                start = await _starting_offset(consumer, stage, tp)
            await consumer.seek(tp, start)
            await producer.begin()
            task = Task(
                stage,
                tp,
                producer,
                group_id=s.application_id,
                commit_interval_s=s.commit_interval_ms / 1000.0,
                start_offset=start,
                upstream_tasks=sum(self.task_counts[u] for u in stage.upstream_stages),
                event_time=TaskEventTime.decode(metadata),
            )

            def wrap(sink: Sink[Any]) -> Sink[Any]:
                if isinstance(sink, KafkaSink):
                    return TransactionalKafkaSink(task, sink)
                return sink

            ports = TaskPorts(TaskInput(task), lambda spec: HopSink(task, spec), wrap, restored)
            task.handle = await self.job.start_task(stage.uid, tp.partition, ports)
        except BaseException:
            await producer.abandon()
            raise
        if self._closing:  # stopped while this task was opening
            await self._close(task, commit=False)
            return
        self.tasks[tp] = task
        watcher = asyncio.create_task(self._watch(task))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        log.debug(
            "task %s opened at offset %s (%d state entries)", task.uid, committed, len(restored)
        )

    async def _watch(self, task: Task) -> None:
        assert task.handle is not None
        try:
            await task.handle.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            task.ended.set()
            if self.tasks.get(task.tp) is not task:
                return  # closed on purpose
            if _fenced(exc):
                # A newer owner, or the broker's transaction timeout: either way the
                # group's next assignment says who runs the task now.
                log.warning(
                    "task %s was fenced by a newer owner: dropping it, rejoining the group",
                    task.uid,
                )
                self.tasks.pop(task.tp, None)
                await task.producer.abandon()
                if self.consumer is not None and not self._closing:
                    self.consumer.request_rejoin()
                return
            if _retriable_kafka_error(exc) and self.consumer is not None and not self._closing:
                self._start_reopening(task, exc)
                return
            self._fail(exc)

    def _start_reopening(self, task: Task, cause: BaseException) -> None:
        """Drop a task that failed on a retriable Kafka error (the broker went away, a
        producer died with its connection) and open it again from its last commit."""
        assert self.consumer is not None
        self.consumer.pause(task.tp)  # nothing is fetched for it until it is open again
        self.tasks.pop(task.tp, None)
        log.warning("task %s failed, opening it again from its last commit: %s", task.uid, cause)
        reopen = asyncio.create_task(
            self._reopen(task), name=f"flowactors:scale-out:reopen:{task.tp.topic}"
        )
        self._reopening[task.tp] = reopen
        reopen.add_done_callback(lambda done: self._reopened(task.tp, done))

    async def _reopen(self, task: Task) -> None:
        """Close the failed task uncommitted and open it again, as a new owner would: a
        new producer (initialising the id aborts what the failed one left open), the
        committed offset, the changelog, a seek. Retried, with backoff, while Kafka
        cannot be reached; given up when the partition is no longer this worker's."""
        consumer = self.consumer
        assert consumer is not None
        await self._close(task, commit=False)
        delay = _REOPEN_BACKOFF_S
        self._opening += 1
        try:
            while not self._closing and consumer.owns(task.tp):
                await asyncio.sleep(delay)
                try:
                    await self._open(task.tp)
                except TaskFenced:  # someone else owns it now: the group decides
                    log.warning("task %s was fenced while opening again: rejoining", task.uid)
                    consumer.request_rejoin()
                    return
                except ConnectorError as exc:
                    if not exc.retriable:
                        raise
                    log.warning("opening task %s again failed (retried): %s", task.uid, exc)
                    delay = min(2 * delay, _REOPEN_BACKOFF_MAX_S)
                    continue
                if self._closing:
                    return
                consumer.resume(task.tp)
                log.info("task %s runs again; assigned: %s", task.uid, self.assignment())
                return
        finally:
            self._opening -= 1

    def _reopened(self, tp: TopicPartition, done: asyncio.Task[None]) -> None:
        if self._reopening.get(tp) is done:
            del self._reopening[tp]
        if not done.cancelled() and done.exception() is not None:
            self._fail(cast(BaseException, done.exception()))

    async def _close(self, task: Task, *, commit: bool) -> None:
        try:
            if commit and task.handle is not None and not task.stopped:
                commit = await self._final_commit(task)
        finally:
            self._commits_of_closed += task.commits
            if task.handle is not None:
                await task.handle.cancel()
            if commit:
                await task.producer.stop()
            else:
                await task.producer.abandon()

    async def _final_commit(self, task: Task) -> bool:
        """Commit at the task's next batch boundary; whether that worked (not when the
        task's plan ended first, e.g. fenced, or the commit did not finish in time)."""
        final = task.request_final_commit()
        ended: asyncio.Future[Any] = asyncio.ensure_future(task.ended.wait())
        waiting: set[asyncio.Future[Any]] = {final, ended}
        try:
            await asyncio.wait(
                waiting, timeout=_FINAL_COMMIT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ended.cancel()
        if not final.done():
            log.warning("task %s: no final commit (the task ended or took too long)", task.uid)
            return False
        if final.exception() is not None:
            log.warning("task %s: final commit failed: %r", task.uid, final.exception())
            return False
        return True


class _Offsets:
    """What :meth:`KafkaOffsetsInitializer.resolve` asks of a consumer, over the group
    consumer. Committed offsets of the source's own group do not apply in scale-out (the
    application's group is the truth): ``committed(...)`` resolves to its fallback."""

    group_id = None

    def __init__(self, consumer: GroupConsumer) -> None:
        self.consumer = consumer

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return await self.consumer.beginning_offsets(tps)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return await self.consumer.end_offsets(tps)

    async def offsets_for_times(
        self, tps: list[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int | None]:
        return await self.consumer.offsets_for_times(tps, timestamp_ms)


async def _starting_offset(consumer: GroupConsumer, stage: StageSpec, tp: TopicPartition) -> int:
    """Where a task of a source stage starts when the application never committed for it:
    the source's starting offsets (earliest, latest, a timestamp, given offsets)."""
    initializer = cast(KafkaSource[Any], stage.source).settings.starting
    if initializer.kind == "committed":
        initializer = initializer.fallback or KafkaOffsetsInitializer.earliest()
    resolved = await initializer.resolve(cast(Any, _Offsets(consumer)), [tp])
    return resolved[tp]


def _fenced(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TaskFenced):
            return True
        seen = seen.__cause__ or getattr(seen, "cause", None)
    return False


def _retriable_kafka_error(exc: BaseException) -> bool:
    """Whether ``exc`` was caused by a Kafka error that retrying may heal."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectorError):
            return seen.retriable
        seen = seen.__cause__ or getattr(seen, "cause", None)
    return False


def _latest_values(records: list[tuple[bytes | None, bytes | None]]) -> list[bytes]:
    """The value of each key's last record, keys whose last record is a tombstone dropped."""
    latest: dict[bytes | None, bytes | None] = {}
    for key, value in records:
        latest[key] = value
    return [v for v in latest.values() if v is not None]
