"""One worker process of the scale-out state tests.

    python -m tests.kafka.scaleout_state_worker BOOTSTRAP APP IN_TOPIC OUT_TOPIC JOB [DIR]

``sum``: reads ``{"k": key, "v": n}`` JSON records, sums ``v`` per key across workers
and writes ``[key, running_sum]`` exactly once; ``rocksdb-sum``: the same with the sums
in RocksDB state (working directories under ``DIR``). Prints ``assigned <tasks>`` whenever its tasks
change; SIGTERM stops it as planned (commit, leave the group, exit 0).

``rocksdb-windows``: reads ``{"k": key, "t": ms}`` and writes ``[key, second, count]``
per key and tumbling event-time second, window contents and timers in RocksDB.

``watermarks``: reads ``{"k": key, "i": n}`` records whose Kafka timestamps are out of
order by less than 100 ms, and writes ``[key, n, watermark]`` (keyed by ``key``): the
watermark the keyed operator after the hop knew when the record reached it.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from flowactors_kafka import KafkaSink, KafkaSource

from flowactors import KeyedProcessFunction, StreamExecutionEnvironment, WatermarkStrategy
from flowactors.state import RocksDBStateBackend
from tests.kafka._replica import run_replica
from tests.kafka.scaleout_worker import build as keyed_sum_or_windows


def build(
    env: StreamExecutionEnvironment, bootstrap: str, in_topic: str, out_topic: str, job: str
) -> None:
    if job in ("sum", "rocksdb-sum"):  # the jobs of the other scale-out tests
        keyed_sum_or_windows(env, bootstrap, in_topic, out_topic, "sum")
        return
    if job == "rocksdb-windows":
        keyed_sum_or_windows(env, bootstrap, in_topic, out_topic, "windows")
        return
    if job == "watermarks":
        source: KafkaSource[Any] = KafkaSource(
            bootstrap_servers=bootstrap, topics=[in_topic], value_deserializer="json"
        )
        keyed_sink: KafkaSink[Any] = KafkaSink(
            bootstrap_servers=bootstrap,
            topic=out_topic,
            value_serializer="json",
            key_serializer=lambda r: str(r[0]).encode(),
        )
        (
            env.from_source(source, WatermarkStrategy.for_bounded_out_of_orderness(100), "in")
            .map(lambda r: (r["k"], r["i"]))
            .name("pair")
            .key_by(lambda ki: ki[0])
            .process(ObserveWatermark())
            .uid("observe")
            .sink_to(keyed_sink, name="out")
        )
        return
    raise ValueError(f"unknown job {job!r}")


class ObserveWatermark(KeyedProcessFunction[int, tuple[int, int], list[int]]):
    def process_element(self, value: tuple[int, int], ctx: Any, out: Any) -> None:
        out.collect([value[0], value[1], ctx.current_watermark()])


async def main(argv: list[str]) -> int:
    bootstrap, app, in_topic, out_topic, job = argv[:5]
    env = StreamExecutionEnvironment(parallelism=4)
    env.enable_checkpointing(200)
    if job.startswith("rocksdb-"):
        env.set_state_backend(RocksDBStateBackend(local_dir=argv[5], memory_budget_mb=8))
    env.enable_scale_out(
        bootstrap_servers=bootstrap,
        application_id=app,
        properties={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
    )
    build(env, bootstrap, in_topic, out_topic, job)
    client = await env.execute_async(job)
    return await run_replica(client)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
