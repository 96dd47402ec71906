"""The Kafka source's reader: topic-partitions as splits, offsets in the snapshot (FLIP-27).

Assignment
    Every reader subtask discovers the partitions of its topics (or pattern) itself and
    takes those that :func:`partition_owner` gives it: a stable function of topic, partition
    and parallelism (Flink's ``KafkaTopicPartitionAssigner``: consecutive partitions of a
    topic on consecutive subtasks, from a start that depends on the topic's name). All
    readers compute the same function, so no enumerator is needed to agree who reads what,
    and a partition added later lands on exactly one reader at its next discovery. (Flink runs
    a central split enumerator; flowactors' SPI has no coordinator-side hook for sources, and
    a pure function of the partition gives the same guarantee with no messages.) Readers use
    manual assignment: no consumer-group membership, no rebalancing.

Snapshots and rescaling
    A reader's snapshot entry is self-describing: ``{"subtask", "parallelism", "splits":
    [(topic, partition, next offset, stop offset or None), ...]}``. After a restore every
    reader sees *all* old readers' entries (``SourceReaderContext.restored_union_state``,
    Flink's union list state, as ``FlinkKafkaConsumer`` restores) and keeps the partitions it
    owns under the new parallelism (a partition read by subtask 3 of 4 may belong to subtask
    1 of 2). A reader that does not see every old subtask's entry refuses to start rather
    than read a partition twice or not at all.

    Partitions in no entry (created after the snapshot) are read from the earliest offset.

Reading
    ``poll_next`` takes up to ``max_records_per_poll`` records of what the consumer has
    already fetched (``getmany`` without waiting) and emits up to one batch per partition per
    call, round-robin over the partitions (so they progress together), with the records'
    Kafka timestamps and ``split_id=(topic, partition)``, so watermarks are generated per
    partition. When nothing is there it returns ``NOTHING_AVAILABLE``; ``is_available``
    then waits at most ``poll_timeout_ms`` for records, and is cancelled at once by a control
    message (a checkpoint trigger), losing nothing: records are only taken from the consumer
    when it returns.

A record that cannot be deserialised fails the job with a ``MalformedRecordError`` naming
topic, partition and offset, or goes to a dead-letter topic (headers say why and where it came
from) or to a side output as a ``MalformedRecord``.

The reader is built from a :class:`_Settings`, which :class:`~flowactors_kafka.KafkaSource`
(in :mod:`flowactors_kafka._source`) fills and validates.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from flowactors import ConnectorError, MalformedRecord, MalformedRecordError, OutputTag
from flowactors.spi import InputStatus, ReaderOutput, SourceReader, SourceReaderContext
from flowactors_kafka._client import Consumer, KafkaRecord, Producer, TopicPartition, close_fully
from flowactors_kafka._dead_letters import DeadLetterWriter
from flowactors_kafka._offsets import KafkaOffsetsInitializer
from flowactors_kafka._serialization import Deserializer

log = logging.getLogger("flowactors_kafka")

T = TypeVar("T")

MORE = InputStatus.MORE_AVAILABLE
NOTHING = InputStatus.NOTHING_AVAILABLE
END = InputStatus.END_OF_INPUT

_STATE_KEY = "flowactors_kafka.source"
_STATE_VERSION = 1


def partition_owner(topic: str, partition: int, parallelism: int) -> int:
    """The reader subtask of ``topic``/``partition`` at ``parallelism`` (stable everywhere).

    >>> [partition_owner("rides", p, 2) for p in range(4)]
    [1, 0, 1, 0]
    """
    start = (zlib.crc32(topic.encode("utf-8")) & 0x7FFFFFFF) % parallelism
    return (start + partition) % parallelism


@dataclass
class _Settings(Generic[T]):
    """Everything a reader needs; built by :class:`~flowactors_kafka.KafkaSource`."""

    bootstrap_servers: str
    topics: list[str] | None
    pattern: re.Pattern[str] | None
    group_id: str | None
    starting: KafkaOffsetsInitializer
    stopping: KafkaOffsetsInitializer | None
    decode: Callable[[KafkaRecord], T]
    #: The value deserializer when records are values only (a faster path than ``decode``).
    value_fn: Deserializer | None
    consumer_options: dict[str, Any]
    producer_options: dict[str, Any]
    discovery_interval_ms: int
    dead_letter_topic: str | None
    malformed_output: OutputTag[Any] | None
    client_id_prefix: str
    startup_timeout_s: float
    poll_timeout_ms: int
    commit_offsets_on_checkpoint: bool
    #: The most records taken from the consumer at a time (fetched, not yet emitted).
    max_records_per_poll: int = 1000
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Split:
    tp: TopicPartition
    next_offset: int
    stop: int | None = None
    finished: bool = False


class KafkaSourceReader(SourceReader[T]):
    """One subtask's share of the partitions; see the module docstring."""

    def __init__(self, settings: _Settings[T], context: SourceReaderContext) -> None:
        self.settings = settings
        self.context = context
        self.subtask = context.subtask_index
        self.parallelism = context.parallelism
        self.batch_size = context.batch_size
        self.bounded = settings.stopping is not None
        self.splits: dict[TopicPartition, _Split] = {}
        self.consumer: Consumer | None = None
        self.dead_letters: DeadLetterWriter | None = None
        self._value_fn = settings.value_fn
        #: Fetched, not yet emitted: per partition, its records and the index of the next one.
        self._buffer: dict[Any, list[Any]] = {}
        self._announce: list[TopicPartition] = []
        self._next_discovery = float("inf")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commits: dict[int, dict[TopicPartition, int]] = {}
        self._unfinished = 0

    # -- lifecycle ---------------------------------------------------------------------

    def _client_id(self, role: str) -> str:
        ctx, prefix = self.context, self.settings.client_id_prefix
        return f"{prefix}-{ctx.job_name}-{ctx.source_name}-{role}-{self.subtask}"

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.close()  # the runtime closes only readers that started
            raise

    async def _start(self) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        restored = self._restored_splits()
        self.consumer = Consumer(
            s.bootstrap_servers,
            group_id=s.group_id,
            client_id=self._client_id("source"),
            options=s.consumer_options,
        )
        await self.consumer.start(s.startup_timeout_s)
        if s.dead_letter_topic is not None:
            producer = Producer(
                s.bootstrap_servers,
                client_id=self._client_id("dlq"),
                options=s.producer_options,
            )
            self.dead_letters = DeadLetterWriter(producer, s.dead_letter_topic)
            await self.dead_letters.start(s.startup_timeout_s)
        if restored is not None:
            for tp, (offset, stop) in restored.items():
                self.splits[tp] = _Split(tp, offset, stop, stop is not None and offset >= stop)
            if not self.bounded:
                await self._discover(initial=False, wait_for_topics=True)
        else:
            await self._discover(initial=True, wait_for_topics=True)
        self._assign()
        if not self.bounded and s.discovery_interval_ms > 0:
            self._next_discovery = self._loop.time() + s.discovery_interval_ms / 1000
        log.info(
            "Kafka source %s subtask %d/%d reads %s",
            self.context.source_name,
            self.subtask,
            self.parallelism,
            sorted((tp.topic, tp.partition, sp.next_offset) for tp, sp in self.splits.items()),
        )

    async def close(self) -> None:
        await close_fully(self._close())

    async def _close(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            await consumer.stop()
        dead_letters, self.dead_letters = self.dead_letters, None
        if dead_letters is not None:
            await dead_letters.close()

    # -- restore -----------------------------------------------------------------------

    def _restored_splits(self) -> dict[TopicPartition, tuple[int, int | None]] | None:
        """This subtask's partitions and offsets from the restored entries (None: fresh)."""
        ctx = self.context
        entries = ctx.restored_union_state
        if entries is None:
            return None
        by_subtask: dict[int, dict[str, Any]] = {}
        for entry in entries:
            if isinstance(entry, dict) and entry.get(_STATE_KEY) == _STATE_VERSION:
                by_subtask[int(entry["subtask"])] = entry
        if not by_subtask:
            if not entries:
                raise ConnectorError(
                    f"Kafka source {ctx.source_name!r} subtask {self.subtask}: the restored "
                    "state holds no entry of any reader",
                    retriable=False,
                )
            raise ConnectorError(
                f"Kafka source {ctx.source_name!r}: the restored state is not a Kafka source's",
                retriable=False,
            )
        old_parallelism = {int(e["parallelism"]) for e in by_subtask.values()}
        if len(old_parallelism) != 1:
            raise ConnectorError(
                f"Kafka source {ctx.source_name!r}: restored entries disagree on the "
                f"parallelism they were written at ({sorted(old_parallelism)})",
                retriable=False,
            )
        (old_p,) = old_parallelism
        complete = set(by_subtask) == set(range(old_p))
        same_rule = old_p == self.parallelism and self.subtask in by_subtask
        if not complete and not same_rule:
            raise ConnectorError(
                f"Kafka source {ctx.source_name!r} subtask {self.subtask}: restored from "
                f"parallelism {old_p} but received the entries of subtasks "
                f"{sorted(by_subtask)} only; cannot tell which partitions other subtasks "
                "read",
                retriable=False,
            )
        use = by_subtask.values() if complete else [by_subtask[self.subtask]]
        out: dict[TopicPartition, tuple[int, int | None]] = {}
        p, me = self.parallelism, self.subtask
        for entry in use:
            for topic, partition, offset, stop in entry["splits"]:
                if partition_owner(topic, partition, p) == me:
                    out[TopicPartition(topic, partition)] = (int(offset), stop)
        return out

    # -- discovery ---------------------------------------------------------------------

    async def _matching_partitions(self, wait_for_topics: bool) -> list[TopicPartition]:
        s = self.settings
        assert self.consumer is not None and self._loop is not None
        deadline = self._loop.time() + s.startup_timeout_s
        while True:
            metadata = await self.consumer.topic_partitions()
            if s.pattern is not None:
                topics = [t for t in metadata if s.pattern.fullmatch(t)]
                missing: list[str] = []
            else:
                assert s.topics is not None
                topics = [t for t in s.topics if t in metadata]
                missing = [t for t in s.topics if t not in metadata]
            if not missing or not wait_for_topics:
                break
            if self._loop.time() >= deadline:
                raise ConnectorError(
                    f"Kafka source: topic(s) {missing} do not exist on {s.bootstrap_servers} "
                    f"(waited {s.startup_timeout_s:g} s); create them, or fix the topic names",
                    retriable=False,
                )
            await asyncio.sleep(0.2)
        return [TopicPartition(t, p) for t in topics for p in sorted(metadata[t])]

    async def _discover(self, *, initial: bool, wait_for_topics: bool = False) -> bool:
        """Take new partitions that this subtask owns; whether any were added."""
        assert self.consumer is not None
        found = await self._matching_partitions(wait_for_topics)
        p, me = self.parallelism, self.subtask
        new = [
            tp
            for tp in found
            if tp not in self.splits and partition_owner(tp.topic, tp.partition, p) == me
        ]
        if not new:
            return False
        s = self.settings
        # The partitions there at the very start begin where the user asked; any found later
        # (or not in a restored snapshot) are new since, and are read from their beginning.
        starting = s.starting if initial else KafkaOffsetsInitializer.earliest()
        offsets = await starting.resolve(self.consumer, new)
        stops: dict[TopicPartition, int] = {}
        if s.stopping is not None:
            stops = await s.stopping.resolve(self.consumer, new)
        for tp in new:
            stop = stops.get(tp)
            offset = offsets[tp]
            self.splits[tp] = _Split(tp, offset, stop, stop is not None and offset >= stop)
        if not initial:
            log.info("Kafka source subtask %d: new partitions %s", self.subtask, new)
        return True

    def _assign(self) -> None:
        assert self.consumer is not None
        self._buffer = {}  # records fetched before a new assignment are fetched again
        active = [sp for sp in self.splits.values() if not sp.finished]
        self.consumer.assign([sp.tp for sp in active])
        for sp in active:
            self.consumer.seek(sp.tp, sp.next_offset)
        self._unfinished = len(active)
        self._announce = [sp.tp for sp in self.splits.values()]

    # -- reading -----------------------------------------------------------------------

    async def poll_next(self, output: ReaderOutput[T]) -> InputStatus:
        if self._announce:
            # Every split takes part in the watermark from the start: a partition that has
            # not delivered yet holds event time back (as in Flink).
            for tp in self._announce:
                await output.collect_batch([], [], split_id=tp)
            self._announce = []
        assert self.consumer is not None and self._loop is not None
        if self._loop.time() >= self._next_discovery:
            self._next_discovery = self._loop.time() + self.settings.discovery_interval_ms / 1000
            try:
                found = await self._discover(initial=False)
            except ConnectorError as exc:
                if not exc.retriable:
                    raise
                log.warning("Kafka source: partition discovery failed, retrying later: %s", exc)
                found = False
            if found:
                self._assign()
                return MORE
        if self.bounded and self._unfinished == 0:
            return END
        if not self._buffer:
            self._buffer = {tp: [records, 0] for tp, records in (await self._fetch(0)).items()}
            self._report_lag()
        if not self._buffer:
            if self.bounded:
                self._finish_by_position()
                if self._unfinished == 0:
                    return END
            return NOTHING
        # One batch per partition per call, round-robin: partitions progress together (and
        # so do their watermarks), whatever order aiokafka's fetches come back in.
        n = self.batch_size
        for tp in list(self._buffer):
            entry = self._buffer[tp]
            all_records, start = entry
            records = all_records[start : start + n]
            if start + n < len(all_records):
                entry[1] = start + n
            else:
                del self._buffer[tp]
            split = self.splits.get(tp)
            if split is None or split.finished or not records:
                continue
            if split.stop is not None and records[-1].offset >= split.stop:
                records = [r for r in records if r.offset < split.stop]
                self._mark_finished(split)
                self._buffer.pop(tp, None)
                if not records:
                    continue
            split.next_offset = records[-1].offset + 1
            values, timestamps = await self._decode(records, output)
            await output.collect_batch(values, timestamps, split_id=split.tp)
            if split.stop is not None and split.next_offset >= split.stop and not split.finished:
                self._mark_finished(split)
        if self.bounded and self._unfinished == 0:
            return END
        return MORE

    def _report_lag(self) -> None:
        """Each partition's lag, from the end offsets the consumer's fetches returned."""
        assert self.consumer is not None
        report = self.context.metrics.report_lag
        for tp, split in self.splits.items():
            end = self.consumer.end_offset(tp)
            if end is not None:
                report(tp.topic, tp.partition, end - split.next_offset)

    async def _fetch(self, timeout_ms: int) -> dict[Any, list[Any]]:
        """Up to ``max_records_per_poll`` records the consumer has fetched (waiting up to
        ``timeout_ms`` for something). aiokafka keeps fetched data as bytes and makes a
        record object per record only when it hands it out: taking a bounded slice keeps
        the reader's memory near a plain consumer's, whatever the fetch sizes."""
        assert self.consumer is not None
        return await self.consumer.fetch(timeout_ms, self.settings.max_records_per_poll)

    async def is_available(self) -> None:
        if self._buffer or self.consumer is None:
            return
        if self._unfinished == 0:  # nothing assigned (yet): only discovery can change that
            await asyncio.sleep(self.settings.poll_timeout_ms / 1000)
            return
        data = await self._fetch(self.settings.poll_timeout_ms)
        if data and not self._buffer:
            self._buffer = {tp: [records, 0] for tp, records in data.items()}

    def _mark_finished(self, split: _Split) -> None:
        if split.finished:
            return
        split.finished = True
        self._unfinished -= 1
        assert self.consumer is not None
        self.consumer.pause(split.tp)

    def _finish_by_position(self) -> None:
        """A bounded partition whose log ends in control records (transaction markers) never
        delivers a record at ``stop - 1``: the consumer's position says it is done."""
        assert self.consumer is not None
        for split in self.splits.values():
            if split.finished or split.stop is None:
                continue
            position = self.consumer.position(split.tp)
            if position is not None and position >= split.stop:
                self._mark_finished(split)

    async def _decode(
        self, records: list[Any], output: ReaderOutput[T]
    ) -> tuple[list[T], list[int | None]]:
        value_fn = self._value_fn
        try:
            if value_fn is not None:
                values = [value_fn(r.value) for r in records]
            else:
                decode = self.settings.decode
                values = [decode(r) for r in records]
            return values, [r.timestamp for r in records]
        except Exception:
            return await self._decode_carefully(records, output)

    async def _decode_carefully(
        self, records: list[Any], output: ReaderOutput[T]
    ) -> tuple[list[T], list[int | None]]:
        decode = self.settings.decode
        values: list[T] = []
        timestamps: list[int | None] = []
        for record in records:
            try:
                values.append(decode(record))
                timestamps.append(record.timestamp)
            except Exception as exc:
                await self._malformed(record, exc, output)
        return values, timestamps

    async def _malformed(self, record: Any, exc: Exception, output: ReaderOutput[T]) -> None:
        s = self.settings
        topic, partition, offset = record.topic, record.partition, record.offset
        reason = f"{type(exc).__name__}: {exc}"
        raw = record.value if record.value is not None else b""
        if self.dead_letters is not None:
            # Awaited: the dead letter is durable before a checkpoint can cover its offset.
            await self.dead_letters.write(record, reason)
            return
        if s.malformed_output is not None:
            output.emit_side_output(
                s.malformed_output, MalformedRecord(topic, (partition, offset), raw, reason)
            )
            return
        raise MalformedRecordError(
            f"Kafka record {topic}/{partition}@{offset} cannot be deserialized: {reason}",
            source=topic,
            position=(partition, offset),
            raw=raw,
        ) from exc

    # -- checkpoints -------------------------------------------------------------------

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        splits = [
            (tp.topic, tp.partition, sp.next_offset, sp.stop) for tp, sp in self.splits.items()
        ]
        entry = {
            _STATE_KEY: _STATE_VERSION,
            "subtask": self.subtask,
            "parallelism": self.parallelism,
            "splits": splits,
        }
        if self.settings.group_id is not None and self.settings.commit_offsets_on_checkpoint:
            self._commits[checkpoint_id] = {tp: sp.next_offset for tp, sp in self.splits.items()}
        return [entry]

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        offsets = self._commits.pop(checkpoint_id, None)
        for old in [c for c in self._commits if c < checkpoint_id]:
            del self._commits[old]
        if offsets is None or self.consumer is None:
            return
        started = time.monotonic()
        try:
            await self.consumer.commit(offsets)
            self.context.metrics.report_commit(time.monotonic() - started)
        except ConnectorError as exc:  # offsets in Kafka are for monitoring only
            log.warning("Kafka source: committing offsets of checkpoint %d: %s", checkpoint_id, exc)
