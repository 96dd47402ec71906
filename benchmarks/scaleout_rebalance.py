"""How long a rebalance takes when a second worker joins one that holds keyed state.

    python -m benchmarks.scaleout_rebalance [--keys 200000] [--runs 3]

The keyed-sum job of ``benchmarks.scaleout`` (4-partition source -> key_by -> running
sum -> exactly-once sink) runs on one worker in this process over ``--keys`` distinct
keys (one state entry each, spread over 4 changelog partitions); then a second worker
starts. Printed per run, from the workers' ``ScaleOutStatistics``: the last rebalance
of each (its revocation until every task it was given runs) and the time it spent
restoring changelogs in that rebalance (summed over tasks restoring concurrently), and
the wall-clock time from starting the second worker until both run every task between
them. Runs against ``FLOWACTORS_KAFKA_BOOTSTRAP`` or a broker it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from benchmarks._broker import kafka_broker
from benchmarks.scaleout import PARTITIONS, build, count_output, create_topic, unique
from flowactors import StreamExecutionEnvironment

TASKS = 2 * PARTITIONS  # the source stage and the sum stage


async def fill_distinct(bootstrap: str, topic: str, keys: int) -> None:
    """``{"k": k, "v": 1}`` for every k below ``keys``, key k in partition k % PARTITIONS."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        futures = []
        batches: dict[int, Any] = {}
        for k in range(keys):
            p = k % PARTITIONS
            value, key = orjson.dumps({"k": k, "v": 1}), str(k).encode()
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(batch, topic, partition=p))
                batch = batches[p] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        for p, batch in batches.items():
            futures.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def start_worker(bootstrap: str, app: str, in_topic: str, out_topic: str) -> Any:
    env = StreamExecutionEnvironment(parallelism=PARTITIONS)
    env.enable_checkpointing(200)
    env.enable_scale_out(
        bootstrap_servers=bootstrap,
        application_id=app,
        properties={"session.timeout.ms": 6000, "heartbeat.interval.ms": 100},
    )
    build(env, bootstrap, in_topic, out_topic)
    return await env.execute_async("rebalance")


async def until(condition: Any, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the workers did not settle")
        await asyncio.sleep(0.02)


async def one_join(bootstrap: str, keys: int) -> dict[str, float]:
    src = await create_topic(bootstrap, unique("rb-in"))
    out = await create_topic(bootstrap, unique("rb-out"))
    app = unique("rb-app")
    await fill_distinct(bootstrap, src, keys)
    first = await start_worker(bootstrap, app, src, out)
    second = None
    try:
        await count_output(bootstrap, out, keys, timeout=600)
        await until(lambda: len(first.assignment()) == TASKS)
        await asyncio.sleep(1.0)  # the last state changes are committed
        before = first.metrics().scale_out
        began = time.monotonic()
        second = await start_worker(bootstrap, app, src, out)

        def shared() -> bool:
            owned = [*first.assignment(), *second.assignment()]
            return bool(first.assignment() and second.assignment()) and len(set(owned)) == TASKS

        await until(shared)
        joined = time.monotonic() - began
        await asyncio.sleep(0.5)
        a, b = first.metrics().scale_out, second.metrics().scale_out
        return {
            "first_rebalance_s": a.last_rebalance_seconds,
            "first_restore_s": a.restore_seconds - before.restore_seconds,
            "second_rebalance_s": b.last_rebalance_seconds,
            "second_restore_s": b.restore_seconds,
            "join_to_shared_s": joined,
        }
    finally:
        for client in (first, second):
            if client is not None:
                await client.stop()


async def run(bootstrap: str, keys: int, runs: int) -> None:
    for _ in range(runs):
        r = await one_join(bootstrap, keys)
        print(
            f"{keys} keys: first worker rebalance {r['first_rebalance_s']:.2f} s "
            f"(restoring {r['first_restore_s']:.2f} s), second {r['second_rebalance_s']:.2f} s "
            f"(restoring {r['second_restore_s']:.2f} s), join to shared "
            f"{r['join_to_shared_s']:.2f} s",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with kafka_broker() as bootstrap:
        asyncio.run(run(bootstrap, args.keys, args.runs))


if __name__ == "__main__":
    main()
