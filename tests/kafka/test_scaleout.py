"""Scale-out on the real broker: workers of one job share its tasks, exactly once.

The job (``tests/kafka/scaleout_worker.py``): a Kafka source with 4 partitions -> map ->
key_by -> running sum -> exactly-once Kafka sink. Input records are ``{"k": key, "v": 1}``
produced with each key in one partition, in order, so the failure-free output is known
exactly: for every key with n records, ``[key, 1] ... [key, n]``, each once.
"""

from __future__ import annotations

import ast
import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import flowactors_kafka
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from flowactors_kafka import KafkaOffsetsInitializer, KafkaSink, KafkaSource

from flowactors import ConnectorError, StreamExecutionEnvironment, WatermarkStrategy
from flowactors.windows import TumblingEventTimeWindows
from tests.kafka._kafka import create_topic, read_topic, unique
from tests.kafka._scaleout import (
    check_output,
    expected_output,
    output_of,
    owned,
    produce_keyed,
    rejoined,
    start_worker,
    stop_workers,
    trickle,
    windows_survive_a_kill,
    worker_processes,
)
from tests.kafka.scaleout_worker import build

pytestmark = pytest.mark.kafka

SCALEOUT = Path(flowactors_kafka.__file__).parent / "_scaleout"


def test_only_the_scale_out_seam_imports_aiokafka() -> None:
    for path in SCALEOUT.glob("*.py"):
        modules: list[str] = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                modules.append(node.module or "")
        uses = any(m == "aiokafka" or m.startswith("aiokafka.") for m in modules)
        assert uses == (path.name == "_client.py"), path.name


async def test_one_worker_runs_both_stages_exactly_once(bootstrap: str) -> None:
    src = await create_topic(bootstrap, unique("so-in"), 4)
    out = await create_topic(bootstrap, unique("so-out"), 4)
    app = unique("so-app")
    await produce_keyed(bootstrap, src, 0, 2000)
    env = StreamExecutionEnvironment(parallelism=4)
    env.enable_checkpointing(100)
    env.enable_scale_out(
        bootstrap_servers=bootstrap,
        application_id=app,
        properties={
            "repartition.purge.interval.ms": 300,
            "min.insync.replicas": 1,
            "topic.segment.ms": 3_600_000,
        },
    )
    build(env, bootstrap, src, out)
    client = await env.execute_async("keyed-sum")
    try:
        records = await read_topic(bootstrap, out, expected=2000, timeout=60, settle=1.0)
        assert sorted(client.assignment()) == [("in-0", p) for p in range(4)] + [
            ("sum", r) for r in range(4)
        ]
        await asyncio.sleep(0.5)  # a commit after the last records
        stats = client.metrics().scale_out  # type: ignore[attr-defined]
        assert stats.rebalances >= 1 and stats.commits >= 8
        assert set(stats.lag) == set(client.assignment()) and not any(stats.lag.values())
        # the internal topic, named after the operator that reads it, has R = 4 partitions
        # and is purged up to what its readers committed
        internal = f"{app}-sum-repartition"
        deadline = time.monotonic() + 10
        while sum((await beginning_offsets(bootstrap, internal)).values()) < 2000:
            assert time.monotonic() < deadline, await beginning_offsets(bootstrap, internal)
            await asyncio.sleep(0.2)
    finally:
        await client.stop()  # type: ignore[attr-defined]
    assert output_of(records) == expected_output(2000)
    assert len(await beginning_offsets(bootstrap, internal)) == 4
    # topic-level configs: the changelog is compacted, the repartition topic never
    # expires by time, min.insync.replicas and topic.* properties as asked
    changelog = await topic_configs(bootstrap, f"{app}-sum-changelog")
    assert changelog["cleanup.policy"] == "compact"
    assert changelog["min.insync.replicas"] == "1"
    assert changelog["segment.ms"] == "3600000"
    repartition = await topic_configs(bootstrap, internal)
    assert repartition["min.insync.replicas"] == "1"
    assert repartition["retention.ms"] == "-1"  # purged by its readers, never by time
    assert repartition["segment.ms"] == "3600000"


async def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    """The configs set on ``topic`` itself (not the broker's defaults)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
        entries = response.resources[0][4]
        return {name: value for name, value, _, source, *_ in entries if source == 1}
    finally:
        await admin.close()


async def beginning_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        got = await consumer.beginning_offsets(tps)
        return {tp.partition: o for tp, o in got.items()}
    finally:
        await consumer.stop()


@worker_processes
async def test_a_worker_killed_mid_run_changes_nothing_in_the_output(
    bootstrap: str, tmp_path: Path
) -> None:
    src = await create_topic(bootstrap, unique("so-in"), 4)
    out = await create_topic(bootstrap, unique("so-out"), 4)
    app = unique("so-app")
    workers = [
        start_worker(bootstrap, app, src, out, tmp_path / f"worker{i}.log") for i in range(3)
    ]
    total, chunk = 0, 500
    killed = False
    try:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:  # a steady trickle of input while workers run
            await produce_keyed(bootstrap, src, total, chunk)
            total += chunk
            if not killed and time.monotonic() > deadline - 7:
                workers[0].send_signal(signal.SIGKILL)  # mid-run: tasks in flight
                killed = True
            await asyncio.sleep(0.2)
        records = await read_topic(bootstrap, out, expected=total, timeout=90, settle=3.0)
        got = output_of(records)
        want = expected_output(total)
        missing = want - got
        extra = got - want
        assert not missing and not extra, (
            f"{len(records)} records for {total} inputs; missing {sorted(missing)[:5]}, "
            f"extra {sorted(extra)[:5]}"
        )
    finally:
        codes, logs = await asyncio.to_thread(stop_workers, workers, tmp_path)
    assert codes == [-signal.SIGKILL, 0, 0], logs
    # it died owning tasks, and the survivors took every task over
    assert "assigned [(" in logs["worker0.log"], logs
    taken = set()
    for name in ("worker1.log", "worker2.log"):
        lines = [line for line in logs[name].splitlines() if line.startswith("assigned [(")]
        taken |= set(ast.literal_eval(lines[-1].removeprefix("assigned ")))
    assert taken == {("in-0", p) for p in range(4)} | {("sum", r) for r in range(4)}, logs


@worker_processes
async def test_workers_joining_leaving_and_dying_change_nothing_in_the_output(
    bootstrap: str, tmp_path: Path
) -> None:
    src = await create_topic(bootstrap, unique("so-in"), 4)
    out = await create_topic(bootstrap, unique("so-out"), 4)
    app = unique("so-app")

    def start(i: int) -> subprocess.Popen[str]:
        return start_worker(bootstrap, app, src, out, tmp_path / f"worker{i}.log")

    workers = [start(0), start(1)]
    try:
        total = await trickle(
            bootstrap,
            src,
            13,
            {
                2.0: lambda: workers.append(start(2)),  # joins later
                5.0: lambda: workers[0].send_signal(signal.SIGKILL),  # dies
                8.0: lambda: workers[1].send_signal(signal.SIGTERM),  # leaves as planned
            },
        )
        check_output(
            await read_topic(bootstrap, out, expected=total, timeout=90, settle=3.0), total
        )
    finally:
        codes, logs = await asyncio.to_thread(stop_workers, workers, tmp_path)
    assert codes == [-signal.SIGKILL, 0, 0], logs
    assert "stopped" in logs["worker1.log"], logs


@worker_processes
async def test_a_zombie_is_fenced_and_rejoins(bootstrap: str, tmp_path: Path) -> None:
    """A worker stopped (SIGSTOP) past the session timeout loses its tasks; continued, its
    commits are fenced, it writes nothing more for them, and it rejoins the group."""
    src = await create_topic(bootstrap, unique("so-in"), 4)
    out = await create_topic(bootstrap, unique("so-out"), 4)
    app = unique("so-app")
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [start_worker(bootstrap, app, src, out, logs[i]) for i in range(2)]
    continued_at: list[int] = []

    def stop() -> None:
        workers[0].send_signal(signal.SIGSTOP)

    def cont() -> None:
        continued_at.append(len(logs[0].read_text().splitlines()))
        workers[0].send_signal(signal.SIGCONT)

    try:
        # Stopped once both own tasks: stopped within the group's first rebalance (a
        # worker that starts slowly joins late), it would own nothing to be fenced for.
        deadline = time.monotonic() + 60
        while not (owned(logs[0]) and owned(logs[1])):
            assert time.monotonic() < deadline, "the two workers never shared the tasks"
            await asyncio.sleep(0.1)
        total = await trickle(bootstrap, src, 16, {1.0: stop, 11.0: cont})  # after the takeover
        check_output(
            await read_topic(bootstrap, out, expected=total, timeout=90, settle=3.0), total
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not rejoined(logs[0], continued_at[0]):
            await asyncio.sleep(0.5)
    finally:
        workers[0].send_signal(signal.SIGCONT)
        codes, texts = await asyncio.to_thread(stop_workers, workers, tmp_path)
    assert codes == [0, 0], texts
    assert rejoined(logs[0], continued_at[0]), texts  # fenced, then owning tasks again


@pytest.mark.parametrize("empty_partition", [False, True])
async def test_event_time_windows_fire_after_the_hop(bootstrap: str, empty_partition: bool) -> None:
    """Watermarks cross the internal topic as markers (minimum over the upstream tasks):
    a tumbling event-time window after key_by gives the single-process results. With an
    empty source partition, its task's idleness reaches the window through the markers."""
    used = 3 if empty_partition else 4
    src = await create_topic(bootstrap, unique("so-in"), 4)
    out = await create_topic(bootstrap, unique("so-out"), 4)
    app = unique("so-app")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(2000):  # 20 records per 100 ms of event time, keys 0..9
            key = i % 10
            await producer.send(
                src, orjson.dumps({"k": key}), partition=key % used, timestamp_ms=1_000_000 + i * 5
            )
        for p in range(used):  # move every partition's event time past the last window
            await producer.send(src, orjson.dumps({"k": -1}), partition=p, timestamp_ms=2_000_000)
        await producer.flush()
    finally:
        await producer.stop()
    source: KafkaSource[Any] = KafkaSource(
        bootstrap_servers=bootstrap, topics=[src], value_deserializer="json"
    )
    sink: KafkaSink[Any] = KafkaSink(
        bootstrap_servers=bootstrap, topic=out, value_serializer="json"
    )
    env = StreamExecutionEnvironment(parallelism=4)
    env.enable_checkpointing(100)
    env.enable_scale_out(bootstrap_servers=bootstrap, application_id=app)
    (
        env.from_source(
            source, WatermarkStrategy.for_monotonous_timestamps().with_idleness(500), "in"
        )
        .filter(lambda r: r["k"] >= 0)
        .map(lambda r: (r["k"], 1))
        .key_by(lambda kv: kv[0])
        .window(TumblingEventTimeWindows.of(1000))
        .reduce(lambda a, b: (a[0], a[1] + b[1]))
        .uid("windows")
        .sink_to(sink)
    )
    client = await env.execute_async("windows")
    try:
        records = await read_topic(bootstrap, out, expected=100, timeout=60, settle=1.0)
    finally:
        await client.stop()  # type: ignore[attr-defined]
    # 10 s of event time: 10 windows of 1 s, 20 records of each key in each
    assert sorted(tuple(orjson.loads(r.value)) for r in records) == sorted(  # type: ignore[misc]
        (k, 20) for k in range(10) for _ in range(10)
    )


@worker_processes
async def test_event_time_windows_across_workers_survive_a_kill(
    bootstrap: str, tmp_path: Path
) -> None:
    """Tumbling event-time windows after key_by on three workers, one SIGKILLed mid-run:
    every (key, second) window is emitted once with its full count."""
    src = await create_topic(bootstrap, unique("so-in"), 4)
    out = await create_topic(bootstrap, unique("so-out"), 4)
    app = unique("so-app")
    workers = [
        start_worker(bootstrap, app, src, out, tmp_path / f"worker{i}.log", "windows")
        for i in range(3)
    ]
    try:
        await windows_survive_a_kill(bootstrap, src, out, workers)
    finally:
        codes, logs = await asyncio.to_thread(stop_workers, workers, tmp_path)
    assert codes == [-signal.SIGKILL, 0, 0], logs


def sum_job(
    bootstrap: str, app: str, src: str, out: str, starting: KafkaOffsetsInitializer
) -> StreamExecutionEnvironment:
    source: KafkaSource[Any] = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(src)
        .set_starting_offsets(starting)
        .set_value_only_deserializer("json")
        .build()
    )
    sink: KafkaSink[Any] = KafkaSink(
        bootstrap_servers=bootstrap, topic=out, value_serializer="json"
    )
    env = StreamExecutionEnvironment(parallelism=2)
    env.enable_checkpointing(100)
    env.enable_scale_out(bootstrap_servers=bootstrap, application_id=app)
    env.from_source(source, name="in").map(lambda r: r["k"]).sink_to(sink)
    return env


async def test_starting_offsets_apply_where_nothing_was_committed(bootstrap: str) -> None:
    src = await create_topic(bootstrap, unique("so-in"), 4)
    out = await create_topic(bootstrap, unique("so-out"), 4)
    app = unique("so-app")
    await produce_keyed(bootstrap, src, 0, 100)  # before the start: not read with latest()
    client = await sum_job(
        bootstrap, app, src, out, KafkaOffsetsInitializer.latest()
    ).execute_async()
    try:
        deadline = time.monotonic() + 30
        while len(client.assignment()) < 4:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the tasks sought to the end
        await produce_keyed(bootstrap, src, 100, 50)
        records = await read_topic(bootstrap, out, expected=50, timeout=30, settle=1.0)
    finally:
        await client.stop()  # type: ignore[attr-defined]
    assert len(records) == 50


async def test_a_committed_offset_deleted_by_retention_fails_loudly(bootstrap: str) -> None:
    src = await create_topic(bootstrap, unique("so-in"), 4)
    out = await create_topic(bootstrap, unique("so-out"), 4)
    app = unique("so-app")
    await produce_keyed(bootstrap, src, 0, 40)  # 10 records in each partition
    env = sum_job(bootstrap, app, src, out, KafkaOffsetsInitializer.earliest())
    client = await env.execute_async()
    try:
        await read_topic(bootstrap, out, expected=40, timeout=30, settle=0.5)
    finally:
        await client.stop()  # type: ignore[attr-defined]  (commits offsets 10)
    # records the job never read are deleted (retention), then it starts again
    await produce_keyed(bootstrap, src, 40, 40)  # offsets 10..19 in each partition
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(src, p): RecordsToDelete(15) for p in range(4)})
    finally:
        await admin.close()
    client = await sum_job(
        bootstrap, app, src, out, KafkaOffsetsInitializer.earliest()
    ).execute_async()
    try:
        with pytest.raises(ConnectorError, match="OffsetOutOfRange"):
            await asyncio.wait_for(client.wait(), 60)
    finally:
        await client.cancel()


@worker_processes
async def test_a_static_member_that_stops_as_planned_hands_over_at_once(
    bootstrap: str, tmp_path: Path
) -> None:
    """Static membership: a restart within the session timeout moves nothing, but a
    planned stop leaves the group explicitly, so its tasks move well within it (6 s)."""
    src = await create_topic(bootstrap, unique("so-in"), 4)
    out = await create_topic(bootstrap, unique("so-out"), 4)
    app = unique("so-app")
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    workers = [
        start_worker(bootstrap, app, src, out, logs[i], instance_id=f"pod-{i}") for i in range(2)
    ]
    every_task = {("in-0", p) for p in range(4)} | {("sum", r) for r in range(4)}
    try:
        await produce_keyed(bootstrap, src, 0, 2000)
        deadline = time.monotonic() + 60
        while not (owned(logs[0]) and owned(logs[1])):
            assert time.monotonic() < deadline, "the two workers never shared the tasks"
            await asyncio.sleep(0.1)
        stopped = time.monotonic()
        workers[1].send_signal(signal.SIGTERM)
        while owned(logs[0]) != every_task:
            assert time.monotonic() - stopped < 4.0, "the tasks waited for the session timeout"
            await asyncio.sleep(0.05)
        await produce_keyed(bootstrap, src, 2000, 2000)
        check_output(await read_topic(bootstrap, out, expected=4000, timeout=60, settle=2.0), 4000)
    finally:
        codes, texts = await asyncio.to_thread(stop_workers, workers, tmp_path)
    assert codes == [0, 0], texts


async def test_reinterpret_as_keyed_skips_the_hop(bootstrap: str) -> None:
    """Input keyed by its producer: the running sum runs in the source stage, with its
    state in a changelog of the source's partition count, and no internal topic."""
    src = await create_topic(bootstrap, unique("so-in"), 4)
    out = await create_topic(bootstrap, unique("so-out"), 4)
    app = unique("so-app")
    await produce_keyed(bootstrap, src, 0, 2000)  # each key in one partition
    source: KafkaSource[Any] = KafkaSource(
        bootstrap_servers=bootstrap, topics=[src], value_deserializer="json"
    )
    sink: KafkaSink[Any] = KafkaSink(
        bootstrap_servers=bootstrap, topic=out, value_serializer="json"
    )
    env = StreamExecutionEnvironment(parallelism=4)
    env.enable_checkpointing(100)
    env.enable_scale_out(bootstrap_servers=bootstrap, application_id=app)
    (
        env.from_source(source, name="in")
        .map(lambda r: (r["k"], r["v"]))
        .reinterpret_as_keyed(lambda kv: kv[0])
        .sum(1)
        .uid("sum")
        .sink_to(sink)
    )
    client = await env.execute_async("reinterpreted")
    try:
        records = await read_topic(bootstrap, out, expected=2000, timeout=60, settle=1.0)
        assert sorted(client.assignment()) == [("in-0", p) for p in range(4)]
    finally:
        await client.stop()  # type: ignore[attr-defined]
    assert output_of(records) == expected_output(2000)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(app)]
    finally:
        await admin.close()
    assert topics == [f"{app}-in-0-changelog"]
    assert len(await beginning_offsets(bootstrap, topics[0])) == 4
