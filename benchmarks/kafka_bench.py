"""Kafka throughput, memory and latency: the Kafka connector against hand-written aiokafka code.

Run from the repository root (starts a broker with scripts/kafka.sh unless
``FLOWACTORS_KAFKA_BOOTSTRAP`` points at one)::

    python -m benchmarks.kafka_bench                      # 1,000,000 records, 3 rounds
    python -m benchmarks.kafka_bench --records 200000 --rounds 1

Input: N JSON records ``{"k": i % 10000, "v": i}`` in a 4-partition topic, written once.

Raw baseline (aiokafka only, no flowactors):
  - ``raw consume``: a consumer assigned all partitions reads the N records with ``getmany``
    and JSON-decodes each one;
  - ``raw produce``: a producer writes N JSON-encoded records, keyed, into record batches
    it fills itself (``create_batch``/``send_batch``, the fastest aiokafka offers; its
    per-record ``send()`` is about 10x slower and is reported for reference);
  - the baseline throughput is N / (consume time + produce time).

flowactors jobs (the source with its default fetch sizes): ``KafkaSource (bounded) -> key_by(k)
-> reduce(running sum) -> KafkaSink``,
at-least-once, and exactly-once with checkpoints every second. Their throughput is compared
with the baseline (targets: at least 0.6x and 0.5x). Rounds alternate baseline and jobs, the
median of each is reported; every timed run checks its output record count, and the first
round also checks every key's final sum. Results are printed and written to JSON
(``benchmarks/kafka_results.json`` by default).

Memory and latency (``--memory``, on by default): reading the N records, each in a process of
its own, with the clients' defaults (no fetch settings): ``raw consume`` (an aiokafka consumer,
``getmany(max_records=10_000)`` and ``orjson.loads``) against ``source`` (a bounded
``KafkaSource`` decoding JSON, its records discarded). Reported: the process's peak RSS and
the time from the start of reading to the first record.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from flowactors_kafka import DeliveryGuarantee, KafkaSink, KafkaSource

from benchmarks._broker import kafka_broker
from flowactors import StreamExecutionEnvironment

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4
KEYS = 10_000
FETCH = {"max_partition_fetch_bytes": 4 << 20, "fetch_max_bytes": 64 << 20}
TARGETS = {"at-least-once": 0.6, "exactly-once": 0.5}


def unique(name: str) -> str:
    return f"bench-{name}-{uuid.uuid4().hex[:8]}"


async def create_topic(bootstrap: str, name: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    finally:
        await admin.close()
    return name


def record(i: int) -> dict[str, int]:
    return {"k": i % KEYS, "v": i}


async def fill_input(bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=1 << 20)
    await producer.start()
    try:
        await write_batched(producer, topic, (record(i) for i in range(n)))
    finally:
        await producer.stop()


async def write_batched(producer: Any, topic: str, values: Any) -> int:
    """Keyed JSON records into batches built here (partition = key mod partitions)."""
    dumps = orjson.dumps
    batches: dict[int, Any] = {}
    futures = []
    n = 0
    for v in values:
        part = v["k"] % PARTITIONS
        key = str(v["k"]).encode()
        payload = dumps(v)
        batch = batches.get(part)
        if batch is None:
            batch = batches[part] = producer.create_batch()
        if batch.append(key=key, value=payload, timestamp=None) is None:
            futures.append(await producer.send_batch(batch, topic, partition=part))
            batch = batches[part] = producer.create_batch()
            batch.append(key=key, value=payload, timestamp=None)
        n += 1
    for part, batch in batches.items():
        if batch.record_count():
            futures.append(await producer.send_batch(batch, topic, partition=part))
    await asyncio.gather(*futures)
    return n


async def raw_consume(bootstrap: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **FETCH)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loads = orjson.loads
        count = 0
        checksum = 0
        started = time.perf_counter()
        while count < n:
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            for records in batch.values():
                values = [loads(r.value) for r in records]
                count += len(values)
                checksum += len(values)
        took = time.perf_counter() - started
        assert count == n == checksum, (count, n)
        return took
    finally:
        await consumer.stop()


async def raw_produce(bootstrap: str, topic: str, n: int, per_record: bool = False) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=256 << 10)
    await producer.start()
    try:
        started = time.perf_counter()
        if per_record:
            dumps = orjson.dumps
            futures = []
            for i in range(n):
                v = record(i)
                futures.append(
                    await producer.send(
                        topic, dumps(v), key=str(v["k"]).encode(), partition=v["k"] % PARTITIONS
                    )
                )
            await asyncio.gather(*futures)
        else:
            await write_batched(producer, topic, (record(i) for i in range(n)))
        return time.perf_counter() - started
    finally:
        await producer.stop()


def job(
    bootstrap: str, inp: str, out: str, guarantee: str, parallelism: int, storage: Path
) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    if guarantee == "exactly-once":
        env.enable_checkpointing(1000, storage=storage, resume="none")
    source = KafkaSource(
        bootstrap_servers=bootstrap,
        topics=[inp],
        value_deserializer="json",
        bounded="latest",
    )
    sink = KafkaSink(
        bootstrap_servers=bootstrap,
        topic=out,
        value_serializer="json",
        key_serializer=lambda r: str(r["k"]).encode(),
        delivery_guarantee=DeliveryGuarantee(guarantee),
        transactional_id_prefix=unique("txn") if guarantee == "exactly-once" else None,
    )
    (
        env.from_source(source, name="input")
        .key_by(lambda r: r["k"])
        .reduce(lambda a, b: {"k": a["k"], "v": a["v"] + b["v"]})
        .sink_to(sink, name="output")
    )
    return env


async def output_count(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        return sum(ends.values())
    finally:
        await consumer.stop()


async def check_sums(bootstrap: str, topic: str, n: int) -> None:
    """Every key's last running sum equals the sum of its values (read_committed)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        **FETCH,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        last: dict[int, int] = {}
        count = 0
        idle = 0
        while count < n and idle < 50:
            batch = await consumer.getmany(timeout_ms=100, max_records=50_000)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                for r in records:
                    v = orjson.loads(r.value)
                    last[v["k"]] = v["v"]
                count += len(records)
        assert count == n, f"{count} records in the output, expected {n}"
        expected: dict[int, int] = {}
        for i in range(n):
            expected[i % KEYS] = expected.get(i % KEYS, 0) + i
        assert last == expected, "final sums per key differ"
    finally:
        await consumer.stop()


async def timed_job(
    bootstrap: str, inp: str, n: int, guarantee: str, parallelism: int, verify: bool
) -> float:
    out = await create_topic(bootstrap, unique("out"))
    with tempfile.TemporaryDirectory() as storage:
        env = job(bootstrap, inp, out, guarantee, parallelism, Path(storage))
        gc.collect()
        started = time.perf_counter()
        await env.execute(f"kafka-bench-{guarantee}")
        took = time.perf_counter() - started
    if guarantee == "exactly-once" or verify:
        produced = await output_count(bootstrap, out)
        # exactly-once: end offsets also count one commit marker per transaction and partition
        assert produced >= n, (produced, n)
    if verify:
        await check_sums(bootstrap, out, n)
    return took


async def read_alone(mode: str, bootstrap: str, topic: str, n: int) -> dict[str, float]:
    """Read ``n`` records as ``mode`` in this process: seconds, first record, peak RSS."""
    first: list[float] = []
    started = time.perf_counter()
    if mode == "raw consume":
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            loads = orjson.loads
            count = 0
            while count < n:
                batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
                for records in batch.values():
                    values = [loads(r.value) for r in records]
                    if values and not first:
                        first.append(time.perf_counter())
                    count += len(values)
        finally:
            await consumer.stop()
    else:
        env = StreamExecutionEnvironment(parallelism=1)
        source = KafkaSource(
            bootstrap_servers=bootstrap, topics=[topic], value_deserializer="json", bounded="latest"
        )
        seen = [0]

        def discard(value: Any) -> bool:
            if not first:
                first.append(time.perf_counter())
            seen[0] += 1
            return False

        env.from_source(source, name="input").filter(discard).print()
        await env.execute("kafka-bench-source")
        assert seen[0] == n, (seen[0], n)
    took = time.perf_counter() - started
    return {
        "seconds": took,
        "first_record_s": first[0] - started,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident set size (``VmHWM``: unlike ``ru_maxrss``, not carried
    over from the parent across ``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_alone(mode: str, bootstrap: str, topic: str, n: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.kafka_bench", "--alone", mode, "--bootstrap",
         bootstrap, "--topic", topic, "--records", str(n)],
        capture_output=True, text=True, cwd=REPO, check=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def run(args: argparse.Namespace, bootstrap: str) -> dict[str, Any]:
    n = args.records
    inp = await create_topic(bootstrap, unique("in"))
    print(f"writing {n:,} input records ...", flush=True)
    await fill_input(bootstrap, inp, n)
    runs: dict[str, list[float]] = {
        "raw consume": [],
        "raw produce": [],
        "at-least-once": [],
        "exactly-once": [],
    }
    if args.parallelism2:
        runs["at-least-once p2"] = []
    for round_ in range(args.rounds):
        verify = round_ == 0
        gc.collect()
        runs["raw consume"].append(await raw_consume(bootstrap, inp, n))
        gc.collect()
        runs["raw produce"].append(
            await raw_produce(bootstrap, await create_topic(bootstrap, unique("raw")), n)
        )
        runs["at-least-once"].append(await timed_job(bootstrap, inp, n, "at-least-once", 1, verify))
        runs["exactly-once"].append(await timed_job(bootstrap, inp, n, "exactly-once", 1, verify))
        if args.parallelism2:
            runs["at-least-once p2"].append(
                await timed_job(bootstrap, inp, n, "at-least-once", 2, False)
            )
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in runs.items()))
    send_time = None
    if args.send_reference:
        send_time = await raw_produce(
            bootstrap, await create_topic(bootstrap, unique("send")), n, per_record=True
        )
    memory: dict[str, list[dict[str, float]]] = {}
    if args.memory:
        for _ in range(args.rounds):
            for mode in ("raw consume", "source"):
                memory.setdefault(mode, []).append(measure_alone(mode, bootstrap, inp, n))
    median = {k: statistics.median(v) for k, v in runs.items() if v}
    baseline = n / (median["raw consume"] + median["raw produce"])
    results: dict[str, Any] = {
        "records": n,
        "partitions": PARTITIONS,
        "keys": KEYS,
        "rounds": args.rounds,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "baseline_records_per_s": baseline,
        "runs_s": runs,
        "median_s": median,
        "throughput": {k: n / v for k, v in median.items()},
        "ratios": {},
    }
    if send_time is not None:
        results["raw produce per-record send() s"] = send_time
    if memory:
        results["alone"] = {
            mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            for mode, rs in memory.items()
        }
    print()
    print(f"{'':24} {'median s':>9} {'records/s':>11} {'x baseline':>11} {'target':>7}")
    for name, seconds in median.items():
        rate = n / seconds
        if name.startswith("raw"):
            print(f"{name:24} {seconds:9.2f} {rate:11,.0f}")
            continue
        ratio = rate / baseline
        results["ratios"][name] = ratio
        target = TARGETS.get(name)
        mark = "" if target is None else ("ok" if ratio >= target else "MISSED") + f" {target}"
        print(f"{name:24} {seconds:9.2f} {rate:11,.0f} {ratio:11.2f} {mark:>7}")
    print(f"{'baseline (consume+produce)':24} {'':9} {baseline:11,.0f}")
    if send_time is not None:
        print(f"(raw produce with per-record send(): {send_time:.2f} s, {n / send_time:,.0f}/s)")
    if memory:
        print()
        print(
            f"{'reading alone (defaults)':24} {'median s':>9} {'first rec s':>11} {'peak RSS MB':>11}"
        )
        for mode, m in results["alone"].items():
            print(
                f"{mode:24} {m['seconds']:9.2f} {m['first_record_s']:11.3f} {m['peak_rss_mb']:11.0f}"
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "kafka_results.json"))
    parser.add_argument("--parallelism2", action="store_true", help="also at parallelism 2")
    parser.add_argument(
        "--send-reference", action="store_true", help="also time aiokafka's per-record send()"
    )
    parser.add_argument(
        "--no-memory", dest="memory", action="store_false", help="skip the reading-alone runs"
    )
    parser.add_argument("--alone", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.alone:
        reading = read_alone(args.alone, args.bootstrap, args.topic, args.records)
        try:
            import uvloop
        except ImportError:
            result = asyncio.run(reading)
        else:
            result = uvloop.run(reading)
        print(json.dumps(result))
        return
    with kafka_broker() as bootstrap:
        try:
            import uvloop
        except ImportError:
            results = asyncio.run(run(args, bootstrap))
        else:
            results = uvloop.run(run(args, bootstrap))
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.json}")


if __name__ == "__main__":
    main()
