"""Publish the training's taxi rides into a Kafka topic, as JSON, with a flowactors job.

Each ride event becomes one record: key the ride id (so a ride's START and END share a
partition), value the ``TaxiRide`` as a JSON object, timestamp its event time. Run it on its
own to feed a running ``examples/kafka_long_ride_alerts.py --follow``::

    python -m examples.kafka_publish_rides --bootstrap localhost:9092 --rides 10000 --rate 2000
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from flowactors_kafka import KafkaSink, create_topic

from examples.taxi import TaxiRide, TaxiRideSource
from flowactors import StreamExecutionEnvironment

__all__ = ["RIDES_TOPIC", "publish_rides", "main"]

RIDES_TOPIC = "rides"


async def publish_rides(
    bootstrap: str,
    rides: int,
    *,
    topic: str = RIDES_TOPIC,
    partitions: int = 4,
    rate: float | None = None,
) -> None:
    """Write the first ``rides`` rides' events (START and END; as in the training, END events
    still due when the generator stops never come) into ``topic``, creating it if needed."""
    await create_topic(bootstrap, topic, partitions)
    env = StreamExecutionEnvironment(parallelism=1)
    sink: KafkaSink[TaxiRide] = KafkaSink(
        bootstrap_servers=bootstrap,
        topic=topic,
        value_serializer="json",  # orjson writes dataclasses as JSON objects
        key_serializer=lambda ride: str(ride.ride_id).encode(),
        delivery_guarantee="at-least-once",
    )
    env.from_source(TaxiRideSource(max_rides=rides, rate=rate), name="taxi rides").sink_to(
        sink, name=f"kafka {topic}"
    )
    await env.execute("publish rides")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.kafka_publish_rides")
    parser.add_argument("--bootstrap", required=True, help="host:port of a Kafka broker")
    parser.add_argument("--topic", default=RIDES_TOPIC)
    parser.add_argument("--rides", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate", type=float, default=None, help="events per second")
    args = parser.parse_args(argv)
    asyncio.run(
        publish_rides(
            args.bootstrap,
            args.rides,
            topic=args.topic,
            partitions=args.partitions,
            rate=args.rate,
        )
    )
    print(f"published the events of {args.rides:,} rides to {args.topic!r}")


if __name__ == "__main__":
    main()
