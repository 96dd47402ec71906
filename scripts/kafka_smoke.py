#!/usr/bin/env python3
"""Smoke test of a Kafka broker with aiokafka (plain, admin, transactions, read_committed, SASL).

    python scripts/kafka_smoke.py 127.0.0.1:19092
    python scripts/kafka_smoke.py "$(cat .kafka/bootstrap)" --sasl "$(cat .kafka/sasl_bootstrap)"

Needs only aiokafka (`pip install aiokafka`). Creates topics with unique names, so it can run
against any broker more than once. Exits non-zero on the first failed check.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

SASL_USER = "flowactors"
SASL_PASSWORD = "flowactors-secret"


def _ok(msg: str) -> None:
    print(f"ok   {msg}", flush=True)


async def _consume_all(
    bootstrap: str, topic: str, expected: int, timeout: float = 20.0, **kwargs: Any
) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """Read topic from the beginning (manual assignment of every partition) until `expected`
    records came or the timeout ran out, then read a little longer to catch extra records."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **kwargs)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + 10
        while not parts and time.monotonic() < deadline:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
        assert parts, f"no partitions for {topic}"
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[tuple[int, int, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for recs in batch.values():
                out.extend((r.partition, r.offset, r.key, r.value) for r in recs)
            if len(out) >= expected:
                settle_until = settle_until or time.monotonic() + 1.0
                if time.monotonic() >= settle_until:
                    break
        return out
    finally:
        await consumer.stop()


async def check_plain(bootstrap: str, suffix: str, **sec: Any) -> None:
    label = f"[{sec.get('sasl_mechanism', 'PLAINTEXT')}]"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **sec)
    await admin.start()
    topic = f"smoke-plain-{suffix}"
    multi = f"smoke-four-{suffix}"
    try:
        await admin.create_topics(
            [
                NewTopic(name=topic, num_partitions=1, replication_factor=1),
                NewTopic(name=multi, num_partitions=4, replication_factor=1),
            ]
        )
        _ok(f"{label} admin created {topic} (1 partition) and {multi} (4 partitions)")
        meta = await admin.describe_topics([multi])
        nparts = len(meta[0]["partitions"])
        assert nparts == 4, meta
        _ok(f"{label} admin describe_topics: {multi} has {nparts} partitions")
        names = await admin.list_topics()
        assert topic in names and multi in names, names
        _ok(f"{label} admin list_topics sees both")

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **sec)
        await producer.start()
        try:
            for i in range(5):
                await producer.send_and_wait(topic, f"v{i}".encode(), key=f"k{i}".encode())
            for p in range(4):
                await producer.send_and_wait(multi, f"p{p}".encode(), partition=p)
        finally:
            await producer.stop()
        _ok(f"{label} produced 5 records to {topic} and 1 to each partition of {multi}")

        got = await _consume_all(bootstrap, topic, 5, **sec)
        assert [v for _, _, _, v in got] == [f"v{i}".encode() for i in range(5)], got
        assert [k for _, _, k, _ in got] == [f"k{i}".encode() for i in range(5)], got
        _ok(f"{label} consumed them back in order with keys")
        got = await _consume_all(bootstrap, multi, 4, **sec)
        assert sorted((p, v) for p, _, _, v in got) == [(p, f"p{p}".encode()) for p in range(4)], (
            got
        )
        _ok(f"{label} consumed one record from each of the 4 partitions")

        # Consumer group: subscribe + commit (exercises FindCoordinator/JoinGroup/OffsetCommit).
        group = f"smoke-group-{suffix}"
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **sec,
        )
        await consumer.start()
        try:
            seen = 0
            deadline = time.monotonic() + 30
            while seen < 5 and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                seen += sum(len(v) for v in batch.values())
            assert seen == 5, seen
            await consumer.commit()
            committed = await consumer.committed(TopicPartition(topic, 0))
            assert committed == 5, committed
        finally:
            await consumer.stop()
        _ok(f"{label} consumer group {group}: subscribed, read 5, committed offset 5")
    finally:
        await admin.close()


async def check_transactions(bootstrap: str, suffix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    topic = f"smoke-txn-{suffix}"
    try:
        await admin.create_topics([NewTopic(name=topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"smoke-txn-{suffix}")
    t0 = time.monotonic()
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(3):
                await producer.send(topic, f"committed-{i}".encode(), partition=i % 2)
        took = time.monotonic() - t0
        _ok(f"[txn] committed a transaction of 3 records ({took:.2f} s incl. init_transactions)")

        await producer.begin_transaction()
        for i in range(2):
            await producer.send(topic, f"aborted-{i}".encode(), partition=i % 2)
        await producer.flush()
        await producer.abort_transaction()
        _ok("[txn] aborted a transaction of 2 (flushed) records")

        async with producer.transaction():
            await producer.send(topic, b"committed-3", partition=0)
        _ok("[txn] committed another transaction after the abort")
    finally:
        await producer.stop()

    committed = await _consume_all(bootstrap, topic, 4, isolation_level="read_committed")
    values = sorted(v for _, _, _, v in committed if v is not None)
    assert values == [f"committed-{i}".encode() for i in range(4)], values
    _ok(f"[txn] read_committed consumer sees exactly the 4 committed records: {values}")

    uncommitted = await _consume_all(bootstrap, topic, 6, isolation_level="read_uncommitted")
    values = sorted(v for _, _, _, v in uncommitted if v is not None)
    assert len(values) == 6 and b"aborted-0" in values, values
    _ok("[txn] read_uncommitted consumer also sees the 2 aborted records (6 in all)")

    # A second producer with the same transactional id fences the first (exactly-once sinks
    # rely on this after a restart).
    p1 = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"smoke-fence-{suffix}")
    await p1.start()
    await p1.begin_transaction()
    await p1.send_and_wait(topic, b"zombie", partition=0)
    p2 = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"smoke-fence-{suffix}")
    await p2.start()
    try:
        fenced = False
        try:
            await p1.commit_transaction()
        except Exception as exc:  # ProducerFenced (or an invalid producer epoch error)
            fenced = True
            name = type(exc).__name__
            _ok(f"[txn] a 2nd producer with the same transactional id fences the 1st ({name})")
        assert fenced, "the zombie producer could commit"
    finally:
        await p2.stop()
        try:
            await p1.stop()
        except Exception:
            pass
    committed = await _consume_all(bootstrap, topic, 4, isolation_level="read_committed")
    assert b"zombie" not in [v for *_, v in committed], committed
    _ok("[txn] the fenced producer's record is not visible to read_committed")


async def check_sasl(sasl_bootstrap: str, suffix: str) -> None:
    for mechanism in ("SCRAM-SHA-256", "PLAIN"):
        sec = {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": mechanism,
            "sasl_plain_username": SASL_USER,
            "sasl_plain_password": SASL_PASSWORD,
        }
        await check_plain(sasl_bootstrap, f"{suffix}-{mechanism.lower()}", **sec)
    # Wrong password is refused.
    producer = AIOKafkaProducer(
        bootstrap_servers=sasl_bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username=SASL_USER,
        sasl_plain_password="wrong",
        request_timeout_ms=5000,
    )
    refused = False
    try:
        await asyncio.wait_for(producer.start(), 20)
    except Exception as exc:
        refused = True
        _ok(f"[SASL] a wrong password is refused ({type(exc).__name__})")
    finally:
        await producer.stop()
    assert refused, "wrong SASL password accepted"


async def main_async(args: argparse.Namespace) -> None:
    suffix = uuid.uuid4().hex[:8]
    t0 = time.monotonic()
    await check_plain(args.bootstrap, suffix)
    if not args.no_transactions:
        await check_transactions(args.bootstrap, suffix)
    if args.sasl:
        await check_sasl(args.sasl, suffix)
    print(f"all checks passed in {time.monotonic() - t0:.1f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("bootstrap", help="host:port of the PLAINTEXT listener")
    parser.add_argument(
        "--sasl", metavar="HOST:PORT", help="also check the SASL_PLAINTEXT listener"
    )
    parser.add_argument("--no-transactions", action="store_true")
    args = parser.parse_args()
    try:
        asyncio.run(main_async(args))
    except AssertionError as exc:
        print(f"FAIL {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
