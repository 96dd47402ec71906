"""``KafkaSink``: records to a topic with no guarantee, at least once, or exactly once.

- ``"none"``: records are sent as they come; nothing waits for the broker.
- ``"at-least-once"``: before a checkpoint barrier passes the sink (``prepare_commit``),
  every record sent so far is acknowledged by the broker (``acks=all``). After a failure the
  records since the last checkpoint are written again: duplicates, never loss.
- ``"exactly-once"``: Kafka transactions, one per checkpoint per subtask (see
  :mod:`flowactors_kafka._transactions`). Readers must use ``isolation.level=read_committed``.

Records are encoded into aiokafka record batches per partition directly (``create_batch`` /
``send_batch``), one coroutine per batch rather than per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from flowactors import ConnectorError
from flowactors.spi import Sink, SinkWriter, SinkWriterContext
from flowactors_kafka._client import (
    Producer,
    RecordBatch,
    client_options,
    close_fully,
    default_partition,
    wait_all,
    wait_for_topic,
)
from flowactors_kafka._serialization import Serializer, serializer

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


class KafkaSinkBuilder(Generic[T]):
    """Configures a :class:`KafkaSink` (``KafkaSink.builder()``).

    >>> sink = (KafkaSink.builder().set_bootstrap_servers("localhost:9092")
    ...         .set_record_serializer(topic="out", value_serializer="json")
    ...         .set_delivery_guarantee("at-least-once").build())
    >>> sink.settings.guarantee
    <DeliveryGuarantee.AT_LEAST_ONCE: 'at-least-once'>
    """

    def __init__(self) -> None:
        self._bootstrap: str | None = None
        self._topic: str | Callable[[Any], str] | None = None
        self._value_serializer: Serializer | None = None
        self._key_serializer: Callable[[Any], bytes | None] | None = None
        self._partitioner: Partitioner | str | None = None
        self._guarantee = DeliveryGuarantee.NONE
        self._prefix: str | None = None
        self._properties: dict[str, Any] = {}
        self._client_id_prefix = "flowactors"
        self._startup_timeout_s = 30.0
        self._pool_size = 8
        self._fail_on_lost = True

    def set_bootstrap_servers(self, servers: str | Sequence[str]) -> KafkaSinkBuilder[T]:
        self._bootstrap = servers if isinstance(servers, str) else ",".join(servers)
        return self

    def set_record_serializer(
        self,
        *,
        topic: str | Callable[[T], str],
        value_serializer: str | Callable[[T], bytes],
        key_serializer: str | Callable[[T], bytes | None] | None = None,
        partitioner: Partitioner | str | None = None,
    ) -> KafkaSinkBuilder[T]:
        """How a record becomes a Kafka record (Flink's ``KafkaRecordSerializationSchema``).

        - ``topic``: a name, or ``fn(record) -> name``;
        - ``value_serializer``: ``fn(record) -> bytes`` or ``"json"``/``"str"``/``"bytes"``;
        - ``key_serializer``: ``fn(record) -> bytes | None`` (the key is taken from the
          record, e.g. ``lambda r: str(r["id"]).encode()``) or one of those names;
        - ``partitioner``: ``None`` (records with a key go where Kafka's Java producer puts
          them: murmur2 of the key; records without one go to one partition per batch,
          round-robin), ``"fixed"`` (subtask *i* writes to partition *i* mod partitions,
          Flink's ``FlinkFixedPartitioner``), or ``fn(record, key, value, topic, partitions)``.

        The record's event timestamp, when it has one, becomes the Kafka timestamp.
        """
        self._topic = topic
        self._value_serializer = serializer(value_serializer)
        self._key_serializer = (
            None if key_serializer is None else serializer(key_serializer)  # type: ignore[arg-type]
        )
        if isinstance(partitioner, str) and partitioner != "fixed":
            raise ValueError(
                f"partitioner must be None, 'fixed' or a callable, got {partitioner!r}"
            )
        self._partitioner = partitioner
        return self

    def set_delivery_guarantee(self, guarantee: str | DeliveryGuarantee) -> KafkaSinkBuilder[T]:
        """``"none"`` (default), ``"at-least-once"`` or ``"exactly-once"``."""
        self._guarantee = DeliveryGuarantee(guarantee)
        return self

    def set_transactional_id_prefix(self, prefix: str) -> KafkaSinkBuilder[T]:
        """Prefix of the transactional ids (``<prefix>-<subtask>-<n>``); unique per job on
        a cluster (two jobs with one prefix would fence each other)."""
        if not prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"invalid transactional id prefix {prefix!r}")
        self._prefix = prefix
        return self

    def set_property(self, key: str, value: Any) -> KafkaSinkBuilder[T]:
        """An aiokafka producer setting (``ssl_context``, ``sasl_mechanism``, ``linger_ms``,
        ``compression_type``...) or Kafka's dotted name (``transaction.timeout.ms``,
        ``batch.size``, ``security.protocol``)."""
        self._properties[key] = value
        return self

    def set_properties(self, properties: Mapping[str, Any]) -> KafkaSinkBuilder[T]:
        for k, v in properties.items():
            self.set_property(k, v)
        return self

    def set_client_id_prefix(self, prefix: str) -> KafkaSinkBuilder[T]:
        self._client_id_prefix = prefix
        return self

    def set_startup_timeout(self, timeout: timedelta | float) -> KafkaSinkBuilder[T]:
        """How long to keep trying to reach the broker at start (default 30 s)."""
        self._startup_timeout_s = (
            timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        )
        return self

    def set_transaction_pool_size(self, size: int) -> KafkaSinkBuilder[T]:
        """Transactional ids per subtask (default 8; about 3 are in use at a time: the open
        transaction, the one awaiting its checkpoint, one just committed)."""
        if size < 3:
            raise ValueError("the transaction pool needs at least 3 ids")
        self._pool_size = size
        return self

    def set_fail_on_lost_transaction(self, fail: bool) -> KafkaSinkBuilder[T]:
        """Whether a transaction recorded in the restored checkpoint that Kafka has aborted
        meanwhile (its ``transaction.timeout.ms`` ran out) fails the job (default) or is
        logged as an error, as Flink does, and the job goes on without its records."""
        self._fail_on_lost = fail
        return self

    def build(self) -> KafkaSink[T]:
        if not self._bootstrap:
            raise ValueError("KafkaSink needs set_bootstrap_servers(...)")
        if self._topic is None or self._value_serializer is None:
            raise ValueError(
                "KafkaSink needs set_record_serializer(topic=..., value_serializer=...)"
            )
        options = client_options(self._properties, "producer")
        if self._guarantee is DeliveryGuarantee.EXACTLY_ONCE:
            if self._prefix is None:
                raise ValueError("an exactly-once KafkaSink needs set_transactional_id_prefix(...)")
            # Flink's default is 1 h; Kafka's brokers refuse more than transaction.max.timeout.ms
            # (15 min by default), so that is the default here.
            options.setdefault("transaction_timeout_ms", 900_000)
        else:
            options.pop("transaction_timeout_ms", None)
        options.setdefault("max_batch_size", 256 * 1024)
        options.setdefault("linger_ms", 0)
        settings = _SinkSettings(
            bootstrap_servers=self._bootstrap,
            topic=self._topic,
            value_serializer=self._value_serializer,
            key_serializer=self._key_serializer,
            partitioner=self._partitioner,
            guarantee=self._guarantee,
            transactional_id_prefix=self._prefix,
            producer_options=options,
            client_id_prefix=self._client_id_prefix,
            startup_timeout_s=self._startup_timeout_s,
            transaction_pool_size=self._pool_size,
            fail_on_lost_transaction=self._fail_on_lost,
        )
        return KafkaSink(settings)


class KafkaSink(Sink[T]):
    """Writes records to Kafka; build one with :meth:`builder`. See the module docstring."""

    def __init__(self, settings: _SinkSettings) -> None:
        self.settings = settings

    @staticmethod
    def builder() -> KafkaSinkBuilder[Any]:
        return KafkaSinkBuilder()

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[T]:
        if self.settings.guarantee is DeliveryGuarantee.EXACTLY_ONCE:
            from flowactors_kafka._transactions import ExactlyOnceWriter

            return ExactlyOnceWriter(self.settings, context)
        return KafkaWriter(self.settings, context)


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
                    raise ValueError(
                        f"a record for {topic} is larger than the batch size "
                        f"({s.producer_options.get('max_batch_size')} bytes): raise batch.size"
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
