"""The sink's producer: record batches built directly, sends, flushes and transactions.

It reaches into aiokafka where the public API is too slow or too optimistic: the compiled
batch builder (one C call per record), the transaction manager's producer id and epoch, and
an abandon that fails queued batches instead of waiting for them after a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import aiokafka
import aiokafka.errors as kafka_errors
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from flowactors import ConnectorError
from flowactors_kafka._client.admin import _topics
from flowactors_kafka._client.connect import connect_with_retry, log
from flowactors_kafka._client.errors import _translated, translate_error
from flowactors_kafka._client.options import trust_of
from flowactors_kafka._client.records import Headers

R = TypeVar("R")


class RecordBatch:
    """A record batch under construction for one partition.

    ``append(offset, timestamp, key, value, headers)`` is aiokafka's compiled batch builder
    itself (its Python wrapper costs about a microsecond per record); ``offset`` is
    ``count``, the records already in the batch, and the caller increments ``count`` after
    each append that does not return ``None`` (``None``: the batch is full).
    """

    __slots__ = ("append", "builder", "count")

    def __init__(self, builder: Any) -> None:
        self.builder = builder
        self.count = 0
        inner = getattr(builder, "_builder", None)
        if inner is not None and hasattr(inner, "append"):
            self.append: Callable[[int, int | None, bytes | None, bytes, Headers], object] = (
                inner.append
            )
        else:  # another aiokafka layout: its public method, slower
            self.append = lambda _o, ts, k, v, h: builder.append(
                timestamp=ts, key=k, value=v, headers=h
            )


class Producer:
    """An aiokafka producer: plain, or transactional with one transactional id."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str,
        options: Mapping[str, Any],
        transactional_id: str | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.transactional_id = transactional_id
        self._kwargs = dict(options)
        self._kwargs.setdefault("client_id", client_id)
        if transactional_id is None:
            self._kwargs.setdefault("acks", "all")
        self._producer: Any = None
        self._partitions: dict[str, list[int]] = {}
        #: The longest a flush or a commit may take before the producer counts as stuck
        #: (aiokafka retries some broker errors without end): twice the request timeout.
        self.operation_timeout_s = 2 * int(self._kwargs.get("request_timeout_ms", 40_000)) / 1000

    async def _bounded(self, awaitable: Awaitable[R], action: str) -> R:
        try:
            return await asyncio.wait_for(_translated(awaitable, action), self.operation_timeout_s)
        except TimeoutError as exc:
            raise ConnectorError(
                f"Kafka: {action} did not finish within {self.operation_timeout_s:g} s",
                retriable=True,
            ) from exc

    async def start(self, timeout_s: float) -> None:
        async def start() -> None:
            self._producer = aiokafka.AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                transactional_id=self.transactional_id,
                **self._kwargs,
            )
            await self._producer.start()

        what = "Kafka sink" if self.transactional_id is None else "Kafka transactional producer"
        await connect_with_retry(
            start,
            self.abandon,
            what=what,
            bootstrap_servers=self.bootstrap_servers,
            timeout_s=timeout_s,
            trust=trust_of(self._kwargs),
        )

    @property
    def _p(self) -> Any:
        if self._producer is None:
            raise ConnectorError("Kafka: the producer is not running", retriable=True)
        return self._producer

    @property
    def producer_id(self) -> int:
        return int(self._p._txn_manager.producer_id)

    @property
    def producer_epoch(self) -> int:
        return int(self._p._txn_manager.producer_epoch)

    async def partitions(self, topic: str) -> list[int]:
        """The topic's partitions (from metadata, cached until :meth:`refresh_partitions`)."""
        parts = self._partitions.get(topic)
        if parts is None:
            got = await _translated(self._p.partitions_for(topic), f"reading metadata of {topic}")
            parts = self._partitions[topic] = sorted(got)
        return parts

    def refresh_partitions(self) -> None:
        self._partitions.clear()

    async def topics(self) -> set[str]:
        return await _topics(self._p.client)

    def create_batch(self) -> RecordBatch:
        return RecordBatch(self._p.create_batch())

    async def send_batch(
        self, batch: RecordBatch, topic: str, partition: int
    ) -> asyncio.Future[Any]:
        """Queue a batch; the returned future resolves when the broker has it."""
        builder = batch.builder
        if hasattr(builder, "_relative_offset"):
            builder._relative_offset = batch.count  # appended behind its back
        future: asyncio.Future[Any] = await _translated(
            self._p.send_batch(builder, topic, partition=partition), f"sending to {topic}"
        )
        return future

    @property
    def options(self) -> Mapping[str, Any]:
        """The aiokafka arguments this producer is made with (security settings included)."""
        return self._kwargs

    @property
    def max_request_size(self) -> int:
        """The largest request (one record batch) this producer sends, in bytes."""
        return int(self._kwargs.get("max_request_size", 1_048_576))

    async def send_and_wait(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers
    ) -> None:
        await _translated(
            self._p.send_and_wait(topic, value=value, key=key, headers=headers),
            f"sending to {topic}",
        )

    async def flush(self) -> None:
        await self._bounded(self._p.flush(), "flushing")

    async def begin_transaction(self) -> None:
        await _translated(self._p.begin_transaction(), "beginning a transaction")

    async def commit_transaction(self) -> None:
        await self._bounded(
            self._p.commit_transaction(), f"committing transaction {self.transactional_id}"
        )

    async def abort_transaction(self, timeout_s: float) -> None:
        """Abort the open transaction, giving up quietly after ``timeout_s`` (it is aborted
        anyway when its id is fenced or its timeout runs out)."""
        try:
            await asyncio.wait_for(self._p.abort_transaction(), timeout_s)
        except Exception as exc:
            log.debug("aborting transaction %s: %r", self.transactional_id, exc)

    async def stop(self) -> None:
        """Flush what is queued and close."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await _translated(producer.stop(), "closing the producer")

    async def abandon(self) -> None:
        """Close without waiting for queued records (after a failure); never raises."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        producer._closed = True  # closed here, whatever happens below
        # Fail what is queued first: aiokafka's sender, cancelled, waits for its requests in
        # flight, and a transaction commit in flight waits for every queued batch.
        try:
            producer._message_accumulator.fail_all(
                kafka_errors.KafkaError("the producer was closed after a failure")
            )
        except Exception as exc:
            log.debug("abandoning a Kafka producer: %r", exc)
        sender_task = getattr(producer._sender, "sender_task", None)
        if sender_task is not None and not sender_task.done():
            sender_task.cancel()
            await asyncio.wait({sender_task}, timeout=2.0)
        try:
            await asyncio.wait_for(producer.client.close(), 5.0)
        except Exception as exc:
            log.debug("abandoning a Kafka producer: %r", exc)


def record_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """The size of a record batch holding this one record, uncompressed (what the producer's
    ``max_request_size`` and the topic's ``max.message.bytes`` are compared with)."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


async def wait_all(
    futures: Iterable[asyncio.Future[Any]], action: str, timeout_s: float | None = None
) -> None:
    """Await delivery futures; the first failure becomes a ``ConnectorError``, and so does
    waiting longer than ``timeout_s`` for all of them."""
    pending = list(futures)
    if not pending:
        return
    done, not_done = await asyncio.wait(pending, timeout=timeout_s)
    for future in pending:
        if future in done:
            if future.cancelled():
                raise ConnectorError(f"Kafka: {action}: a send was cancelled", retriable=True)
            exc = future.exception()
            if exc is not None:
                raise translate_error(exc, action) from exc
    if not_done:
        raise ConnectorError(
            f"Kafka: {action}: {len(not_done)} batch(es) not acknowledged within {timeout_s:g} s",
            retriable=True,
        )
