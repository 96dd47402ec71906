"""Helpers for the Kafka tests: the outside world, played with aiokafka directly.

Topics get unique names, so tests share one broker without seeing each other's data.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic

SASL_USER = "flowactors"
SASL_PASSWORD = "flowactors-secret"


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


async def create_topic(bootstrap: str, name: str, partitions: int, **security: Any) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=name, num_partitions=partitions, replication_factor=1)]
        )
    finally:
        await admin.close()
    return name


async def add_partitions(bootstrap: str, topic: str, total: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({topic: NewPartitions(total_count=total)})
    finally:
        await admin.close()


async def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    partition: int | None = None,
    partitions: int | None = None,
    **security: Any,
) -> int:
    """Write ``(key, value)`` pairs: to ``partition`` if given, else round-robin over
    ``partitions`` partitions (batches built directly: fast). Returns how many."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_batch_size=512 * 1024, **security
    )
    await producer.start()
    count = 0
    try:
        if partitions is None:
            partitions = len(await producer.partitions_for(topic))
        builders: dict[int, Any] = {}
        futures = []
        for i, (key, value) in enumerate(records):
            p = partition if partition is not None else i % partitions
            b = builders.get(p)
            if b is None:
                b = builders[p] = producer.create_batch()
            if b.append(key=key, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(b, topic, partition=p))
                b = builders[p] = producer.create_batch()
                b.append(key=key, value=value, timestamp=None)
            count += 1
        for p, b in builders.items():
            if b.record_count():
                futures.append(await producer.send_batch(b, topic, partition=p))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return count


async def produce_json(
    bootstrap: str, topic: str, values: Sequence[Any], key: Any = None, **kw: Any
) -> int:
    dumps = orjson.dumps
    pairs = ((None if key is None else str(key(v)).encode(), dumps(v)) for v in values)
    return await produce(bootstrap, topic, pairs, **kw)


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    expected: int | None = None,
    timeout: float = 30.0,
    settle: float = 0.5,
    isolation_level: str = "read_committed",
    **security: Any,
) -> list[Any]:
    """Every record of ``topic`` (aiokafka ConsumerRecords, in partition order), reading
    until ``expected`` came (then ``settle`` seconds more, to catch extra ones) or until the
    end offsets are reached and ``timeout`` passed."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level=isolation_level,
        **security,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 10
        parts = consumer.partitions_for_topic(topic)
        while not parts and time.monotonic() < deadline:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
        assert parts, f"topic {topic} not found"
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                out.extend(recs)
            if expected is not None and len(out) >= expected:
                settle_until = settle_until or time.monotonic() + settle
                if time.monotonic() >= settle_until:
                    break
            if expected is None and not batch:
                ends = await consumer.end_offsets(tps)
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= ends[tp] for pos, tp in zip(positions, tps)):
                    break
        out.sort(key=lambda r: (r.partition, r.offset))
        return out
    finally:
        await consumer.stop()


async def wait_for_count(
    bootstrap: str, topic: str, expected: int, timeout: float = 60.0, **security: Any
) -> list[Any]:
    """Poll the topic (read_committed) until it holds at least ``expected`` records."""
    deadline = time.monotonic() + timeout
    records: list[Any] = []
    while time.monotonic() < deadline:
        records = await read_topic(
            bootstrap, topic, expected=expected, timeout=min(5.0, timeout), settle=0.0, **security
        )
        if len(records) >= expected:
            return records
        await asyncio.sleep(0.2)
    return records


def values_of(records: Iterable[Any]) -> list[Any]:
    return [orjson.loads(r.value) for r in records]


async def output_offsets(bootstrap: str, topic: str, partitions: int = 4) -> int:
    """The sum of ``topic``'s end offsets: grows with everything written, committed or not."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return sum(ends.values())
    finally:
        await consumer.stop()
