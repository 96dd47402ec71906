"""Commit CPU of a scaled-out job's state changes with many keys: tracked vs compared.

    python -m benchmarks.changelog_job [--keys 100000] [--rounds 10]

One worker (this process) runs the keyed running sum scaled out (4-partition input ->
map -> key_by -> sum -> Kafka sink, commit interval 200 ms). First every key gets one
record; once their sums are out, each round writes 1% of the keys (a random sample)
and waits one commit interval. Measured over the rounds: the CPU (process time) the
sum's tasks spent in ``state_changes()`` — finding their changes at the commits — per
commit that had changes, and per round. *compared*: the tasks' backends do not track
(every entry is pickled and compared at each commit: what scale-out did before);
*tracked*: what a task gets now. Starts a broker unless ``FLOWACTORS_KAFKA_BOOTSTRAP``
names one; the broker shares the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from flowactors_kafka import KafkaSink, KafkaSource

from benchmarks._broker import kafka_broker
from flowactors import StreamExecutionEnvironment
from flowactors.runtime import scaleout

PARTITIONS = 4


class ChangeClock:
    """Wraps ``RunningTask.state_changes``: CPU spent and commits with changes."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.commits = 0
        self.records = 0
        self.original = scaleout.RunningTask.state_changes
        clock = self

        def timed(task: Any) -> list[tuple[bytes, bytes | None]]:
            began = time.process_time()
            changes = clock.original(task)
            clock.cpu_s += time.process_time() - began
            if changes:
                clock.commits += 1
                clock.records += len(changes)
            return changes

        scaleout.RunningTask.state_changes = timed  # type: ignore[method-assign]

    def reset(self) -> None:
        self.cpu_s, self.commits, self.records = 0.0, 0, 0

    def close(self) -> None:
        scaleout.RunningTask.state_changes = self.original  # type: ignore[method-assign]


async def create_topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=n, num_partitions=PARTITIONS, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, keys: list[int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, orjson.dumps({"k": k, "v": 1}), partition=k % PARTITIONS)
            for k in keys
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def wait_for_output(consumer: AIOKafkaConsumer, expected: int, timeout: float) -> None:
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {seen} of {expected} output records after {timeout} s")
        batch = await consumer.getmany(timeout_ms=500)
        seen += sum(len(records) for records in batch.values())


async def measure(bootstrap: str, keys: int, rounds: int, tracked: bool) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    src, out = f"cl-in-{run}", f"cl-out-{run}"
    await create_topics(bootstrap, src, out)
    if not tracked:  # a plain factory: the tasks' backends do not track their changes
        original_factory = scaleout.ChangeTrackingStateBackend
        scaleout.ChangeTrackingStateBackend = lambda inner=None: inner  # type: ignore[assignment,misc]
    env = StreamExecutionEnvironment(parallelism=PARTITIONS)
    env.enable_checkpointing(200)
    env.enable_scale_out(bootstrap_servers=bootstrap, application_id=f"cl-app-{run}")
    (
        env.from_source(
            KafkaSource(bootstrap_servers=bootstrap, topics=[src], value_deserializer="json"),
            name="in",
        )
        .map(lambda r: (r["k"], r["v"]))
        .key_by(lambda kv: kv[0])
        .sum(1)
        .uid("sum")
        .sink_to(KafkaSink(bootstrap_servers=bootstrap, topic=out, value_serializer="json"))
    )
    clock = ChangeClock()
    consumer = AIOKafkaConsumer(out, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    client = await env.execute_async("changelog-job")
    try:
        await produce(bootstrap, src, list(range(keys)))
        await wait_for_output(consumer, keys, timeout=600)
        await asyncio.sleep(1.0)  # the commits of the load are done
        clock.reset()
        rng = random.Random(11)
        began_cpu = time.process_time()
        for _ in range(rounds):
            sample = rng.sample(range(keys), keys // 100)
            await produce(bootstrap, src, sample)
            await wait_for_output(consumer, len(sample), timeout=120)
            await asyncio.sleep(0.25)  # one commit interval: the changes are committed
        total_cpu = time.process_time() - began_cpu
    finally:
        await client.stop()  # type: ignore[attr-defined]
        await consumer.stop()
        clock.close()
        if not tracked:
            scaleout.ChangeTrackingStateBackend = original_factory  # type: ignore[misc]
    return {
        "mode": "tracked" if tracked else "compared",
        "keys": keys,
        "changes_cpu_ms_per_commit": 1000 * clock.cpu_s / max(clock.commits, 1),
        "changes_cpu_ms_per_round": 1000 * clock.cpu_s / rounds,
        "process_cpu_ms_per_round": 1000 * total_cpu / rounds,
        "commits_with_changes": clock.commits,
        "records_per_round": clock.records / rounds,
    }


async def main_async(args: argparse.Namespace) -> None:
    with kafka_broker() as bootstrap:
        for keys in args.keys:
            for tracked in (False, True):
                result = await measure(bootstrap, keys, args.rounds, tracked)
                print(
                    f"{result['mode']:9} {keys:>9,} keys: state_changes "
                    f"{result['changes_cpu_ms_per_commit']:8.1f} ms CPU per commit "
                    f"({result['commits_with_changes']} commits), "
                    f"{result['changes_cpu_ms_per_round']:8.1f} ms per round; whole process "
                    f"{result['process_cpu_ms_per_round']:8.1f} ms CPU per round; "
                    f"{result['records_per_round']:,.0f} changelog records per round",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[100_000])
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
