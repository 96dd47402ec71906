"""TLS on the broker's SSL listener: the right CA works end to end, the wrong one fails at once."""

from __future__ import annotations

import ssl
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from flowactors_kafka import KafkaSink, KafkaSource

from flowactors import (
    ConnectorError,
    JobFailedError,
    RestartStrategies,
    StreamExecutionEnvironment,
)
from tests.kafka._kafka import create_topic, produce, read_topic, unique, values_of
from tests.kafka.conftest import Broker

pytestmark = pytest.mark.kafka


@pytest.fixture
def tls(kafka: Broker) -> tuple[str, str]:
    if kafka.tls_bootstrap is None or kafka.tls_cafile is None:
        pytest.skip("FLOWACTORS_KAFKA_BOOTSTRAP is set without FLOWACTORS_KAFKA_TLS_BOOTSTRAP")
    return kafka.tls_bootstrap, kafka.tls_cafile


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA certificate that did not sign the broker's."""
    directory = tmp_path_factory.mktemp("other-ca")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=some other CA",
            "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(directory / "ca.pem")


def client(cafile: str) -> dict[str, Any]:
    """What the tests' own aiokafka clients take."""
    return {"security_protocol": "SSL", "ssl_context": ssl.create_default_context(cafile=cafile)}


async def test_source_and_exactly_once_sink_over_tls(tls: tuple[str, str], tmp_path: Path) -> None:
    bootstrap, cafile = tls
    inp, out = unique("tls-in"), unique("tls-out")
    await create_topic(bootstrap, inp, 2, **client(cafile))
    await create_topic(bootstrap, out, 2, **client(cafile))
    await produce(
        bootstrap, inp, [(None, orjson.dumps({"i": i})) for i in range(500)], **client(cafile)
    )
    env = StreamExecutionEnvironment(parallelism=2)
    env.enable_checkpointing(timedelta(milliseconds=200), storage=str(tmp_path / "cp"))
    # Kafka's dotted names, and the CA as a PEM file (the sink takes an ssl_context instead).
    source = KafkaSource(
        bootstrap_servers=bootstrap,
        topics=[inp],
        bounded="latest",
        value_deserializer="json",
        properties={"security.protocol": "SSL", "ssl.cafile": cafile},
    )
    sink = KafkaSink(
        bootstrap_servers=bootstrap,
        topic=out,
        value_serializer="json",
        delivery_guarantee="exactly-once",
        transactional_id_prefix=unique("tls"),
        properties=client(cafile),
    )
    env.from_source(source, name="tls in").map(lambda r: {"i": r["i"] * 2}).sink_to(sink)
    await env.execute("tls")
    got = values_of(await read_topic(bootstrap, out, expected=500, **client(cafile)))
    assert sorted(r["i"] for r in got) == [2 * i for i in range(500)]


def assert_certificate_failure(error: JobFailedError, cafile: str) -> None:
    cause = error.cause
    assert isinstance(cause, ConnectorError), repr(cause)
    assert cause.retriable is False
    message = str(cause)
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert f"the broker's certificate is not trusted by ssl_cafile={cafile!r}" in message
    assert "Unable to bootstrap" not in message and "could not connect" not in message
    assert isinstance(cause.__cause__, ssl.SSLCertVerificationError)


async def test_source_trusting_the_wrong_ca_fails_at_once(
    tls: tuple[str, str], other_ca: str, tmp_path: Path
) -> None:
    bootstrap, _ = tls
    env = StreamExecutionEnvironment(parallelism=1)
    # Checkpointing and restarts without limit: only a fatal error ends this job.
    env.enable_checkpointing(timedelta(milliseconds=200), storage=str(tmp_path / "cp"))
    env.set_restart_strategy(RestartStrategies.fixed_delay(1_000_000, timedelta(milliseconds=10)))
    source = KafkaSource(
        bootstrap_servers=bootstrap,
        topics=["anything"],
        value_deserializer="json",
        properties={"security_protocol": "SSL", "ssl_cafile": other_ca},
        startup_timeout=timedelta(seconds=30),
    )
    env.from_source(source, name="tls in").print()
    started = time.monotonic()
    with pytest.raises(JobFailedError) as info:
        await env.execute("wrong ca")
    assert time.monotonic() - started < 5
    assert_certificate_failure(info.value, other_ca)


async def test_exactly_once_sink_trusting_the_wrong_ca_fails_at_once(
    tls: tuple[str, str], other_ca: str, tmp_path: Path
) -> None:
    bootstrap, _ = tls
    env = StreamExecutionEnvironment(parallelism=1)
    env.enable_checkpointing(timedelta(milliseconds=200), storage=str(tmp_path / "cp"))
    env.set_restart_strategy(RestartStrategies.fixed_delay(1_000_000, timedelta(milliseconds=10)))
    sink = KafkaSink(
        bootstrap_servers=bootstrap,
        topic="anything",
        value_serializer="json",
        delivery_guarantee="exactly-once",
        transactional_id_prefix=unique("wrong-ca"),
        properties={"security.protocol": "SSL", "ssl.cafile": other_ca},
        startup_timeout=timedelta(seconds=30),
    )
    env.from_collection([1, 2, 3]).sink_to(sink)
    started = time.monotonic()
    with pytest.raises(JobFailedError) as info:
        await env.execute("wrong ca sink")
    assert time.monotonic() - started < 5
    assert_certificate_failure(info.value, other_ca)


def test_tls_settings_without_a_tls_protocol_are_refused() -> None:
    with pytest.raises(ValueError, match="without security_protocol='SSL' or 'SASL_SSL'"):
        KafkaSource(
            bootstrap_servers="b:1",
            topics=["t"],
            value_deserializer="json",
            properties={"ssl_context": ssl.create_default_context()},
        )
    with pytest.raises(ValueError, match="give PEM files as ssl_cafile"):
        KafkaSink(
            bootstrap_servers="b:1",
            topic="o",
            value_serializer="json",
            properties={"security.protocol": "SSL", "ssl.truststore.location": "x.jks"},
        )
