"""The job both service examples embed, and how they start and stop it.

Counts of generated events per key (``key_by(...).sum(1)`` with uid ``counts``),
checkpointed every second into ``<state>/checkpoints``. ``start_job`` resumes
from the newest savepoint in ``<state>/savepoints`` (what the last graceful stop
left), else from the newest checkpoint (what a crash left), else starts fresh.
``stop_job`` takes a savepoint and stops the job with it; the service's own
shutdown path (aiohttp's ``cleanup_ctx``, an ASGI lifespan) calls it.

``SERVICE_STATE`` names the state directory, ``SERVICE_RATE`` the events per
second (default 2000) and ``SERVICE_KEYS`` the keys (default 10). With
``SERVICE_KAFKA`` (bootstrap servers) and ``SERVICE_TOPIC`` the events come
from that topic instead (JSON records ``{"k": ..., ...}``, counted per
``key-<k % SERVICE_KEYS>``), read from the earliest offset.
``SERVICE_TIME_SLICE_MS`` sets the longest the job holds the event loop in one
go (``ExecutionConfig.time_slice_ms``, default 5). With ``SERVICE_OUTPUT_TOPIC``
every new count is also written there, exactly once, as JSON ``[key, count]``.

Replicas. ``SERVICE_APPLICATION_ID`` runs the job scaled out, as Kafka Streams'
``application.id`` or a Faust app id would: every replica started with the same
id (and ``SERVICE_KAFKA``, ``SERVICE_TOPIC``) shares the one job through Kafka,
so each event is counted once in all, whichever replica counts it. Replicas
share ``SERVICE_PARTITIONS`` (default 4) tasks of counting; ``SERVICE_INSTANCE_ID``
(e.g. the pod name) makes a replica a static member, so that a restart within
the session timeout moves nothing. State lives in Kafka then (no state
directory, no savepoints), and ``stop_job`` commits and leaves the group, so
the other replicas take the tasks over at once. Each replica holds the counts
of the keys its tasks own; all of them are in ``SERVICE_OUTPUT_TOPIC``.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from flowactors import (
    ExecutionConfig,
    InvalidGraphError,
    JobClient,
    KeyedStateView,
    StreamExecutionEnvironment,
)
from flowactors.spi import Sink, SinkWriter, SinkWriterContext

KEYS = int(os.environ.get("SERVICE_KEYS", "10"))
RATE = float(os.environ.get("SERVICE_RATE", "2000"))


def event(i: int) -> tuple[str, int]:
    return (f"key-{i % KEYS}", 1)


class Discard(Sink[Any]):
    """A sink that keeps nothing."""

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        return _DiscardWriter()


class _DiscardWriter(SinkWriter[Any]):
    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        pass


def kafka_source(bootstrap: str, topic: str) -> Any:
    from flowactors_kafka import KafkaOffsetsInitializer, KafkaSource

    return (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(topic)
        .set_group_id("service-example")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_value_only_deserializer("json")
        .build()
    )


def counts_sink(bootstrap: str, topic: str) -> Any:
    from flowactors_kafka import KafkaSink

    return KafkaSink(
        bootstrap_servers=bootstrap,
        topic=topic,
        value_serializer="json",
        delivery_guarantee="exactly-once",
        transactional_id_prefix="service-example-counts",
    )


def application_id() -> str | None:
    """The id replicas share the job under (``SERVICE_APPLICATION_ID``); ``None``: the
    job runs in this process alone."""
    return os.environ.get("SERVICE_APPLICATION_ID") or None


def state_dir() -> Path:
    return Path(os.environ.get("SERVICE_STATE", "service-state"))


def newest_savepoint(state: Path) -> Path | None:
    savepoints = sorted((state / "savepoints").glob("*/_metadata"))
    return savepoints[-1].parent if savepoints else None


async def start_job(state: Path) -> JobClient:
    time_slice_ms = float(os.environ.get("SERVICE_TIME_SLICE_MS", "5"))
    config = ExecutionConfig(time_slice_ms=time_slice_ms)
    kafka = os.environ.get("SERVICE_KAFKA")
    app = application_id()
    if app is None:
        env = StreamExecutionEnvironment(config=config)
        env.enable_checkpointing(1000, storage=state / "checkpoints")
    else:
        if kafka is None or "SERVICE_TOPIC" not in os.environ:
            raise InvalidGraphError(
                "SERVICE_APPLICATION_ID needs SERVICE_KAFKA and SERVICE_TOPIC: replicas "
                "share a job that reads a Kafka topic"
            )
        partitions = int(os.environ.get("SERVICE_PARTITIONS", "4"))
        env = StreamExecutionEnvironment(parallelism=partitions, config=config)
        env.enable_checkpointing(1000)  # the commit interval
        env.enable_scale_out(
            bootstrap_servers=kafka,
            application_id=app,
            instance_id=os.environ.get("SERVICE_INSTANCE_ID") or None,
        )
    output = os.environ.get("SERVICE_OUTPUT_TOPIC")
    events = (
        env.from_generator(event, rate=RATE, name="Events")
        if kafka is None
        else env.from_source(kafka_source(kafka, os.environ["SERVICE_TOPIC"]), name="Events").map(
            lambda r: (f"key-{r['k'] % KEYS}", 1)
        )
    )
    (
        events.uid("events")
        .key_by(lambda e: e[0])
        .sum(1)
        .name("Counts")
        .uid("counts")
        .sink_to(
            counts_sink(kafka, output) if kafka and output else Discard(),  # else read live
            name="Output" if kafka and output else "Discard",
        )
    )
    if app is not None:
        return await env.execute_async("counts")
    return await env.execute_async("counts", savepoint_path=newest_savepoint(state))


#: What ``/counts/<key>`` answers on a replica of a scaled-out job.
SPREAD_OVER_REPLICAS = (
    "the job runs scaled out: its counts are spread over the replicas and all of them "
    "are in SERVICE_OUTPUT_TOPIC\n"
)


def counts(client: JobClient) -> KeyedStateView | None:
    """Live counts: ``view.get("key-3")`` is ``("key-3", n)`` or ``None``. ``None`` for a
    scaled-out job: its state is spread over the replicas (read the output topic)."""
    if application_id() is not None:
        return None
    return client.keyed_state("counts", "value")


async def stop_job(client: JobClient, state: Path) -> str | None:
    """Stop with a savepoint (the next start resumes from it); its path. A scaled-out
    job commits and leaves the group instead (its state is in Kafka): ``None``."""
    if application_id() is not None:
        await client.stop()  # type: ignore[attr-defined]
        print("left the group", flush=True)
        return None
    target = state / "savepoints" / f"savepoint-{time.time_ns():020d}"  # sorts by age
    path = await client.stop_with_savepoint(target)
    print(f"savepoint: {path}", flush=True)
    return path


def report_leftover_tasks() -> None:
    """What a service can check after its cleanup: nothing of the job is left running."""
    left = [t for t in asyncio.all_tasks() if t.get_name().startswith("flowactors:")]
    print(f"flowactors tasks left: {len(left)}", flush=True)
