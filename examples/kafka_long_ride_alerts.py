"""Long ride alerts (lab 4 of Flink's training) from a Kafka topic to a Kafka topic, exactly once.

One command does everything::

    python -m examples.kafka_long_ride_alerts [--rides N] [--parallelism P]

It starts a single-node Kafka broker (``scripts/kafka.sh``, in a temporary directory; or uses
``--bootstrap HOST:PORT`` / ``$FLOWACTORS_KAFKA_BOOTSTRAP``), publishes the taxi rides into the
topic ``rides`` as JSON (:mod:`examples.kafka_publish_rides`), and runs the job:

    KafkaSource("rides", JSON -> TaxiRide, watermarks per partition: RIDE_WATERMARKS)
      -> examples.long_ride_alerts.build (keyed state and event-time timers)
      -> KafkaSink("long-ride-alerts", exactly-once: a transaction per checkpoint)

with a checkpoint every 500 ms. It then reads ``long-ride-alerts`` back with a
read_committed source and checks it against the same computation on the in-memory ride
generator: the same rides, each alerted once.

With ``--follow`` the job reads the topic without end (until Ctrl-C) while you publish with
``python -m examples.kafka_publish_rides --bootstrap ... --rate 2000``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import orjson
from flowactors_kafka import KafkaSink, KafkaSource, create_topic

from examples.kafka_publish_rides import RIDES_TOPIC, publish_rides
from examples.long_ride_alerts import RIDE_WATERMARKS, build
from examples.taxi import TaxiRide, TaxiRideSource
from flowactors import StreamExecutionEnvironment

__all__ = ["ALERTS_TOPIC", "alerts_job", "expected_alerts", "main", "read_alerts"]

ALERTS_TOPIC = "long-ride-alerts"
REPO = Path(__file__).resolve().parents[1]


def ride_from_json(data: bytes) -> TaxiRide:
    return TaxiRide(**orjson.loads(data))


def alerts_job(
    bootstrap: str,
    checkpoints: str | os.PathLike[str],
    *,
    rides_topic: str = RIDES_TOPIC,
    alerts_topic: str = ALERTS_TOPIC,
    parallelism: int = 2,
    follow: bool = False,
    transactional_id_prefix: str = "long-ride-alerts",
) -> StreamExecutionEnvironment:
    """The job: rides from Kafka, alerts to Kafka exactly once (bounded unless ``follow``)."""
    env = StreamExecutionEnvironment(parallelism=parallelism)
    env.enable_checkpointing(500, storage=checkpoints)
    source = KafkaSource(
        bootstrap_servers=bootstrap,
        topics=[rides_topic],
        group_id="long-ride-alerts",
        starting_offsets="earliest",
        bounded=None if follow else "latest",
        value_deserializer=ride_from_json,
    )
    sink: KafkaSink[int] = KafkaSink(
        bootstrap_servers=bootstrap,
        topic=alerts_topic,
        value_serializer=lambda ride_id: orjson.dumps({"ride_id": ride_id}),
        key_serializer=lambda ride_id: str(ride_id).encode(),
        delivery_guarantee="exactly-once",
        transactional_id_prefix=transactional_id_prefix,
    )
    rides = env.from_source(source, RIDE_WATERMARKS, name="kafka rides").uid("rides")
    build(rides).uid("long rides").sink_to(sink, name="kafka alerts").uid("alerts")
    return env


async def read_alerts(bootstrap: str, topic: str = ALERTS_TOPIC) -> list[int]:
    """Every committed alert in ``topic`` (a bounded, read_committed KafkaSource)."""
    env = StreamExecutionEnvironment(parallelism=1)
    source = KafkaSource(
        bootstrap_servers=bootstrap,
        topics=[topic],
        bounded="latest",
        value_deserializer=lambda data: int(orjson.loads(data)["ride_id"]),
        properties={"isolation.level": "read_committed"},
    )
    return sorted(await env.from_source(source, name="alerts").execute_and_collect("read alerts"))


async def expected_alerts(rides: int) -> list[int]:
    """The same computation on the in-memory generator, for comparison."""
    env = StreamExecutionEnvironment(parallelism=2)
    stream = env.from_source(TaxiRideSource(max_rides=rides), RIDE_WATERMARKS, name="rides")
    return sorted(await build(stream).execute_and_collect("long ride alerts (in memory)"))


async def run(args: argparse.Namespace, bootstrap: str) -> None:
    await create_topic(bootstrap, ALERTS_TOPIC, 2)
    with tempfile.TemporaryDirectory(prefix="long-ride-alerts-") as checkpoints:
        if args.follow:
            print(f"reading {RIDES_TOPIC!r} on {bootstrap} until Ctrl-C; publish with")
            print(f"  python -m examples.kafka_publish_rides --bootstrap {bootstrap} --rate 2000")
            await create_topic(bootstrap, RIDES_TOPIC, 4)
            env = alerts_job(bootstrap, checkpoints, parallelism=args.parallelism, follow=True)
            await env.execute("long ride alerts")
            return
        print(f"publishing the events of {args.rides:,} rides to {RIDES_TOPIC!r} ...")
        await publish_rides(bootstrap, args.rides)
        print("running the alerts job (exactly-once into 'long-ride-alerts') ...")
        env = alerts_job(bootstrap, checkpoints, parallelism=args.parallelism)
        result = await env.execute("long ride alerts")
    alerts = await read_alerts(bootstrap)
    expected = await expected_alerts(args.rides)
    print(f"the job ran {result.net_runtime_ms / 1000:.1f} s")
    print(f"{len(alerts):,} alerts in {ALERTS_TOPIC!r} (read_committed)")
    if alerts == expected:
        print(f"the same {len(expected):,} rides as the in-memory job, each alerted once")
    else:
        extra = sorted(set(alerts) - set(expected))[:10]
        missing = sorted(set(expected) - set(alerts))[:10]
        raise SystemExit(
            f"alerts differ from the in-memory job: {len(alerts)} vs {len(expected)}; "
            f"extra {extra}, missing {missing}"
        )
    print("first alerts:", ", ".join(str(ride_id) for ride_id in alerts[:10]))


def start_broker(directory: Path) -> str:
    done = subprocess.run(
        [str(REPO / "scripts" / "kafka.sh"), "start", "--dir", str(directory)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"could not start a Kafka broker:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m examples.kafka_long_ride_alerts", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--bootstrap", default=os.environ.get("FLOWACTORS_KAFKA_BOOTSTRAP"))
    parser.add_argument("--rides", type=int, default=10_000)
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--follow", action="store_true", help="read without end (Ctrl-C)")
    args = parser.parse_args(argv)
    # aiokafka logs what a fresh cluster goes through (its group coordinator starting) as errors.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    if args.bootstrap:
        asyncio.run(run(args, args.bootstrap))
        return
    with tempfile.TemporaryDirectory(prefix="kafka-") as tmp:
        directory = Path(tmp) / "broker"
        print("starting a Kafka broker (scripts/kafka.sh) ...")
        bootstrap = start_broker(directory)
        try:
            asyncio.run(run(args, bootstrap))
        except KeyboardInterrupt:
            pass
        finally:
            subprocess.run(
                [str(REPO / "scripts" / "kafka.sh"), "stop", "--dir", str(directory)],
                capture_output=True,
                check=False,
            )
            print("broker stopped")


if __name__ == "__main__":
    main()
