"""A worker: this replica's member of the consumer group ``application_id``.

The group consumer subscribes to every topic a stage reads (the user topics of source
stages, the internal topics); the group's sticky assignor (:mod:`._assignor`) assigns
their partitions, and a partition of a stage's input topic *is* a task of that stage.
aiokafka rebalances eagerly, so:

- on revocation, tasks still opening are cancelled (restores included); every running
  task commits (at its next batch boundary) and is *suspended*: its producer closed
  (its epoch noted), its plan and state kept;
- on assignment, suspended tasks not given back are closed, the new partitions are
  paused, and each task is opened outside the callback: its transactional producer is
  initialised (fencing any previous owner and aborting what it left open); a
  suspended task that nobody owned since (the new producer is the next epoch of its
  last one, the committed offset did not move) resumes as it was; any other is opened
  afresh: the committed offset read, the changelog partition restored up to its last
  stable offset, the partition sought, the task's plan started. Then the partition is
  resumed.

One fetch loop feeds every task's queue and pauses partitions whose task is behind.
A planned :meth:`stop` commits every task and leaves the group at once; :meth:`cancel`
commits nothing (the next owner's fence aborts what is open).

The module is longer than the style guide's ~500 lines: the rebalance callbacks, the
openers, the fetch loop and the shutdown all change the same task maps (running,
suspended, opening, being revoked); split up, they would be one class over several
files.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, NamedTuple, cast

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
        #: Revoked tasks kept with their plan and state, until the next assignment.
        self.suspended: dict[TopicPartition, Suspended] = {}
        #: Tasks being opened (fencing, restoring) outside the rebalance callback; their
        #: partitions are paused and have no position yet.
        self._openers: dict[TopicPartition, asyncio.Task[None]] = {}
        self.restore_seconds = 0.0
        self.restores = 0
        self.restores_cancelled = 0
        self.resumed = 0
        self._restoring: set[TopicPartition] = set()
        #: Revoked tasks being committed, not yet suspended or closed.
        self._revoking: set[Task] = set()
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
            owned=self._owned,
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
            commits=self._commits_of_closed
            + sum(t.commits for t in self.tasks.values())
            + sum(s.task.commits for s in self.suspended.values()),
            lag=lag,
            loop_stalls=self.stall_watch.stalls,
            longest_loop_stall_seconds=self.stall_watch.longest_stall_s,
            restores=self.restores,
            restores_cancelled=self.restores_cancelled,
            resumed=self.resumed,
            restoring=tuple(
                sorted((self.stage_of_topic[tp.topic].uid, tp.partition) for tp in self._restoring)
            ),
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
        openers = list(self._openers.values())
        for opener in openers:
            opener.cancel()
        await asyncio.gather(*openers, return_exceptions=True)
        tasks = list(self.tasks.values())
        self.tasks.clear()
        suspended = [s.task for s in self.suspended.values()]
        self.suspended.clear()
        await asyncio.gather(
            *(self._close(t, commit=commit) for t in tasks),
            *(self._close(t, commit=False) for t in suspended),  # committed when suspended
        )
        if self.consumer is not None:
            await self.consumer.stop()
            # a revocation that ran meanwhile may have suspended tasks after the above
            left = [s.task for s in self.suspended.values()] + [*self.tasks.values()]
            left += self._revoking
            self.suspended.clear()
            self.tasks.clear()
            self._revoking.clear()
            await asyncio.gather(*(self._close(t, commit=False) for t in left))
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
                if not self._openers and not self._reopening:
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
        started = False
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
                    if not started:  # connecting is retried like purging
                        await purger.start(_STARTUP_TIMEOUT_S)
                        started = True
                    await purger.delete_before(todo)
                    self.purged.update(todo)
                except ConnectorError as exc:
                    log.warning("purging internal topics failed (retried later): %s", exc)
        finally:
            await purger.stop()

    # -- rebalances ------------------------------------------------------------------

    def _owned(self) -> list[TopicPartition]:
        """The tasks whose state this worker holds (sent to the assignor when joining)."""
        return sorted({*self.tasks, *self.suspended})

    async def _on_revoked(self, tps: list[TopicPartition]) -> None:
        self.rebalances += 1
        self._rebalance_started = time.monotonic()
        # Taken out first: a task that fails meanwhile is not reopened (see _watch), and
        # a stop cutting this short closes them (tracked until suspended or closed).
        tasks = [self.tasks.pop(tp) for tp in tps if tp in self.tasks]
        self._revoking.update(tasks)
        reopening = [self._reopening[tp] for tp in tps if tp in self._reopening]
        revoked = set(tps)
        openers = [self._openers[tp] for tp in sorted(revoked & self._openers.keys())]
        for pending in (*reopening, *openers):  # opening or restoring: stop at once
            pending.cancel()
        # ... while the running tasks make their final commits: the rebalance waits
        # for the slower of the two, not for both in turn
        stopped = asyncio.gather(*reopening, *openers, return_exceptions=True)
        if tasks:
            log.info("revoked: committing and suspending %s", sorted(t.uid for t in tasks))
        committed = await asyncio.gather(*(self._final_commit(t) for t in tasks))
        await stopped
        if not tasks:
            return
        await asyncio.gather(*(self._suspend(task, ok) for task, ok in zip(tasks, committed)))

    async def _suspend(self, task: Task, committed: bool) -> None:
        if not committed or self._closing:  # not committed, or stopping meanwhile: closed
            self._revoking.discard(task)
            await self._close(task, commit=False)
            return
        identity = task.producer.identity()
        await task.producer.stop()
        task.suspend()
        self._revoking.discard(task)
        self.suspended[task.tp] = Suspended(task, identity)

    def _changelog_of(self, stage: StageSpec, partition: int) -> TopicPartition | None:
        if stage.changelog_topic is None:
            return None
        return TopicPartition(stage.changelog_topic, partition)

    async def _on_assigned(self, tps: list[TopicPartition]) -> None:
        consumer = self.consumer
        if consumer is None or self._closing:
            return
        mine = [tp for tp in tps if tp.topic in self.stage_of_topic]
        for tp in mine:
            consumer.pause(tp)
        gone = [self.suspended.pop(tp) for tp in list(self.suspended) if tp not in mine]
        if gone:
            log.info("closing suspended tasks now owned elsewhere: %s", [s.task.uid for s in gone])
        await asyncio.gather(*(self._close(s.task, commit=False) for s in gone))
        # Opening (fencing, restoring) runs outside this callback: the group does not
        # wait for restores, and the next revocation cancels them.
        for tp in mine:
            opener = asyncio.create_task(
                self._open_task(tp, self.suspended.pop(tp, None)),
                name=f"flowactors:scale-out:open:{tp.topic}/{tp.partition}",
            )
            self._openers[tp] = opener
        if not mine:
            self._rebalance_done()

    def _rebalance_done(self) -> None:
        if self._rebalance_started is not None:
            self.last_rebalance_seconds = time.monotonic() - self._rebalance_started
            self._rebalance_started = None
        log.info("assigned: %s", self.assignment())

    async def _open_task(self, tp: TopicPartition, suspended: Suspended | None) -> None:
        consumer = self.consumer
        assert consumer is not None
        try:
            try:
                task = await self._resumed_or_opened(tp, suspended)
            except asyncio.CancelledError:
                log.info("opening task %s cancelled (revoked, or the worker stopping)", tp)
                raise
            except BaseException as exc:
                self._opening_failed(tp, exc)
                return
            if self._closing:  # stopped while this task was opening
                await self._close(task, commit=False)
                return
            self.tasks[tp] = task
            consumer.resume(tp)
        finally:
            if self._openers.get(tp) is asyncio.current_task():
                del self._openers[tp]
        if not self._openers:
            self._rebalance_done()

    async def _resumed_or_opened(self, tp: TopicPartition, suspended: Suspended | None) -> Task:
        """The task for ``tp``: fenced, then resumed if it was suspended here and nobody
        owned it since, else opened (restored). A suspended task that is not resumed is
        closed on every path, a cancellation included."""
        producer: TaskProducer | None = None
        try:
            producer = await self._fenced_producer(tp)
            if suspended is not None:
                task = await self._resume(tp, suspended, producer)
                if task is not None:
                    suspended = None
                    return task
            return await self._open(tp, producer)
        except BaseException:
            if producer is not None:
                await producer.abandon()
            raise
        finally:
            if suspended is not None:
                await self._close(suspended.task, commit=False)

    def _opening_failed(self, tp: TopicPartition, exc: BaseException) -> None:
        """A task could not be opened: a fence means another owner (the group decides);
        a Kafka error that retrying may heal is retried with backoff; anything else
        fails the worker."""
        consumer = self.consumer
        if self._closing or consumer is None:
            log.debug("opening task for %s while stopping: %r", tp, exc)
        elif _fenced(exc):
            log.warning("task %s was fenced while opening: rejoining the group", tp)
            consumer.request_rejoin()
        elif _retriable_kafka_error(exc) and consumer.owns(tp):
            self._start_reopening(tp, exc)
        else:
            log.error("opening task for %s failed: %r", tp, exc)
            self._fail(exc)

    async def _fenced_producer(self, tp: TopicPartition) -> TaskProducer:
        """The task's producer, started: the broker aborts what a previous owner left
        open and fences it."""
        s = self.settings
        stage = self.stage_of_topic[tp.topic]
        producer = TaskProducer(
            s.bootstrap_servers,
            transactional_id=f"{s.application_id}-{stage.uid}-{tp.partition}",
            options=self.producer_options,
        )
        await producer.start(_STARTUP_TIMEOUT_S)
        return producer

    async def _resume(
        self, tp: TopicPartition, suspended: Suspended, producer: TaskProducer
    ) -> Task | None:
        """The suspended task running again, if nobody owned it since it was suspended
        (``producer``, which fenced every other owner, is the next epoch of the task's
        last producer, and the group's input offset is the one the task committed);
        ``None``: it must be restored."""
        consumer = self.consumer
        assert consumer is not None
        task = suspended.task
        committed = await consumer.committed(tp)
        pid, epoch = suspended.producer
        now = producer.identity()
        if task.ended.is_set() or committed != task.group_offset or now != (pid, epoch + 1):
            log.warning(
                "task %s changed hands while suspended (producer %s -> %s, offset %s -> %s): "
                "restoring it",
                task.uid,
                suspended.producer,
                now,
                task.group_offset,
                committed,
            )
            return None
        await consumer.seek(tp, task.committed_offset)
        await producer.begin()
        task.resume(producer)
        self.resumed += 1
        log.debug("task %s resumed at offset %s", task.uid, task.committed_offset)
        return task

    async def _open(self, tp: TopicPartition, producer: TaskProducer) -> Task:
        """A new task for ``tp``: its state restored from the changelog, its plan started."""
        s = self.settings
        consumer = self.consumer
        assert consumer is not None
        stage = self.stage_of_topic[tp.topic]
        committed, metadata = await consumer.committed_with_metadata(tp)
        restored: list[bytes] = []
        changelog = self._changelog_of(stage, tp.partition)
        if changelog is not None:
            began = time.monotonic()
            self._restoring.add(tp)
            try:
                restored = _latest_values(
                    await read_partition(
                        s.bootstrap_servers,
                        changelog,
                        options=self.consumer_options,
                        timeout_s=_STARTUP_TIMEOUT_S,
                    )
                )
            except asyncio.CancelledError:
                self.restores_cancelled += 1
                log.info("restore of %s/%s cancelled", changelog.topic, changelog.partition)
                raise
            finally:
                self._restoring.discard(tp)
                self.restore_seconds += time.monotonic() - began
            self.restores += 1
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
            group_offset=committed,
            upstream_tasks=sum(self.task_counts[u] for u in stage.upstream_stages),
            event_time=TaskEventTime.decode(metadata),
        )

        def wrap(sink: Sink[Any]) -> Sink[Any]:
            if isinstance(sink, KafkaSink):
                return TransactionalKafkaSink(task, sink)
            return sink

        ports = TaskPorts(TaskInput(task), lambda spec: HopSink(task, spec), wrap, restored)
        task.handle = await self.job.start_task(stage.uid, tp.partition, ports)
        watcher = asyncio.create_task(self._watch(task), name=f"flowactors:scale-out:watch:{tp}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        log.debug(
            "task %s opened at offset %s (%d state entries)", task.uid, committed, len(restored)
        )
        return task

    async def _watch(self, task: Task) -> None:
        assert task.handle is not None
        try:
            await task.handle.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            task.ended.set()
            if self.tasks.get(task.tp) is not task:
                return  # closed on purpose, or suspended (it will not resume)
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
                self.tasks.pop(task.tp, None)
                self._start_reopening(task.tp, exc, failed=task)
                return
            self._fail(exc)

    def _start_reopening(
        self, tp: TopicPartition, cause: BaseException, *, failed: Task | None = None
    ) -> None:
        """Open the task of ``tp`` again from its last commit, after it failed (or could
        not be opened) on a retriable Kafka error: the broker went away, a producer died
        with its connection. ``failed``: the task to close first."""
        assert self.consumer is not None
        self.consumer.pause(tp)  # nothing is fetched for it until it is open again
        log.warning("task %s/%s failed, opening it again from its last commit: %s", *tp, cause)
        reopen = asyncio.create_task(
            self._reopen(tp, failed), name=f"flowactors:scale-out:reopen:{tp.topic}/{tp.partition}"
        )
        self._reopening[tp] = reopen
        reopen.add_done_callback(lambda done: self._reopened(tp, done))

    async def _reopen(self, tp: TopicPartition, failed: Task | None) -> None:
        """Close the failed task uncommitted and open it again, as a new owner would: a
        new producer (initialising the id aborts what the failed one left open), the
        committed offset, the changelog, a seek. Retried, with backoff, while Kafka
        cannot be reached; given up when the partition is no longer this worker's."""
        consumer = self.consumer
        assert consumer is not None
        if failed is not None:
            await self._close(failed, commit=False)
        delay = _REOPEN_BACKOFF_S
        while not self._closing and consumer.owns(tp):
            await asyncio.sleep(delay)
            try:
                reopened = await self._resumed_or_opened(tp, None)
            except TaskFenced:  # someone else owns it now: the group decides
                log.warning("task %s/%s was fenced while opening again: rejoining", *tp)
                consumer.request_rejoin()
                return
            except ConnectorError as exc:
                if not exc.retriable:
                    raise
                log.warning("opening task %s/%s again failed (retried): %s", *tp, exc)
                delay = min(2 * delay, _REOPEN_BACKOFF_MAX_S)
                continue
            if self._closing or not consumer.owns(tp):
                await self._close(reopened, commit=False)
                return
            self.tasks[tp] = reopened
            consumer.resume(tp)
            log.info("task %s runs again; assigned: %s", reopened.uid, self.assignment())
            return

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
            task.commits = 0
            try:
                if task.handle is not None:
                    await task.handle.cancel()
            finally:  # also when cancelled while the plan winds down
                if commit:
                    await task.producer.stop()
                else:
                    await task.producer.abandon()

    async def _final_commit(self, task: Task) -> bool:
        """Commit at the task's next batch boundary; whether that worked (not when the
        task's plan ended first, e.g. fenced, or the commit did not finish in time)."""
        if task.handle is None:
            return False
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


class Suspended(NamedTuple):
    """A revoked task kept with its plan and state, and the (producer id, epoch) of its
    last producer."""

    task: Task
    producer: tuple[int, int]


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
