"""Scale-out costs: CPU per record per worker, throughput, the hop, reinterpret_as_keyed.

Run from the repository root (starts a broker with scripts/kafka.sh unless
``FLOWACTORS_KAFKA_BOOTSTRAP`` points at one)::

    python -m benchmarks.scaleout                    # 200,000 records, 1/2/3 workers
    python -m benchmarks.scaleout --records 50000 --workers 1 2

The job is the keyed sum of the scale-out tests: ``{"k": i % 1000, "v": 1}`` records in a
4-partition topic (each key in one partition) -> map -> key_by -> running sum ->
exactly-once Kafka sink, commit interval 200 ms, 4 internal partitions. Every worker is
its own process; each reports the CPU time (user + system) it spent from the moment its
job was started until its planned stop. Per configuration:

- ``cpu_us_per_record``: CPU of all workers together / input records (includes
  the workers' idle polling and the final commits; excludes interpreter start);
- ``throughput``: input records / wall-clock time from the moment the input starts to
  be written (after the group has settled: every worker owns tasks) until its last
  output record is committed, read by a ``read_committed`` consumer in this process
  (the writer and the reader share the machine with the workers and the broker);
- the single-process job (``KafkaSource`` bounded -> the same operators -> exactly-once
  sink with checkpoints every 200 ms) and ``reinterpret_as_keyed`` on one worker
  (no hop: the sum runs in the source stage) for comparison;
- failover: two workers (session timeout 6 s), one SIGKILLed: seconds until the survivor
  runs every task again (fenced, restored); then a third joins and stops as planned:
  seconds until the survivor runs every task again.

On a 2-core machine the broker, this reader and the workers share the cores: the
figures are what one such machine does, not what a worker does on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from flowactors_kafka import KafkaOffsetsInitializer, KafkaSink, KafkaSource

from benchmarks._broker import kafka_broker
from flowactors import StreamExecutionEnvironment

REPO = Path(__file__).resolve().parents[1]
KEYS = 1000
PARTITIONS = 4


def unique(name: str) -> str:
    return f"bench-{name}-{uuid.uuid4().hex[:8]}"


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build(
    env: StreamExecutionEnvironment,
    bootstrap: str,
    in_topic: str,
    out_topic: str,
    *,
    bounded: bool = False,
    reinterpret: bool = False,
) -> None:
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(in_topic)
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_value_only_deserializer("json")
    )
    if bounded:
        builder = builder.set_bounded(KafkaOffsetsInitializer.latest())
    sink: KafkaSink[Any] = (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_record_serializer(topic=out_topic, value_serializer="json")
        .set_delivery_guarantee("exactly-once")
        .set_transactional_id_prefix(unique("bench"))
        .build()
    )
    pairs = env.from_source(builder.build(), name="in").map(lambda r: (r["k"], r["v"]))
    keyed = (
        pairs.reinterpret_as_keyed(lambda kv: kv[0])
        if reinterpret
        else pairs.key_by(lambda kv: kv[0])
    )
    keyed.sum(1).uid("sum").sink_to(sink, name="out")


async def worker(
    bootstrap: str, app: str, in_topic: str, out_topic: str, reinterpret: bool
) -> None:
    env = StreamExecutionEnvironment(parallelism=PARTITIONS)
    env.enable_checkpointing(200)
    env.enable_scale_out(
        bootstrap_servers=bootstrap,
        application_id=app,
        properties={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
    )
    build(env, bootstrap, in_topic, out_topic, reinterpret=reinterpret)
    start = cpu_s()
    client = await env.execute_async("bench")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    last = -1
    while not stop.is_set():
        owned = len(client.assignment())
        if owned != last:
            print(json.dumps({"tasks": owned}), flush=True)
            last = owned
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except TimeoutError:
            pass
    await client.stop()  # type: ignore[attr-defined]
    print(json.dumps({"cpu_s": cpu_s() - start}), flush=True)


async def create_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


async def fill(bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        futures = []
        builders: dict[int, Any] = {}
        for i in range(n):
            key = i % KEYS
            p = key % PARTITIONS
            b = builders.get(p)
            if b is None:
                b = builders[p] = producer.create_batch()
            value = orjson.dumps({"k": key, "v": 1})
            if b.append(key=str(key).encode(), value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(b, topic, partition=p))
                b = builders[p] = producer.create_batch()
                b.append(key=str(key).encode(), value=value, timestamp=None)
        for p, b in builders.items():
            futures.append(await producer.send_batch(b, topic, partition=p))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def count_output(bootstrap: str, topic: str, n: int, timeout: float) -> tuple[float, float]:
    """Read ``topic`` (read_committed) until ``n`` records: (time of the first, of the last)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        first = 0.0
        deadline = time.monotonic() + timeout
        while seen < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{seen} of {n} output records after {timeout} s")
            got = await consumer.getmany(timeout_ms=200)
            batch = sum(len(v) for v in got.values())
            if batch and not seen:
                first = time.monotonic()
            seen += batch
        return first, time.monotonic()
    finally:
        await consumer.stop()


class Workers:
    """Worker processes of one job, and what each reported last (tasks owned, CPU)."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.owned: list[int] = []
        self.reports: list[dict[str, Any]] = []
        self._followers: list[asyncio.Future[None]] = []

    async def start(
        self, n: int, bootstrap: str, app: str, src: str, out: str, *extra: str
    ) -> None:
        for _ in range(n):
            i = len(self.procs)
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.scaleout",
                "--worker",
                bootstrap,
                app,
                src,
                out,
                *extra,
                cwd=REPO,
                stdout=asyncio.subprocess.PIPE,
            )
            self.procs.append(proc)
            self.owned.append(0)
            self.reports.append({})
            self._followers.append(asyncio.ensure_future(self._follow(i, proc)))

    async def _follow(self, i: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            msg = json.loads(line)
            if "tasks" in msg:
                self.owned[i] = msg["tasks"]
            self.reports[i] = msg

    async def settle(self, tasks_total: int, live: list[int], timeout: float = 120) -> float:
        """Wait until the ``live`` workers own all tasks, each some, for a second; return
        when that state was first reached."""
        deadline = time.monotonic() + timeout
        since: float | None = None
        while True:
            owned = [self.owned[i] for i in live]
            if sum(owned) == tasks_total and all(owned[: min(len(live), tasks_total)]):
                since = since or time.monotonic()
                if time.monotonic() - since > 1.0:
                    return since
            else:
                since = None
            if time.monotonic() > deadline:
                raise TimeoutError(f"the group did not settle: {self.owned}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for p in self.procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            await asyncio.wait_for(p.wait(), 120)
        await asyncio.gather(*self._followers)


async def scaled(bootstrap: str, n: int, workers: int, reinterpret: bool = False) -> dict[str, Any]:
    """Start the workers, wait until the group has settled (every worker owns tasks), then
    write the input and time until its last output is committed."""
    src = await create_topic(bootstrap, unique("in"))
    out = await create_topic(bootstrap, unique("out"))
    app = unique("app")
    group = Workers()
    await group.start(
        workers, bootstrap, app, src, out, *(["--reinterpret"] if reinterpret else [])
    )
    try:
        await group.settle(PARTITIONS if reinterpret else 2 * PARTITIONS, list(range(workers)))
        start = time.monotonic()
        await fill(bootstrap, src, n)
        _, last = await count_output(bootstrap, out, n, timeout=600)
    finally:
        await group.stop()
    cpus = [r["cpu_s"] for r in group.reports]
    return {
        "workers": workers,
        "reinterpret_as_keyed": reinterpret,
        "records": n,
        "cpu_s_per_worker": [round(c, 2) for c in cpus],
        "cpu_us_per_record": round(sum(cpus) / n * 1e6, 1),
        "throughput": round(n / (last - start)),
    }


async def failover(bootstrap: str) -> dict[str, Any]:
    """Two workers; one is SIGKILLed, later a third joins and leaves as planned: how long
    until the survivor owns every task again, and how long a planned leave takes."""
    src = await create_topic(bootstrap, unique("in"))
    out = await create_topic(bootstrap, unique("out"))
    app = unique("app")
    group = Workers()
    await group.start(2, bootstrap, app, src, out)
    try:
        await group.settle(2 * PARTITIONS, [0, 1])
        await fill(bootstrap, src, 20_000)
        await count_output(bootstrap, out, 20_000, timeout=120)
        killed = time.monotonic()
        group.procs[0].send_signal(signal.SIGKILL)
        taken = await group.settle(2 * PARTITIONS, [1])
        await group.start(1, bootstrap, app, src, out)
        await group.settle(2 * PARTITIONS, [1, 2])
        left = time.monotonic()
        group.procs[2].send_signal(signal.SIGTERM)
        back = await group.settle(2 * PARTITIONS, [1])
    finally:
        await group.stop()
    return {
        "session_timeout_ms": 6000,
        "kill_to_all_tasks_running_s": round(taken - killed, 2),
        "planned_leave_to_all_tasks_running_s": round(back - left, 2),
    }


async def single_process(bootstrap: str, n: int) -> dict[str, Any]:
    src = await create_topic(bootstrap, unique("in"))
    out = await create_topic(bootstrap, unique("out"))
    began = time.monotonic()
    await fill(bootstrap, src, n)
    write_rate = n / (time.monotonic() - began)
    env = StreamExecutionEnvironment(parallelism=PARTITIONS)
    with tempfile.TemporaryDirectory() as storage:
        env.enable_checkpointing(200, storage)
        build(env, bootstrap, src, out, bounded=True)
        start_cpu, start = cpu_s(), time.monotonic()
        await env.execute("bench")
        cpu, wall = cpu_s() - start_cpu, time.monotonic() - start
    return {
        "workers": "single process",
        "records": n,
        "cpu_us_per_record": round(cpu / n * 1e6, 1),
        "throughput": round(n / wall),  # input written beforehand: reading only
        # the input writer alone: the ceiling of the scaled-out runs' throughput figure
        "input_write_rate": round(write_rate),
    }


async def run(args: argparse.Namespace, bootstrap: str) -> list[dict[str, Any]]:
    results = [await single_process(bootstrap, args.records)]
    print(results[-1], flush=True)
    for w in args.workers:
        results.append(await scaled(bootstrap, args.records, w))
        print(results[-1], flush=True)
    results.append(await scaled(bootstrap, args.records, 1, reinterpret=True))
    print(results[-1], flush=True)
    results.append(await failover(bootstrap))
    print(results[-1], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "scaleout_results.json"))
    parser.add_argument("--worker", nargs=4, metavar=("BOOTSTRAP", "APP", "IN", "OUT"))
    parser.add_argument("--reinterpret", action="store_true")
    args = parser.parse_args()
    if args.worker:
        bootstrap, app, src, out = args.worker
        asyncio.run(worker(bootstrap, app, src, out, args.reinterpret))
        return
    with kafka_broker() as bootstrap:
        results = asyncio.run(run(args, bootstrap))
    Path(args.output).write_text(
        json.dumps({"cores": os.cpu_count(), "results": results}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
