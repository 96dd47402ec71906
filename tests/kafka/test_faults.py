"""Bad input and faults: records that do not deserialise, a broker that is down, SASL."""

from __future__ import annotations

import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from flowactors_kafka import KafkaOffsetsInitializer, KafkaSink, KafkaSource

from flowactors import (
    ConnectorError,
    JobFailedError,
    MalformedRecord,
    MalformedRecordError,
    OutputTag,
    RestartStrategies,
    StreamExecutionEnvironment,
)
from tests.kafka._kafka import (
    SASL_PASSWORD,
    SASL_USER,
    create_topic,
    produce,
    read_topic,
    unique,
    values_of,
)
from tests.kafka.conftest import Broker

pytestmark = pytest.mark.kafka


def builder(bootstrap: str, topic: str) -> Any:
    return (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(topic)
        .set_value_only_deserializer("json")
        .set_bounded(KafkaOffsetsInitializer.latest())
    )


async def topic_with_bad_record(bootstrap: str) -> str:
    """Partition 1 holds good records at offsets 0-4, garbage at 5, good ones at 6-9."""
    topic = unique("bad")
    await create_topic(bootstrap, topic, 2)
    good = [(None, orjson.dumps({"i": i})) for i in range(5)]
    more = [(None, orjson.dumps({"i": i})) for i in range(6, 10)]
    await produce(bootstrap, topic, [*good, (b"key", b"{not json"), *more], partition=1)
    await produce(bootstrap, topic, [(None, orjson.dumps({"i": 100}))], partition=0)
    return topic


async def test_malformed_record_fails_naming_topic_partition_offset(bootstrap: str) -> None:
    topic = await topic_with_bad_record(bootstrap)
    env = StreamExecutionEnvironment(parallelism=2)
    stream = env.from_source(builder(bootstrap, topic).build(), name="kafka")
    with pytest.raises(JobFailedError) as info:
        await stream.execute_and_collect()
    cause = info.value.cause
    assert isinstance(cause, MalformedRecordError)
    assert cause.source == topic and cause.position == (1, 5)
    assert cause.raw == b"{not json"
    assert f"{topic}/1@5" in str(cause)


async def test_malformed_records_go_to_the_dead_letter_topic(bootstrap: str) -> None:
    topic = await topic_with_bad_record(bootstrap)
    dlq = unique("dlq")
    await create_topic(bootstrap, dlq, 1)
    env = StreamExecutionEnvironment(parallelism=2)
    src = builder(bootstrap, topic).set_dead_letter_topic(dlq).build()
    got = await env.from_source(src, name="kafka").execute_and_collect()
    assert sorted(r["i"] for r in got) == [0, 1, 2, 3, 4, 6, 7, 8, 9, 100]
    (dead,) = await read_topic(bootstrap, dlq, expected=1)
    assert dead.key == b"key" and dead.value == b"{not json"
    headers = {k: v for k, v in dead.headers}
    assert headers["flowactors.topic"] == topic.encode()
    assert (headers["flowactors.partition"], headers["flowactors.offset"]) == (b"1", b"5")
    assert b"JSONDecodeError" in headers["flowactors.error"]


async def test_a_malformed_record_as_large_as_the_topic_takes_reaches_the_dead_letter_topic(
    bootstrap: str,
) -> None:
    # The input topic takes records of almost 2 MB; the dead-letter topic (and the producer's
    # max_request_size) keep the broker's default of about 1 MiB.
    topic, dlq = unique("big"), unique("big-dlq")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "2000000"}),
                NewTopic(dlq, 1, 1),
            ]
        )
    finally:
        await admin.close()
    big = b"{" + bytes(range(256)) * 7_700  # 1,971,201 bytes: not JSON
    await produce(
        bootstrap,
        topic,
        [(None, b'{"i": 1}'), (b"key", big), (None, b'{"i": 2}')],
        max_request_size=3_000_000,
    )

    def parse(data: bytes) -> Any:
        if data.startswith(b"{\x00"):  # an error message quoting the whole record
            raise ValueError(f"not JSON: {data!r}")
        return orjson.loads(data)

    env = StreamExecutionEnvironment(parallelism=1)
    source = KafkaSource(
        bootstrap_servers=bootstrap,
        topics=[topic],
        bounded="latest",
        value_deserializer=parse,
        dead_letter_topic=dlq,
    )
    got = await env.from_source(source, name="kafka").execute_and_collect()
    assert [r["i"] for r in got] == [1, 2]
    (dead,) = await read_topic(bootstrap, dlq, expected=1)
    headers = dict(dead.headers)
    assert dead.key == b"key"
    assert 900_000 < len(dead.value) < 1_048_576 and big.startswith(dead.value)
    assert headers["flowactors.truncated"] == b"value"
    assert headers["flowactors.original-size"] == str(len(big)).encode()
    assert (headers["flowactors.topic"], headers["flowactors.offset"]) == (topic.encode(), b"1")
    reason = headers["flowactors.error"]
    assert reason.startswith(b"ValueError: not JSON: b'{\\x00") and len(reason) <= 1000
    assert reason.endswith("…".encode())


async def test_malformed_records_go_to_a_side_output(bootstrap: str) -> None:
    topic = await topic_with_bad_record(bootstrap)
    tag = OutputTag[MalformedRecord]("bad")
    env = StreamExecutionEnvironment(parallelism=1)
    stream = env.from_source(
        builder(bootstrap, topic).set_malformed_record_output(tag).build(), name="kafka"
    )
    bad = await stream.get_side_output(tag).execute_and_collect()
    assert len(bad) == 1
    assert (bad[0].source, bad[0].position, bad[0].raw) == (topic, (1, 5), b"{not json")


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def test_broker_down_at_start_is_retried_then_fails_clearly() -> None:
    address = closed_port()
    env = StreamExecutionEnvironment(parallelism=1)
    src = builder(address, "nowhere").set_startup_timeout(1.5).build()
    started = time.monotonic()
    with pytest.raises(JobFailedError) as info:
        await env.from_source(src, name="kafka").execute_and_collect()
    took = time.monotonic() - started
    cause = info.value.cause
    assert isinstance(cause, ConnectorError) and cause.retriable
    assert address in str(cause) and "within 1.5 s" in str(cause)
    assert 1.4 < took < 10, took


async def test_sink_broker_down_at_start(bootstrap: str) -> None:
    env = StreamExecutionEnvironment(parallelism=1)
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(closed_port())
        .set_record_serializer(topic="x", value_serializer="json")
        .set_delivery_guarantee("exactly-once")
        .set_transactional_id_prefix(unique("down"))
        .set_startup_timeout(1.0)
        .build()
    )
    env.from_collection([1, 2, 3]).sink_to(sink)
    with pytest.raises(JobFailedError) as info:
        await env.execute("down")
    assert isinstance(info.value.cause, ConnectorError)


async def test_missing_topic_fails_clearly(bootstrap: str) -> None:
    env = StreamExecutionEnvironment(parallelism=1)
    src = builder(bootstrap, unique("missing")).set_startup_timeout(0.5).build()
    with pytest.raises(JobFailedError) as info:
        await env.from_source(src, name="kafka").execute_and_collect()
    assert isinstance(info.value.cause, ConnectorError)
    assert "do not exist" in str(info.value.cause)


def scram(password: str = SASL_PASSWORD) -> dict[str, Any]:
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": SASL_USER,
        "sasl_plain_password": password,
    }


@pytest.fixture
def sasl_bootstrap(kafka: Broker) -> str:
    if kafka.sasl_bootstrap is None:
        pytest.skip("FLOWACTORS_KAFKA_BOOTSTRAP is set without FLOWACTORS_KAFKA_SASL_BOOTSTRAP")
    return kafka.sasl_bootstrap


async def test_sasl_scram_sha_256(sasl_bootstrap: str) -> None:
    src, out = unique("sasl-in"), unique("sasl-out")
    await create_topic(sasl_bootstrap, src, 2, **scram())
    await create_topic(sasl_bootstrap, out, 1, **scram())
    await produce(
        sasl_bootstrap, src, [(None, orjson.dumps({"i": i})) for i in range(200)], **scram()
    )
    env = StreamExecutionEnvironment(parallelism=2)
    # Kafka's dotted property names work as well as aiokafka's argument names.
    source = (
        builder(sasl_bootstrap, src)
        .set_properties(
            {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.username": SASL_USER,
                "sasl.password": SASL_PASSWORD,
            }
        )
        .build()
    )
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(sasl_bootstrap)
        .set_record_serializer(topic=out, value_serializer="json")
        .set_delivery_guarantee("exactly-once")
        .set_transactional_id_prefix(unique("sasl"))
        .set_properties(scram())
        .build()
    )
    env.from_source(source, name="kafka").sink_to(sink)
    await env.execute("sasl")
    got = values_of(await read_topic(sasl_bootstrap, out, expected=200, **scram()))
    assert sorted(r["i"] for r in got) == list(range(200))


def restarting_forever(env: StreamExecutionEnvironment, tmp_path: Path) -> None:
    """Checkpointing and restarts without limit: only a fatal error can end the job."""
    env.enable_checkpointing(timedelta(milliseconds=200), storage=str(tmp_path / "cp"))
    env.set_restart_strategy(RestartStrategies.fixed_delay(1_000_000, timedelta(milliseconds=10)))


async def test_sasl_wrong_password_fails_without_retrying(
    sasl_bootstrap: str, tmp_path: Path
) -> None:
    env = StreamExecutionEnvironment(parallelism=1)
    restarting_forever(env, tmp_path)
    source = builder(sasl_bootstrap, "any").set_properties(scram("wrong")).build()
    env.from_source(source, name="kafka").print()
    started = time.monotonic()
    with pytest.raises(JobFailedError) as info:
        await env.execute("wrong password")
    cause = info.value.cause
    assert isinstance(cause, ConnectorError) and not cause.retriable
    assert "Not retried: authentication failed: check sasl_mechanism" in str(cause)
    assert time.monotonic() - started < 20


async def test_a_record_larger_than_the_topic_accepts_fails_at_once(
    bootstrap: str, tmp_path: Path
) -> None:
    topic = unique("small")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "10000"})]
        )
    finally:
        await admin.close()
    env = StreamExecutionEnvironment(parallelism=1)
    restarting_forever(env, tmp_path)
    sink = KafkaSink(
        bootstrap_servers=bootstrap,
        topic=topic,
        value_serializer="bytes",
        delivery_guarantee="at-least-once",
    )
    env.from_collection([b"small", b"x" * 50_000]).sink_to(sink)
    started = time.monotonic()
    with pytest.raises(JobFailedError) as info:
        await env.execute("too large")
    cause = info.value.cause
    assert isinstance(cause, ConnectorError) and cause.retriable is False, repr(cause)
    assert "MessageSizeTooLargeError" in str(cause)
    assert "larger than the topic accepts (its max.message.bytes)" in str(cause)
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
async def test_sink_to_a_missing_topic_fails_clearly(bootstrap: str, guarantee: str) -> None:
    env = StreamExecutionEnvironment(parallelism=1)
    missing = unique("missing-out")
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_record_serializer(topic=missing, value_serializer="json")
        .set_delivery_guarantee(guarantee)
        .set_transactional_id_prefix(unique("missing"))
        .set_startup_timeout(0.5)
        .build()
    )
    env.from_collection([1, 2, 3]).sink_to(sink)
    with pytest.raises(JobFailedError) as info:
        await env.execute("missing topic")
    assert isinstance(info.value.cause, ConnectorError)
    assert f"topic {missing!r} does not exist" in str(info.value.cause)
