"""One worker process of the scale-out tests' keyed-sum job.

    python -m tests.kafka.scaleout_worker BOOTSTRAP APP IN_TOPIC OUT_TOPIC [sum|windows]

``sum``: reads ``{"k": key, "v": n}`` JSON records, sums ``v`` per key across workers
and writes ``[key, running_sum]`` exactly once. ``windows``: reads ``{"k": key, "t": ms}``
and writes ``[key, second, count]`` per key and tumbling event-time second.
``SCALEOUT_INSTANCE_ID`` gives it a static membership id, ``SCALEOUT_PROPERTIES`` (JSON)
more client properties. Prints ``assigned <tasks>`` whenever its tasks change; SIGTERM
stops it as planned (commit, leave the group, exit 0). With ``SCALEOUT_BLOCK_S`` set, the
``sum`` job's map blocks the event loop that many seconds (``time.sleep``) at the first
record it sees.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from flowactors_kafka import KafkaSink, KafkaSource

from flowactors import StreamExecutionEnvironment, WatermarkStrategy
from flowactors.windows import TumblingEventTimeWindows
from tests.kafka._replica import run_replica


def build(
    env: StreamExecutionEnvironment,
    bootstrap: str,
    in_topic: str,
    out_topic: str,
    job: str = "sum",
) -> None:
    source: KafkaSource[Any] = KafkaSource(
        bootstrap_servers=bootstrap, topics=[in_topic], value_deserializer="json"
    )
    sink: KafkaSink[Any] = KafkaSink(
        bootstrap_servers=bootstrap,
        topic=out_topic,
        value_serializer="json",
        delivery_guarantee="exactly-once",
        transactional_id_prefix="unused-in-scale-out",
    )
    if job == "windows":
        # records {"k": key, "t": ms} (also their Kafka timestamp), -1 keys only move time
        (
            env.from_source(source, WatermarkStrategy.for_monotonous_timestamps(), "in")
            .filter(lambda r: r["k"] >= 0)
            .map(lambda r: (r["k"], r["t"] // 1000, 1))
            .name("pair")
            .key_by(lambda kwc: kwc[0])
            .window(TumblingEventTimeWindows.of(1000))
            .reduce(lambda a, b: (a[0], a[1], a[2] + b[2]))
            .uid("windows")
            .sink_to(sink, name="out")
        )
        return
    (
        env.from_source(source, name="in")
        .map(blocking_once(float(os.environ.get("SCALEOUT_BLOCK_S") or 0)))
        .name("pair")
        .key_by(lambda kv: kv[0])
        .sum(1)
        .uid("sum")
        .sink_to(sink, name="out")
    )


def blocking_once(seconds: float) -> Callable[[Any], tuple[Any, Any]]:
    """``(k, v)`` of a record; the first call blocks the event loop ``seconds`` first."""
    blocked = seconds <= 0

    def pair(r: Any) -> tuple[Any, Any]:
        nonlocal blocked
        if not blocked:
            blocked = True
            time.sleep(seconds)  # a user function that blocks the loop, on purpose
        return r["k"], r["v"]

    return pair


def build_from_environment(env: StreamExecutionEnvironment) -> None:
    """The keyed-sum job scaled out, for ``flowactors run tests.kafka.scaleout_worker:
    build_from_environment``: broker, application id and topics from ``SCALEOUT_*``
    environment variables."""
    environ = os.environ
    bootstrap = environ["SCALEOUT_BOOTSTRAP"]
    env.enable_checkpointing(100)  # the commit interval
    env.enable_scale_out(
        bootstrap_servers=bootstrap,
        application_id=environ["SCALEOUT_APP"],
        properties={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
    )
    build(env, bootstrap, environ["SCALEOUT_IN"], environ["SCALEOUT_OUT"])


async def main(argv: list[str]) -> int:
    # timestamps, and the worker's rebalances and task changes, for reading a test's logs
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("flowactors_kafka").setLevel(logging.INFO)
    bootstrap, app, in_topic, out_topic = argv[:4]
    job = argv[4] if len(argv) > 4 else "sum"
    partitions = 4
    env = StreamExecutionEnvironment(parallelism=partitions)
    env.enable_checkpointing(200)
    env.enable_scale_out(
        bootstrap_servers=bootstrap,
        application_id=app,
        instance_id=os.environ.get("SCALEOUT_INSTANCE_ID") or None,  # static membership
        properties={
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
            **json.loads(os.environ.get("SCALEOUT_PROPERTIES") or "{}"),
        },
    )
    build(env, bootstrap, in_topic, out_topic, job)
    client = await env.execute_async("keyed-sum")
    return await run_replica(client)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
