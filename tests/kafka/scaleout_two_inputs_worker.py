"""One worker process of the scale-out tests' two-input jobs.

    python -m tests.kafka.scaleout_two_inputs_worker BOOTSTRAP APP RIDES FARES OUT JOB

Both jobs read rides ``{"id": i, "t": ms}`` and fares ``{"id": i, "fare": n, "t": ms}``
(event time ``t``, also the Kafka timestamp) from two topics; records with ``id < 0``
only move event time. ``enrich``: a ``KeyedCoProcessFunction`` pairs each ride with its
fare by id, in either order, and reports a ride still without a fare when event time
passes ``t + UNPAID_AFTER_MS`` — keyed state, event-time timers, and event time that is
the minimum of both inputs. ``join``: an interval join of rides and fares by
``id % JOIN_KEYS`` within ``[-JOIN_BOUND_MS, JOIN_BOUND_MS]``. ``co_map``: both
inputs unkeyed, each record tagged with its input. Prints ``assigned
<tasks>`` whenever its tasks change; SIGTERM stops it as planned.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from flowactors_kafka import KafkaSink, KafkaSource

from flowactors import (
    Collector,
    DataStream,
    KeyedContext,
    KeyedCoProcessFunction,
    ProcessJoinFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from tests.kafka._replica import run_replica

UNPAID_AFTER_MS = 1000
JOIN_KEYS = 50
JOIN_BOUND_MS = 600


class Enrich(KeyedCoProcessFunction[int, Any, Any, Any]):
    """``["paid", id, fare]`` once a ride and its fare met; ``["unpaid", id, at]`` for a
    ride whose fare had not come when event time reached ``at``."""

    def open(self, ctx: RuntimeContext) -> None:
        self.ride = ctx.get_state(ValueStateDescriptor[Any]("ride"))
        self.fare = ctx.get_state(ValueStateDescriptor[Any]("fare"))

    def process_element1(self, ride: Any, ctx: KeyedContext[int], out: Collector[Any]) -> None:
        fare = self.fare.value()
        if fare is None:
            self.ride.update(ride)
            ctx.timer_service().register_event_time_timer(ride["t"] + UNPAID_AFTER_MS)
        else:
            self.fare.clear()
            out.collect(["paid", ride["id"], fare["fare"]])

    def process_element2(self, fare: Any, ctx: KeyedContext[int], out: Collector[Any]) -> None:
        ride = self.ride.value()
        if ride is None:
            self.fare.update(fare)
        else:
            self.ride.clear()
            out.collect(["paid", ride["id"], fare["fare"]])

    def on_timer(self, timestamp: int, ctx: KeyedContext[int], out: Collector[Any]) -> None:
        ride = self.ride.value()
        if ride is not None:
            self.ride.clear()
            out.collect(["unpaid", ride["id"], timestamp])


class Pair(ProcessJoinFunction[Any, Any, Any]):
    def process_element(self, ride: Any, fare: Any, ctx: Any, out: Collector[Any]) -> None:
        out.collect([ride["id"], fare["id"], ctx.timestamp()])


def sources(
    env: StreamExecutionEnvironment, bootstrap: str, rides: str, fares: str, bounded: bool
) -> tuple[DataStream[Any], DataStream[Any]]:
    """Both inputs, event time from the records, the time-only records dropped."""
    streams = []
    for name, topic in (("rides", rides), ("fares", fares)):
        source: KafkaSource[Any] = KafkaSource(
            bootstrap_servers=bootstrap,
            topics=[topic],
            value_deserializer="json",
            bounded="latest" if bounded else None,
        )
        strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
            lambda r, _: r["t"]
        )
        streams.append(env.from_source(source, strategy, name).filter(lambda r: r["id"] >= 0))
    return streams[0], streams[1]


def build(
    env: StreamExecutionEnvironment,
    bootstrap: str,
    rides_topic: str,
    fares_topic: str,
    job: str,
    bounded: bool = False,
) -> DataStream[Any]:
    """The job's output stream (the caller sinks or collects it)."""
    rides, fares = sources(env, bootstrap, rides_topic, fares_topic, bounded)
    if job == "enrich":
        return (
            rides.key_by(lambda r: r["id"])
            .connect(fares.key_by(lambda f: f["id"]))
            .process(Enrich())
            .uid("enrich")
        )
    if job == "co_map":
        return (
            rides.connect(fares)
            .map(lambda r: ["ride", r["id"]], lambda f: ["fare", f["id"]])
            .uid("co_map")
        )
    return (
        rides.key_by(lambda r: r["id"] % JOIN_KEYS)
        .interval_join(fares.key_by(lambda f: f["id"] % JOIN_KEYS))
        .between(-JOIN_BOUND_MS, JOIN_BOUND_MS)
        .process(Pair())
        .uid("join")
    )


def sink(bootstrap: str, topic: str) -> KafkaSink[Any]:
    return KafkaSink(
        bootstrap_servers=bootstrap,
        topic=topic,
        value_serializer="json",
        delivery_guarantee="exactly-once",
        transactional_id_prefix="unused-in-scale-out",
    )


def scaled_out(bootstrap: str, app: str) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment(parallelism=4)
    env.enable_checkpointing(200)
    env.enable_scale_out(
        bootstrap_servers=bootstrap,
        application_id=app,
        instance_id=os.environ.get("SCALEOUT_INSTANCE_ID") or None,
        properties={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
    )
    return env


async def main(argv: list[str]) -> int:
    bootstrap, app, rides, fares, out, job = argv[:6]
    env = scaled_out(bootstrap, app)
    build(env, bootstrap, rides, fares, job).sink_to(sink(bootstrap, out), name="out")
    client = await env.execute_async(job)
    return await run_replica(client)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
