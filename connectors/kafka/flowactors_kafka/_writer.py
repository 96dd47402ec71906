"""The Kafka sink's writers: records to a topic with no guarantee, at least once, or exactly once.

- ``"none"``: records are sent as they come; nothing waits for the broker.
- ``"at-least-once"``: before a checkpoint barrier passes the sink (``prepare_commit``),
  every record sent so far is acknowledged by the broker (``acks=all``). After a failure the
  records since the last checkpoint are written again: duplicates, never loss.
- ``"exactly-once"``: Kafka transactions, one per checkpoint per subtask (see
  :mod:`flowactors_kafka._transactions`). Readers must use ``isolation.level=read_committed``.

This module holds the settings a writer runs on, the record encoder, and the
``"none"``/``"at-least-once"`` writer; :class:`~flowactors_kafka.KafkaSink` (in
:mod:`flowactors_kafka._sink`) validates and fills the settings.

Records are encoded into aiokafka record batches per partition directly (``create_batch`` /
``send_batch``), one coroutine per batch rather than per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from flowactors import ConnectorError
from flowactors.spi import SinkWriter, SinkWriterContext
from flowactors_kafka._client import (
    Producer,
    RecordBatch,
    close_fully,
    default_partition,
    wait_all,
    wait_for_topic,
)
from flowactors_kafka._serialization import Serializer

log = logging.getLogger("flowactors_kafka")

T = TypeVar("T")

#: ``partitioner(element, key bytes, value bytes, topic, partitions) -> partition``
Partitioner = Callable[[Any, bytes | None, bytes, str, Sequence[int]], int]


class DeliveryGuarantee(enum.Enum):
    NONE = "none"
    AT_LEAST_ONCE = "at-least-once"
    EXACTLY_ONCE = "exactly-once"


@dataclass
class _SinkSettings:
    bootstrap_servers: str
    topic: str | Callable[[Any], str]
    value_serializer: Serializer
    key_serializer: Callable[[Any], bytes | None] | None
    partitioner: Partitioner | str | None
    guarantee: DeliveryGuarantee
    transactional_id_prefix: str | None
    producer_options: dict[str, Any]
    client_id_prefix: str
    startup_timeout_s: float
    transaction_pool_size: int
    fail_on_lost_transaction: bool


class RecordEncoder:
    """Encodes records into per-partition batches and sends them on a producer.

    Keyed partitions are cached per key bytes (a dict lookup per record instead of a
    murmur2 in Python).
    """

    _CACHE_LIMIT = 100_000

    def __init__(self, settings: _SinkSettings, subtask: int) -> None:
        self.settings = settings
        self.subtask = subtask
        self._key_partition: dict[str, dict[bytes | None, int]] = {}
        self._round_robin = itertools.count(subtask)

    async def send(
        self, producer: Producer, values: list[Any], timestamps: list[int | None] | None
    ) -> list[asyncio.Future[Any]]:
        """Send ``values``; the futures of the batches, resolved when the broker has them."""
        s = self.settings
        topic_of = s.topic
        if timestamps is None:
            timestamps = [None] * len(values)
        if isinstance(topic_of, str):
            return await self._send_to(producer, topic_of, values, timestamps)
        by_topic: dict[str, tuple[list[Any], list[int | None]]] = {}
        for value, ts in zip(values, timestamps):
            vs, tss = by_topic.setdefault(topic_of(value), ([], []))
            vs.append(value)
            tss.append(ts)
        futures: list[asyncio.Future[Any]] = []
        for topic, (vs, tss) in by_topic.items():
            futures.extend(await self._send_to(producer, topic, vs, tss))
        return futures

    async def _send_to(
        self,
        producer: Producer,
        topic: str,
        values: list[Any],
        timestamps: list[int | None],
    ) -> list[asyncio.Future[Any]]:
        s = self.settings
        partitions = await producer.partitions(topic)
        n = len(partitions)
        payloads = list(map(s.value_serializer, values))
        key_ser = s.key_serializer
        keys: list[bytes | None] | itertools.repeat[None] = (
            list(map(key_ser, values)) if key_ser is not None else itertools.repeat(None)
        )
        partitioner = s.partitioner
        parts: list[int] | itertools.repeat[int]
        if partitioner == "fixed":
            parts = itertools.repeat(partitions[self.subtask % n])
        elif callable(partitioner):
            parts = [
                partitioner(v, k, p, topic, partitions) for v, k, p in zip(values, keys, payloads)
            ]
        elif key_ser is None:
            parts = itertools.repeat(partitions[next(self._round_robin) % n])
        else:
            parts = self._key_partitions(topic, keys, partitions)  # type: ignore[arg-type]
        batches: dict[int, RecordBatch] = {}
        futures: list[asyncio.Future[Any]] = []
        headers: list[tuple[str, bytes]] = []
        for part, key, payload, ts in zip(parts, keys, payloads, timestamps):
            batch = batches.get(part)
            if batch is None:
                batch = batches[part] = producer.create_batch()
            if batch.append(batch.count, ts, key, payload, headers) is None:
                futures.append(await producer.send_batch(batch, topic, part))
                batch = batches[part] = producer.create_batch()
                if batch.append(0, ts, key, payload, headers) is None:
                    raise ConnectorError(
                        f"Kafka: a record for {topic} does not fit in a record batch "
                        f"({s.producer_options.get('max_batch_size')} bytes): raise batch.size",
                        retriable=False,
                    )
            batch.count += 1
        for part, batch in batches.items():
            if batch.count:
                futures.append(await producer.send_batch(batch, topic, part))
        return futures

    def _key_partitions(
        self, topic: str, keys: list[bytes | None], partitions: list[int]
    ) -> list[int]:
        """Kafka's default partition of each key (murmur2), through a per-key cache; records
        without a key share one partition per batch, round-robin."""
        cache = self._key_partition.setdefault(topic, {})
        if len(cache) > self._CACHE_LIMIT:
            cache.clear()
        get = cache.get
        parts = [get(k, -1) for k in keys]
        if -1 in parts:
            n = len(partitions)
            sticky = partitions[next(self._round_robin) % n]
            for i, (p, k) in enumerate(zip(parts, keys)):
                if p < 0:
                    if k is None:
                        parts[i] = sticky
                    else:
                        parts[i] = cache[k] = partitions[default_partition(k, n)]
        return parts


class Broken:
    """Remembers that records were lost to a failed send, and fails every later call.

    A failed checkpoint does not fail the job (the runtime counts it against the tolerable
    failures and goes on), so the writer must: records whose delivery failed are gone from
    its producer, and only a restart from the last checkpoint brings them back. A later
    checkpoint must never succeed (at least once) nor commit the transaction (exactly once).
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.error: ConnectorError | None = None

    def check(self) -> None:
        if self.error is not None:
            raise ConnectorError(
                f"{self.what}: records were lost to an earlier failure ({self.error}); the job "
                f"must restart from its last checkpoint",
                retriable=True,
            ) from self.error

    @contextlib.contextmanager
    def latch(self) -> Iterator[None]:
        try:
            yield
        except ConnectorError as exc:
            self.error = self.error or exc
            raise


class KafkaWriter(SinkWriter[T]):
    """The ``"none"`` and ``"at-least-once"`` writer: one producer per subtask."""

    def __init__(self, settings: _SinkSettings, context: SinkWriterContext) -> None:
        self.settings = settings
        self.context = context
        self.encoder = RecordEncoder(settings, context.subtask_index)
        self.producer: Producer | None = None
        self.in_flight: list[asyncio.Future[Any]] = []
        self.wait_at_checkpoint = settings.guarantee is DeliveryGuarantee.AT_LEAST_ONCE
        self.broken = Broken(f"Kafka sink {context.sink_name!r} subtask {context.subtask_index}")

    async def open(self) -> None:
        s, ctx = self.settings, self.context
        self.producer = Producer(
            s.bootstrap_servers,
            client_id=f"{s.client_id_prefix}-{ctx.job_name}-{ctx.sink_name}-{ctx.subtask_index}",
            options=s.producer_options,
        )
        try:
            await self.producer.start(s.startup_timeout_s)
            if isinstance(s.topic, str):
                await wait_for_topic(
                    self.producer.topics,
                    s.topic,
                    servers=s.bootstrap_servers,
                    timeout_s=s.startup_timeout_s,
                )
        except BaseException:
            await self.close()  # the runtime closes only writers that opened
            raise

    async def write(self, values: list[T], timestamps: list[int | None] | None) -> None:
        self.broken.check()
        assert self.producer is not None
        with self.broken.latch():
            self.in_flight.extend(await self.encoder.send(self.producer, values, timestamps))
            if len(self.in_flight) > 256:
                await self._reap()

    async def _reap(self) -> None:
        """Drop delivered batches; a failed one fails the job."""
        done = [f for f in self.in_flight if f.done()]
        self.in_flight = [f for f in self.in_flight if not f.done()]
        await wait_all(done, "writing to Kafka")

    async def _wait_delivered(self) -> None:
        in_flight, self.in_flight = self.in_flight, []
        assert self.producer is not None
        await wait_all(in_flight, "writing to Kafka", self.producer.operation_timeout_s)

    async def prepare_commit(self, checkpoint_id: int) -> None:
        self.broken.check()
        with self.broken.latch():
            if self.wait_at_checkpoint:
                await self._wait_delivered()
            else:
                await self._reap()

    async def flush(self, end_of_input: bool) -> None:
        self.broken.check()
        with self.broken.latch():
            await self._wait_delivered()

    async def close(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            await close_fully(producer.abandon())
