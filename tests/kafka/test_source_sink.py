"""KafkaSource and KafkaSink against the real broker: reading, writing, bounded mode, discovery,
exactly-once, savepoints at another parallelism."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import aclosing
from typing import Any, Literal

import pytest
from flowactors_kafka import KafkaOffsetsInitializer, KafkaSink, KafkaSource, TopicPartition

from flowactors import StreamExecutionEnvironment, WatermarkStrategy
from tests.kafka._kafka import (
    add_partitions,
    create_topic,
    produce_json,
    read_topic,
    unique,
    values_of,
    wait_for_count,
)

pytestmark = pytest.mark.kafka


def source(bootstrap: str, topic: str, **kw: Any) -> KafkaSource[Any]:
    starting = kw.pop("starting", "earliest")
    bounded = "latest" if kw.pop("bounded", True) else None
    return KafkaSource(
        bootstrap_servers=bootstrap,
        topics=[topic],
        value_deserializer="json",
        starting_offsets=starting,
        bounded=bounded,
        **kw,
    )


def sink(
    bootstrap: str,
    topic: str,
    guarantee: Literal["none", "at-least-once", "exactly-once"] = "at-least-once",
    prefix: str | None = None,
) -> KafkaSink[Any]:
    return KafkaSink(
        bootstrap_servers=bootstrap,
        topic=topic,
        value_serializer="json",
        key_serializer=lambda r: str(r["k"]).encode(),
        delivery_guarantee=guarantee,
        transactional_id_prefix=prefix,
    )


def records(n: int, keys: int = 10, start: int = 0) -> list[dict[str, int]]:
    return [{"i": i, "k": i % keys} for i in range(start, start + n)]


async def test_bounded_source_to_at_least_once_sink(bootstrap: str, parallelism: int) -> None:
    src, out = unique("in"), unique("out")
    await create_topic(bootstrap, src, 3)
    await create_topic(bootstrap, out, 2)
    data = records(3000)
    await produce_json(bootstrap, src, data)

    env = StreamExecutionEnvironment(parallelism=parallelism)
    stream = env.from_source(source(bootstrap, src), name="kafka")
    stream.map(lambda r: {**r, "doubled": r["i"] * 2}).sink_to(sink(bootstrap, out))
    await env.execute("at-least-once")

    got = values_of(await read_topic(bootstrap, out, expected=len(data)))
    assert sorted(r["i"] for r in got) == list(range(3000))
    assert all(r["doubled"] == 2 * r["i"] for r in got)
    # Keyed records land where Kafka's Java producer would put them: one partition per key.
    by_key: dict[int, set[int]] = {}
    for rec in await read_topic(bootstrap, out, expected=len(data)):
        by_key.setdefault(int(rec.key), set()).add(rec.partition)
    assert all(len(parts) == 1 for parts in by_key.values())


async def test_source_timestamps_and_key_value(bootstrap: str) -> None:
    topic = unique("kv")
    await create_topic(bootstrap, topic, 2)
    await produce_json(bootstrap, topic, records(100), key=lambda r: r["k"])
    src = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics([topic])
        .set_key_value_deserializers("str", "json")
        .set_bounded(KafkaOffsetsInitializer.latest())
        .build()
    )
    env = StreamExecutionEnvironment(parallelism=2)
    strategy = WatermarkStrategy.for_monotonous_timestamps()
    stream = env.from_source(src, strategy, name="kv")

    from flowactors import ProcessFunction

    class WithTimestamp(ProcessFunction):
        def process_element(self, value: Any, ctx: Any, out: Any) -> None:
            out.collect((value, ctx.timestamp()))

    got = await stream.process(WithTimestamp()).execute_and_collect()
    assert len(got) == 100
    assert all(k == str(v["k"]) for (k, v), _ in got)
    assert all(isinstance(ts, int) and ts > 1_600_000_000_000 for _, ts in got)


async def test_bounded_reads_exactly_what_was_there_at_start(bootstrap: str) -> None:
    topic = unique("bounded")
    await create_topic(bootstrap, topic, 4)
    await produce_json(bootstrap, topic, records(2000))
    env = StreamExecutionEnvironment(parallelism=2)
    env.get_config().set_batch_size(50)

    async def slow(r: dict[str, int]) -> dict[str, int]:
        await asyncio.sleep(0)
        return r

    stream = env.from_source(source(bootstrap, topic), name="kafka").map(slow)
    seen: list[dict[str, int]] = []
    produced_more = False
    async for r in stream.execute_and_stream("bounded"):
        seen.append(r)
        if not produced_more:
            # The readers fixed their stop offsets before the first record came out: these
            # later records are not part of the input.
            produced_more = True
            await produce_json(bootstrap, topic, records(500, start=10_000))
    assert produced_more
    assert sorted(r["i"] for r in seen) == list(range(2000))


async def test_starting_offsets(bootstrap: str) -> None:
    topic = unique("start")
    await create_topic(bootstrap, topic, 2)
    await produce_json(bootstrap, topic, records(10), partition=0)
    await produce_json(bootstrap, topic, records(10, start=100), partition=1)
    env = StreamExecutionEnvironment(parallelism=1)
    offsets = KafkaOffsetsInitializer.offsets({TopicPartition(topic, 0): 7})
    got = await env.from_source(source(bootstrap, topic, starting=offsets)).execute_and_collect()
    assert sorted(r["i"] for r in got) == [7, 8, 9, *range(100, 110)]

    env = StreamExecutionEnvironment(parallelism=2)
    got = await env.from_source(
        source(bootstrap, topic, starting=KafkaOffsetsInitializer.latest())
    ).execute_and_collect()
    assert got == []

    # committed(): nothing committed yet for this group, so the fallback applies.
    env = StreamExecutionEnvironment(parallelism=2)
    committed = KafkaOffsetsInitializer.committed(KafkaOffsetsInitializer.latest())
    got = await env.from_source(
        source(bootstrap, topic, starting=committed, group_id=unique("g"))
    ).execute_and_collect()
    assert got == []


async def test_partitions_added_while_running_are_read(bootstrap: str) -> None:
    topic = unique("grow")
    await create_topic(bootstrap, topic, 1)  # at parallelism 2, one reader starts with nothing
    await produce_json(bootstrap, topic, records(20))
    env = StreamExecutionEnvironment(parallelism=2)
    src = source(bootstrap, topic, bounded=False, partition_discovery_interval=200)
    stream = env.from_source(src, name="kafka")
    seen: list[dict[str, int]] = []
    grown = False
    async with aclosing(stream.execute_and_stream("discovery")) as results:
        async for r in results:
            seen.append(r)
            if len(seen) == 20 and not grown:
                grown = True
                await add_partitions(bootstrap, topic, 4)
                for p in (1, 2, 3):
                    await produce_json(bootstrap, topic, records(10, start=1000 * p), partition=p)
            if len(seen) == 50:
                break
    assert Counter(r["i"] // 1000 for r in seen) == {0: 20, 1: 10, 2: 10, 3: 10}


async def test_exactly_once_sink_commits_per_checkpoint(bootstrap: str, tmp_path: Any) -> None:
    src, out = unique("eo-in"), unique("eo-out")
    await create_topic(bootstrap, src, 4)
    await create_topic(bootstrap, out, 3)
    data = records(5000, keys=50)
    await produce_json(bootstrap, src, data)
    env = StreamExecutionEnvironment(parallelism=2)
    env.enable_checkpointing(50, storage=tmp_path / "checkpoints")
    env.get_config().set_batch_size(100)

    async def slow(r: dict[str, int]) -> dict[str, int]:
        await asyncio.sleep(0.0002)
        return r

    (
        env.from_source(source(bootstrap, src), name="kafka")
        .map(slow)
        .sink_to(sink(bootstrap, out, "exactly-once", prefix=unique("eo")))
    )
    client = await env.execute_async("exactly-once")
    await client.wait()
    stats = client.checkpoint_stats()
    assert stats is not None  # checkpoints completed while the job ran: several transactions
    got = await read_topic(bootstrap, out, expected=len(data))
    assert sorted(r["i"] for r in values_of(got)) == list(range(5000))
    # Nothing was aborted, and every transaction's commit marker took an offset: more
    # offsets than records means the output was committed in several transactions.
    raw = await read_topic(bootstrap, out, isolation_level="read_uncommitted", expected=len(data))
    assert len(raw) == len(data)
    last: dict[int, int] = {}
    for r in raw:
        last[r.partition] = max(last.get(r.partition, -1), r.offset)
    markers = sum(o + 1 for o in last.values()) - len(data)
    assert markers >= len(last), markers


async def test_savepoint_restores_offsets_at_other_parallelism(
    bootstrap: str, tmp_path: Any
) -> None:
    """p=3 -> savepoint -> p=2 -> savepoint -> p=4: every record exactly once in the output."""
    src, out = unique("sp-in"), unique("sp-out")
    await create_topic(bootstrap, src, 5)
    await create_topic(bootstrap, out, 2)
    prefix = unique("sp")
    total = 0
    savepoint: str | None = None
    for round_, parallelism in enumerate((3, 2, 4)):
        batch = records(1000, start=round_ * 10_000)
        await produce_json(bootstrap, src, batch)
        total += len(batch)
        env = StreamExecutionEnvironment(parallelism=parallelism)
        env.enable_checkpointing(100, storage=tmp_path / f"cp{round_}")
        (
            env.from_source(source(bootstrap, src, bounded=False), name="kafka")
            .uid("kafka-source")
            .map(lambda r: r)
            .uid("identity")
            .sink_to(sink(bootstrap, out, "exactly-once", prefix=prefix))
            .uid("kafka-sink")
        )
        client = await env.execute_async(f"savepoints-{round_}", savepoint_path=savepoint)
        got = await wait_for_count(bootstrap, out, total, timeout=60)
        assert len(got) >= total
        savepoint = await client.stop_with_savepoint(tmp_path / f"savepoint-{round_}")
    got = values_of(await read_topic(bootstrap, out, expected=total, settle=1.0))
    counts = Counter(r["i"] for r in got)
    assert len(got) == total, f"{len(got) - len(counts)} duplicates"
    assert set(counts) == {i for r in range(3) for i in range(r * 10_000, r * 10_000 + 1000)}


async def test_topic_pattern_finds_topics_created_later(bootstrap: str) -> None:
    stem = unique("pattern")
    await create_topic(bootstrap, f"{stem}-a", 2)
    await create_topic(bootstrap, f"{stem}-other-x", 1)  # matches no whole-name pattern below
    await produce_json(bootstrap, f"{stem}-a", records(10))
    await produce_json(bootstrap, f"{stem}-other-x", records(10, start=500))
    src = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topic_pattern(rf"{stem}-[a-z]")
        .set_value_only_deserializer("json")
        .set_partition_discovery_interval(200)
        .build()
    )
    env = StreamExecutionEnvironment(parallelism=2)
    seen: list[dict[str, int]] = []
    stream = env.from_source(src, name="kafka")
    async with aclosing(stream.execute_and_stream("pattern")) as results:
        async for r in results:
            seen.append(r)
            if len(seen) == 10:
                await create_topic(bootstrap, f"{stem}-b", 3)
                await produce_json(bootstrap, f"{stem}-b", records(10, start=100))
            if len(seen) == 20:
                break
    assert sorted(r["i"] for r in seen) == [*range(10), *range(100, 110)]


async def test_offsets_committed_to_the_group_on_checkpoints(bootstrap: str, tmp_path: Any) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as TP

    topic, out, group = unique("group"), unique("group-out"), unique("g")
    await create_topic(bootstrap, topic, 3)
    await create_topic(bootstrap, out, 1)
    await produce_json(bootstrap, topic, records(300))
    env = StreamExecutionEnvironment(parallelism=2)
    env.enable_checkpointing(100, storage=tmp_path / "cp")
    src = source(bootstrap, topic, bounded=False, group_id=group)
    env.from_source(src, name="kafka").sink_to(sink(bootstrap, out))
    client = await env.execute_async("group")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        tps = [TP(topic, p) for p in range(3)]
        ends = await consumer.end_offsets(tps)
        committed: dict[Any, int | None] = {}
        for _ in range(100):  # completed checkpoints commit the offsets they hold
            committed = {tp: await consumer.committed(tp) for tp in tps}
            if committed == ends:
                break
            await asyncio.sleep(0.1)
        assert committed == ends
    finally:
        await consumer.stop()
        await client.cancel()

    # A new job starting from the group's committed offsets reads only what came after them.
    await produce_json(bootstrap, topic, records(30, start=1000))
    env = StreamExecutionEnvironment(parallelism=2)
    got = await env.from_source(
        source(
            bootstrap,
            topic,
            group_id=group,
            starting=KafkaOffsetsInitializer.committed(KafkaOffsetsInitializer.earliest()),
        )
    ).execute_and_collect()
    assert sorted(r["i"] for r in got) == list(range(1000, 1030))


async def test_starting_from_a_timestamp(bootstrap: str) -> None:
    import time as _time

    topic = unique("ts")
    await create_topic(bootstrap, topic, 2)
    await produce_json(bootstrap, topic, records(20))
    await asyncio.sleep(0.05)
    middle = int(_time.time() * 1000)
    await asyncio.sleep(0.05)
    await produce_json(bootstrap, topic, records(20, start=100))
    env = StreamExecutionEnvironment(parallelism=2)
    got = await env.from_source(
        source(bootstrap, topic, starting=KafkaOffsetsInitializer.timestamp(middle))
    ).execute_and_collect()
    assert sorted(r["i"] for r in got) == list(range(100, 120))


async def test_restore_from_an_old_savepoint_whose_transaction_ids_were_reused(
    bootstrap: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The savepoint's pending transaction was committed, and its id reused since: the broker
    refuses to commit it again with the old epoch, and the log shows it had committed."""
    import logging

    from flowactors import RestartStrategies

    src, out = unique("old-sp-in"), unique("old-sp-out")
    await create_topic(bootstrap, src, 2)
    await create_topic(bootstrap, out, 2)
    await produce_json(bootstrap, src, records(20_000))
    prefix = unique("old-sp")

    async def slow(r: dict[str, int]) -> dict[str, int]:
        await asyncio.sleep(0.0005)
        return r

    def job(storage: str) -> StreamExecutionEnvironment:
        env = StreamExecutionEnvironment(parallelism=1)
        env.get_config().set_batch_size(16)  # small batches: barriers pass the slow map fast
        env.enable_checkpointing(50, storage=tmp_path / storage)
        env.set_restart_strategy(RestartStrategies.no_restart())
        (
            env.from_source(source(bootstrap, src, bounded=False), name="kafka")
            .uid("kafka-source")
            .map(slow)
            .uid("slow")
            .sink_to(sink(bootstrap, out, "exactly-once", prefix=prefix))
            .uid("kafka-sink")
        )
        return env

    client = await job("a").execute_async("old-savepoint")
    await wait_for_count(bootstrap, out, 200)
    savepoint = await client.trigger_savepoint(tmp_path / "savepoint")
    await asyncio.sleep(3.0)  # many more checkpoints: every transactional id is used again
    await client.cancel()
    before = len(await read_topic(bootstrap, out))

    caplog.set_level(logging.INFO, logger="flowactors_kafka")
    client = await job("b").execute_async("old-savepoint", savepoint_path=savepoint)
    # Restored from the savepoint, the job writes again what came after it.
    await wait_for_count(bootstrap, out, before + 100, timeout=60)
    await client.cancel()
    resolved = [r for r in caplog.records if "committed before its id was used" in r.message]
    assert resolved, "the savepoint should have held a pre-committed transaction"
    got = values_of(await read_topic(bootstrap, out))
    assert {r["i"] for r in got} <= set(range(20_000)) and len(got) >= before + 100


class Collected:
    """A reader output that keeps what it is given."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    async def collect_batch(self, values: Any, timestamps: Any, split_id: Any = None) -> None:
        self.values.extend(values)

    def emit_side_output(self, tag: Any, value: Any) -> None:
        raise AssertionError("no side output expected")


async def test_a_reader_holds_at_most_max_records_per_poll_undecoded(bootstrap: str) -> None:
    from flowactors_kafka._reader import KafkaSourceReader

    from flowactors.spi import InputStatus, SourceReaderContext

    topic = await create_topic(bootstrap, unique("slices"), 2)
    # Big fetches (8 MiB per partition) bring in everything at once; the reader takes slices.
    await produce_json(bootstrap, topic, [{"i": i} for i in range(20_000)])
    src = source(
        bootstrap,
        topic,
        max_records_per_poll=300,
        properties={"max_partition_fetch_bytes": 8 << 20},
    )
    reader = src.create_reader(SourceReaderContext("job", "kafka", 0, 1, 100))
    assert isinstance(reader, KafkaSourceReader)
    out = Collected()
    await reader.start()
    try:
        largest = 0
        for _ in range(10_000):
            await reader.is_available()
            largest = max(largest, sum(len(r) - i for r, i in reader._buffer.values()))
            if await reader.poll_next(out) is InputStatus.END_OF_INPUT:
                break
        assert sorted(v["i"] for v in out.values) == list(range(20_000))
        assert 0 < largest <= 300
    finally:
        await reader.close()
