"""The source's consumer: manual assignment, seeking, fetching, offsets by kind, commits.

Also the one place that reads aiokafka's consumer internals (a partition's position without
waiting for a fetch).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiokafka
import aiokafka.errors as kafka_errors

from flowactors import ConnectorError
from flowactors_kafka._client.connect import connect_with_retry, log
from flowactors_kafka._client.errors import _translated, translate_error
from flowactors_kafka._client.options import trust_of
from flowactors_kafka._client.records import TopicPartition


class Consumer:
    """An aiokafka consumer with manual assignment (no group membership, no rebalancing).

    The group id, when given, is used only to read committed offsets (a starting position)
    and to commit offsets for monitoring.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        group_id: str | None,
        client_id: str,
        options: Mapping[str, Any],
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self._kwargs = dict(options)
        self._kwargs.setdefault("auto_offset_reset", "earliest")
        self._kwargs.setdefault("client_id", client_id)
        self._consumer: Any = None

    def _make(self) -> Any:
        return aiokafka.AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            **self._kwargs,
        )

    async def start(self, timeout_s: float) -> None:
        async def start() -> None:
            self._consumer = self._make()
            await self._consumer.start()

        await connect_with_retry(
            start,
            self.stop,
            what="Kafka source",
            bootstrap_servers=self.bootstrap_servers,
            timeout_s=timeout_s,
            trust=trust_of(self._kwargs),
        )

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception as exc:  # closing must not hide the error that led here
                log.debug("closing the Kafka consumer: %r", exc)

    @property
    def _c(self) -> Any:
        if self._consumer is None:
            raise ConnectorError("Kafka: the consumer is not running", retriable=True)
        return self._consumer

    async def topic_partitions(self) -> dict[str, set[int]]:
        """Every topic of the cluster (internal ones excluded) and its partitions, fresh."""
        cluster = await _translated(self._c._client.fetch_all_metadata(), "reading metadata")
        out: dict[str, set[int]] = {}
        for topic in cluster.topics(exclude_internal_topics=True):
            parts = cluster.partitions_for_topic(topic)
            if parts:
                out[topic] = set(parts)
        return out

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        tps = [aiokafka.TopicPartition(tp.topic, tp.partition) for tp in partitions]
        self._c.assign(tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._c.seek(aiokafka.TopicPartition(tp.topic, tp.partition), offset)

    def pause(self, tp: TopicPartition) -> None:
        self._c.pause(aiokafka.TopicPartition(tp.topic, tp.partition))

    async def fetch(self, timeout_ms: int, max_records: int | None) -> dict[Any, list[Any]]:
        """Records by aiokafka ``TopicPartition`` (a tuple equal to ours); ``max_records``
        None: everything fetched so far."""
        try:
            result: dict[Any, list[Any]] = await self._c.getmany(
                timeout_ms=timeout_ms, max_records=max_records
            )
            return result
        except (kafka_errors.KafkaError, OSError) as exc:
            raise translate_error(exc, "fetching records") from exc

    def end_offset(self, tp: TopicPartition) -> int | None:
        """The end of ``tp`` as the last fetch saw it (the last stable offset when reading
        committed records), or ``None`` before a fetch returned it; no request is made."""
        key = aiokafka.TopicPartition(tp.topic, tp.partition)
        try:
            end = self._c.last_stable_offset(key)
            if end is None:
                end = self._c.highwater(key)
        except (AssertionError, KeyError):  # not assigned (any more)
            return None
        return None if end is None else int(end)

    def position(self, tp: TopicPartition) -> int | None:
        """The next offset the consumer will fetch, if it knows it (without waiting)."""
        subscription = self._c._subscription.subscription
        if subscription is None or subscription.assignment is None:
            return None
        key = aiokafka.TopicPartition(tp.topic, tp.partition)
        if key not in subscription.assignment.tps:
            return None
        state = subscription.assignment.state_value(key)
        if state is None or not state.has_valid_position:
            return None
        position: int = state.position
        return position

    async def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        got = await _translated(
            self._c.beginning_offsets([aiokafka.TopicPartition(*tp) for tp in tps]),
            "reading the earliest offsets",
        )
        return {TopicPartition(tp.topic, tp.partition): int(o) for tp, o in got.items()}

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        got = await _translated(
            self._c.end_offsets([aiokafka.TopicPartition(*tp) for tp in tps]),
            "reading the latest offsets",
        )
        return {TopicPartition(tp.topic, tp.partition): int(o) for tp, o in got.items()}

    async def offsets_for_times(
        self, tps: Sequence[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int | None]:
        got = await _translated(
            self._c.offsets_for_times({aiokafka.TopicPartition(*tp): timestamp_ms for tp in tps}),
            "looking up offsets by timestamp",
        )
        return {
            TopicPartition(tp.topic, tp.partition): None if o is None else int(o.offset)
            for tp, o in got.items()
        }

    async def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        out: dict[TopicPartition, int | None] = {}
        for tp in tps:
            offset = await _translated(
                self._c.committed(aiokafka.TopicPartition(*tp)),
                f"reading the committed offset of {tp.topic}/{tp.partition}",
            )
            out[tp] = None if offset is None else int(offset)
        return out

    async def committed_record_at(
        self, tp: TopicPartition, offset: int, timeout_s: float
    ) -> bool | None:
        """Whether the record at ``offset`` is visible to this (read_committed) consumer:
        ``True`` if it is, ``False`` if reading skips it (its transaction was aborted), ``None``
        if that cannot be told within ``timeout_s`` (an open transaction before it)."""
        key = aiokafka.TopicPartition(tp.topic, tp.partition)
        self._c.assign([key])
        self._c.seek(key, offset)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await self.fetch(200, 1)
            for records in batch.values():
                if records:
                    return bool(records[0].offset == offset)
            position = self.position(tp)
            if position is not None and position > offset:
                return False
        return None

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        assigned = self._c.assignment()
        todo = {
            aiokafka.TopicPartition(*tp): o
            for tp, o in offsets.items()
            if aiokafka.TopicPartition(*tp) in assigned
        }
        if todo:
            await _translated(self._c.commit(todo), "committing offsets")
