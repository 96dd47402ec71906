"""Kafka connector logic that needs no broker: assignment, restored state, properties, builders."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import flowactors_kafka
import pytest
from flowactors_kafka import (
    KafkaOffsetsInitializer,
    KafkaSink,
    KafkaSource,
    TopicPartition,
    partition_owner,
)
from flowactors_kafka._client import client_options
from flowactors_kafka._reader import KafkaSourceReader
from flowactors_kafka._source import FETCH_DEFAULTS

from flowactors import ConnectorError, OutputTag
from flowactors.spi import SourceReaderContext

PACKAGE = Path(flowactors_kafka.__file__).parent


def _imported_modules(path: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.append(node.module or "")
    return out


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_only_modules_of_the_client_package_import_aiokafka() -> None:
    client = PACKAGE / "_client"
    seen_in_client = set()
    for path in _modules():
        uses_aiokafka = any(
            m == "aiokafka" or m.startswith("aiokafka.") for m in _imported_modules(path)
        )
        # The scale-out worker's group client is the one other seam (its own module).
        in_client = path.parent == client or path == PACKAGE / "_scaleout" / "_client.py"
        assert not uses_aiokafka or in_client, path.relative_to(PACKAGE)
        if uses_aiokafka:
            seen_in_client.add(path.name)
    # The seam is where aiokafka is used: the test would pass vacuously if it found nothing.
    assert {"consumer.py", "producer.py", "transactions.py"} <= seen_in_client


def test_client_modules_have_a_docstring_and_stay_small() -> None:
    for path in (PACKAGE / "_client").glob("*.py"):
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), path.name
        assert len(path.read_text().splitlines()) <= 500, path.name


def test_connector_uses_only_public_flowactors_names() -> None:
    allowed = {"flowactors", "flowactors.spi"}
    checked = 0
    for path in _modules():
        for module in _imported_modules(path):
            if module == "flowactors" or module.startswith("flowactors."):
                assert module in allowed, (path.relative_to(PACKAGE), module)
                checked += 1
    assert checked > 0


def test_public_names() -> None:
    assert sorted(flowactors_kafka.__all__) == sorted(
        n for n in flowactors_kafka.__all__ if hasattr(flowactors_kafka, n)
    )
    assert {"KafkaSource", "KafkaSink", "KafkaOffsetsInitializer"} <= set(flowactors_kafka.__all__)


@pytest.mark.parametrize("parallelism", [1, 2, 3, 4, 7])
def test_partition_owner_is_balanced_per_topic(parallelism: int) -> None:
    for topic in ("rides", "fares", "t"):
        owners = Counter(partition_owner(topic, p, parallelism) for p in range(parallelism * 5))
        assert set(owners.values()) == {5}


def reader(subtask: int, parallelism: int, restored: list[Any] | None) -> KafkaSourceReader[Any]:
    src = (
        KafkaSource.builder()
        .set_bootstrap_servers("localhost:1")
        .set_topics("t")
        .set_value_only_deserializer("json")
        .build()
    )
    ctx = SourceReaderContext("job", "kafka", subtask, parallelism, 100, restored, restored)
    return KafkaSourceReader(src.settings, ctx)


def snapshot(subtask: int, parallelism: int, partitions: range) -> list[Any]:
    r = reader(subtask, parallelism, None)
    from flowactors_kafka._reader import _Split

    for p in partitions:
        if partition_owner("t", p, parallelism) == subtask:
            r.splits[TopicPartition("t", p)] = _Split(TopicPartition("t", p), 1000 + p)
    return r.snapshot_state(1)


@pytest.mark.parametrize(("old", "new"), [(3, 2), (2, 4), (4, 4), (1, 5), (5, 1)])
def test_restore_at_any_parallelism_reads_each_partition_once_from_its_offset(
    old: int, new: int
) -> None:
    partitions = range(11)
    entries = [e for s in range(old) for e in snapshot(s, old, partitions)]
    assert len(entries) == old  # one entry per reader
    taken: Counter[int] = Counter()
    for s in range(new):
        restored = reader(s, new, entries)._restored_splits()
        assert restored is not None
        for tp, (offset, stop) in restored.items():
            assert offset == 1000 + tp.partition and stop is None
            assert partition_owner("t", tp.partition, new) == s
            taken[tp.partition] += 1
    assert taken == Counter(partitions)


def test_restore_refuses_an_incomplete_share() -> None:
    entries = snapshot(0, 3, range(6))  # only old subtask 0's entries
    with pytest.raises(ConnectorError, match="cannot tell which partitions"):
        reader(0, 2, entries)._restored_splits()
    with pytest.raises(ConnectorError, match="no entry"):
        reader(1, 2, [])._restored_splits()


def test_properties_map_dotted_kafka_names() -> None:
    opts = client_options(
        {
            "isolation.level": "read_committed",
            "max.poll.records": "500",
            "security.protocol": "SASL_SSL",
            "sasl.username": "u",
            "linger.ms": 5,  # a producer setting given to a consumer is ignored
        },
        "consumer",
    )
    assert opts == {
        "isolation_level": "read_committed",
        "max_poll_records": 500,
        "security_protocol": "SASL_SSL",
        "sasl_plain_username": "u",
    }
    assert client_options({"batch.size": "65536"}, "producer") == {"max_batch_size": 65536}
    with pytest.raises(ValueError, match="unknown Kafka property"):
        client_options({"isolation.levle": "x"}, "consumer")
    with pytest.raises(ValueError, match="set by the connector"):
        client_options({"group.id": "g"}, "consumer")


def test_builders_validate() -> None:
    with pytest.raises(ValueError, match="bootstrap"):
        KafkaSource.builder().set_topics("t").set_value_only_deserializer("json").build()
    with pytest.raises(ValueError, match="deserializer"):
        KafkaSource.builder().set_bootstrap_servers("b").set_topics("t").build()
    with pytest.raises(ValueError, match="group"):
        (
            KafkaSource.builder()
            .set_bootstrap_servers("b")
            .set_topics("t")
            .set_value_only_deserializer("json")
            .set_starting_offsets(KafkaOffsetsInitializer.committed())
            .build()
        )
    with pytest.raises(ValueError, match="transactional_id_prefix"):
        (
            KafkaSink.builder()
            .set_bootstrap_servers("b")
            .set_record_serializer(topic="t", value_serializer="json")
            .set_delivery_guarantee("exactly-once")
            .build()
        )
    with pytest.raises(ValueError):
        KafkaSink.builder().set_delivery_guarantee("twice")
    sink = (
        KafkaSink.builder()
        .set_bootstrap_servers(["a:1", "b:2"])
        .set_record_serializer(topic="t", value_serializer="json")
        .set_delivery_guarantee("exactly-once")
        .set_transactional_id_prefix("job")
        .build()
    )
    assert sink.settings.bootstrap_servers == "a:1,b:2"
    assert sink.settings.producer_options["transaction_timeout_ms"] == 900_000


def test_a_failed_send_fails_every_later_call() -> None:
    from flowactors_kafka._writer import Broken

    broken = Broken("sink")
    broken.check()
    with pytest.raises(ConnectorError), broken.latch():
        raise ConnectorError("Kafka: sending failed", retriable=True)
    with pytest.raises(ConnectorError, match="lost to an earlier failure") as info:
        broken.check()
    assert info.value.retriable and "sending failed" in str(info.value)


# -- keyword constructors -------------------------------------------------------------------


def test_source_keywords_build_the_same_settings_as_the_builder() -> None:
    import orjson

    tag: OutputTag[Any] = OutputTag("bad")
    src = KafkaSource(
        bootstrap_servers=["a:1", "b:2"],
        topics="rides",
        group_id="g",
        starting_offsets={("rides", 0): 5},
        bounded="latest",
        value_deserializer=orjson.loads,
        properties={"max.poll.records": "50"},
        partition_discovery_interval=timedelta(seconds=2),
        malformed_record_output=tag,
        startup_timeout=timedelta(seconds=3),
        poll_timeout=250,
        commit_offsets_on_checkpoint=False,
    )
    built = (
        KafkaSource.builder()
        .set_bootstrap_servers(["a:1", "b:2"])
        .set_topics("rides")
        .set_group_id("g")
        .set_starting_offsets(KafkaOffsetsInitializer.offsets({TopicPartition("rides", 0): 5}))
        .set_bounded(KafkaOffsetsInitializer.latest())
        .set_value_only_deserializer("json")
        .set_property("max.poll.records", "50")
        .set_partition_discovery_interval(2000)
        .set_malformed_record_output(tag)
        .set_startup_timeout(3)
        .set_poll_timeout(250)
        .set_commit_offsets_on_checkpoint(False)
        .build()
    )
    for s in (src.settings, built.settings):
        assert s.bootstrap_servers == "a:1,b:2" and s.topics == ["rides"]
        assert s.starting.kind == "offsets"
        assert s.starting.fixed_offsets == {TopicPartition("rides", 0): 5}
        assert repr(s.stopping) == "KafkaOffsetsInitializer.latest()"
        assert s.value_fn is orjson.loads and s.consumer_options == {
            **FETCH_DEFAULTS,
            "max_poll_records": 50,
        }
        assert s.discovery_interval_ms == 2000 and s.startup_timeout_s == 3.0
        assert s.poll_timeout_ms == 250 and s.commit_offsets_on_checkpoint is False
        assert s.malformed_output is tag
    assert src.boundedness.value == "bounded"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("earliest", "KafkaOffsetsInitializer.earliest()"),
        ("latest", "KafkaOffsetsInitializer.latest()"),
        ("committed", "KafkaOffsetsInitializer.committed(KafkaOffsetsInitializer.earliest())"),
        (1_700_000_000_000, "KafkaOffsetsInitializer.timestamp(1700000000000)"),
    ],
)
def test_starting_offsets_by_name_and_timestamp(spec: Any, expected: str) -> None:
    src = KafkaSource(
        bootstrap_servers="b:1",
        topics=["t"],
        group_id="g",
        starting_offsets=spec,
        value_deserializer="str",
    )
    assert repr(src.settings.starting) == expected


def test_keys_and_values_or_whole_records() -> None:
    class Rec:
        topic, partition, offset, timestamp, headers = "t", 0, 7, 1, []
        key, value = b"k", b'{"a": 1}'

    kv = KafkaSource(
        bootstrap_servers="b:1", topics=["t"], key_deserializer="str", value_deserializer="json"
    )
    assert kv.settings.value_fn is None and kv.settings.decode(Rec()) == ("k", {"a": 1})
    whole = KafkaSource(
        bootstrap_servers="b:1", topics=["t"], deserializer=lambda r: (r.topic, r.offset)
    )
    assert whole.settings.decode(Rec()) == ("t", 7)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"topics": ["t"]}, ValueError, "needs a deserializer"),
        ({"value_deserializer": "json"}, ValueError, "topics=.* or topic_pattern"),
        (
            {"topics": ["t"], "topic_pattern": "t.*", "value_deserializer": "json"},
            ValueError,
            "exactly one",
        ),
        ({"topics": [], "value_deserializer": "json"}, ValueError, "at least one topic"),
        ({"topic_pattern": "(", "value_deserializer": "json"}, ValueError, "not a regex"),
        (
            {"topics": ["t"], "value_deserializer": "yaml"},
            ValueError,
            "unknown deserializer 'yaml'",
        ),
        (
            {"topics": ["t"], "deserializer": len, "value_deserializer": "json"},
            ValueError,
            "whole record",
        ),
        (
            {"topics": ["t"], "value_deserializer": "json", "starting_offsets": "first"},
            ValueError,
            "starting_offsets must be",
        ),
        (
            {"topics": ["t"], "value_deserializer": "json", "starting_offsets": "committed"},
            ValueError,
            "group_id=",
        ),
        (
            {"topics": ["t"], "value_deserializer": "json", "starting_offsets": {("t", 0): -1}},
            ValueError,
            "offset of",
        ),
        (
            {"topics": ["t"], "value_deserializer": "json", "poll_timeout": 0},
            ValueError,
            "poll_timeout must be at least 1 ms",
        ),
        (
            {"topics": ["t"], "value_deserializer": "json", "startup_timeout": 2.5},
            TypeError,
            "timedelta or an int",
        ),
        (
            {
                "topics": ["t"],
                "value_deserializer": "json",
                "dead_letter_topic": "d",
                "malformed_record_output": OutputTag("x"),
            },
            ValueError,
            "not both",
        ),
        (
            {"topics": ["t"], "value_deserializer": "json", "starting_ofsets": "latest"},
            TypeError,
            "starting_ofsets",
        ),
    ],
)
def test_source_refuses_bad_arguments_at_construction(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        KafkaSource(bootstrap_servers="b:1", **kwargs)


def test_sink_keywords() -> None:
    import orjson

    sink = KafkaSink(
        bootstrap_servers="b:1",
        topic="out",
        value_serializer=orjson.dumps,
        key_serializer="str",
        delivery_guarantee="exactly-once",
        transactional_id_prefix="job-1",
        properties={"linger.ms": "5"},
        startup_timeout=timedelta(seconds=4),
        transaction_pool_size=5,
    )
    s = sink.settings
    assert s.guarantee.value == "exactly-once" and s.transactional_id_prefix == "job-1"
    assert s.value_serializer is orjson.dumps and s.key_serializer is not None
    assert s.key_serializer("x") == b"x"
    assert s.producer_options == {
        "linger_ms": 5,
        "transaction_timeout_ms": 900_000,
        "max_batch_size": 256 * 1024,
    }
    assert s.startup_timeout_s == 4.0 and s.transaction_pool_size == 5


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"delivery_guarantee": "twice"}, ValueError, "delivery_guarantee must be"),
        ({"delivery_guarantee": "exactly-once"}, ValueError, "transactional_id_prefix=..."),
        ({"transactional_id_prefix": "a b"}, ValueError, "without whitespace"),
        ({"partitioner": "random"}, ValueError, "partitioner must be"),
        ({"transaction_pool_size": 2}, ValueError, "at least 3"),
        ({"value_serializer": "xml"}, ValueError, "unknown serializer 'xml'"),
        ({"topic": ""}, ValueError, "topic must be a non-empty name"),
        ({"delivery_guarante": "none"}, TypeError, "delivery_guarante"),
    ],
)
def test_sink_refuses_bad_arguments_at_construction(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    args: dict[str, Any] = {"topic": "o", "value_serializer": "json", **kwargs}
    with pytest.raises(error, match=message):
        KafkaSink(bootstrap_servers="b:1", **args)


def test_constructors_are_typed_for_mypy_strict() -> None:
    cases = Path(__file__).with_name("_typing_cases.py")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(cases)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2] / "connectors" / "kafka",
        timeout=110,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- properties the source and the sink own ------------------------------------------------


def source(**kwargs: Any) -> KafkaSource[Any]:
    args: dict[str, Any] = {"topics": ["t"], "value_deserializer": "json", **kwargs}
    return KafkaSource(bootstrap_servers="b:1", **args)


def sink(**kwargs: Any) -> KafkaSink[Any]:
    args: dict[str, Any] = {"topic": "o", "value_serializer": "json", **kwargs}
    return KafkaSink(bootstrap_servers="b:1", **args)


def test_group_id_property_is_the_group_id() -> None:
    assert source(properties={"group.id": "g"}).settings.group_id == "g"
    assert source(group_id="g", properties={"group_id": "g"}).settings.group_id == "g"
    with pytest.raises(ValueError, match=r"group.id='h' contradicts group_id='g'"):
        source(group_id="g", properties={"group.id": "h"})
    # the mapped group serves starting from committed offsets too
    mapped = source(starting_offsets="committed", properties={"group.id": "g"})
    assert mapped.settings.group_id == "g"


def test_auto_offset_reset_is_the_fallback_of_committed_offsets() -> None:
    s = source(
        group_id="g", starting_offsets="committed", properties={"auto.offset.reset": "latest"}
    )
    assert repr(s.settings.starting) == (
        "KafkaOffsetsInitializer.committed(KafkaOffsetsInitializer.latest())"
    )
    with pytest.raises(ValueError, match=r"has no effect: .*use starting_offsets='latest'"):
        source(properties={"auto.offset.reset": "latest"})
    with pytest.raises(ValueError, match="contradicts starting_offsets"):
        source(
            group_id="g",
            starting_offsets=KafkaOffsetsInitializer.committed("earliest"),
            properties={"auto.offset.reset": "latest"},
        )
    with pytest.raises(ValueError, match="'none' is not supported"):
        source(group_id="g", starting_offsets="committed", properties={"auto.offset.reset": "none"})


def test_auto_commit_is_refused_and_its_absence_accepted() -> None:
    with pytest.raises(ValueError, match=r"enable.auto.commit=true .*commit_offsets_on_checkpoint"):
        source(properties={"enable.auto.commit": "true"})
    assert source(properties={"enable.auto.commit": False}).settings.consumer_options == (
        FETCH_DEFAULTS
    )


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("value.deserializer", "pass value_deserializer="),
        ("key.deserializer", "pass key_deserializer="),
        ("session.timeout.ms", "assigns partitions to its subtasks itself"),
        ("partition.assignment.strategy", "no consumer-group membership"),
        ("group.instance.id", "no consumer-group membership"),
        ("transactional.id", "sink setting"),
        ("linger.ms", "no dead_letter_topic"),
        ("bootstrap.servers", "contradicts bootstrap_servers='b:1'"),
    ],
)
def test_source_refuses_properties_it_owns(key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        source(properties={key: "x:1"})


def test_producer_properties_go_to_the_dead_letter_producer() -> None:
    s = source(dead_letter_topic="dlq", properties={"linger.ms": "5", "fetch.max.bytes": "1000"})
    assert s.settings.producer_options == {"linger_ms": 5}
    assert s.settings.consumer_options == {**FETCH_DEFAULTS, "fetch_max_bytes": 1000}
    assert source(properties={"bootstrap.servers": "b:1"}).settings.consumer_options == (
        FETCH_DEFAULTS
    )


@pytest.mark.parametrize(
    ("kwargs", "properties", "message"),
    [
        ({}, {"transactional.id": "t"}, "pass transactional_id_prefix="),
        ({}, {"value.serializer": "x"}, "pass value_serializer="),
        ({}, {"key.serializer": "x"}, "pass key_serializer="),
        ({}, {"partitioner.class": "x"}, "pass partitioner="),
        ({}, {"isolation.level": "read_committed"}, "a sink does not read"),
        ({}, {"group.id": "g"}, "a sink does not read"),
        ({}, {"fetch.max.bytes": "1"}, "a sink only produces"),
        (
            {},
            {"transaction.timeout.ms": "60000"},
            "only applies to delivery_guarantee='exactly-once'",
        ),
        ({"delivery_guarantee": "at-least-once"}, {"acks": 1}, "needs acks=all"),
        (
            {"delivery_guarantee": "exactly-once", "transactional_id_prefix": "p"},
            {"enable.idempotence": "false"},
            "idempotent producer",
        ),
        ({}, {"bootstrap.servers": "elsewhere:1"}, "contradicts bootstrap_servers"),
    ],
)
def test_sink_refuses_properties_it_owns(
    kwargs: dict[str, Any], properties: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sink(properties=properties, **kwargs)


def test_sink_accepts_properties_that_agree() -> None:
    s = sink(
        delivery_guarantee="exactly-once",
        transactional_id_prefix="p",
        properties={"acks": "all", "transaction.timeout.ms": "60000", "enable.idempotence": "true"},
    )
    assert s.settings.producer_options["transaction_timeout_ms"] == 60000
    assert sink(properties={"acks": 0}).settings.producer_options["acks"] == 0


# -- fatal or retriable ----------------------------------------------------------------------


def test_only_errors_no_retry_can_heal_are_fatal() -> None:
    import ssl

    import aiokafka.errors as e
    from flowactors_kafka._client import translate_error

    retriable = [
        e.KafkaConnectionError("Unable to bootstrap"),
        e.KafkaTimeoutError(),
        e.NotLeaderForPartitionError(),
        e.RequestTimedOutError(),
        e.ProducerFenced(),  # a restart from the last checkpoint writes the records again
        e.InvalidProducerEpoch(),
        e.KafkaError("the producer was closed after a failure"),
        ConnectionResetError("reset by peer"),
        TimeoutError(),
    ]
    for exc in retriable:
        assert translate_error(exc, "x").retriable is True, exc
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "self-signed certificate in certificate chain"
    fatal = {
        verify: "not trusted by ssl_cafile='ca.pem': self-signed certificate",
        e.SaslAuthenticationFailed(): "check sasl_mechanism",
        e.TopicAuthorizationFailedError(): "grant the client's principal",
        e.MessageSizeTooLargeError(): "max.message.bytes",
        e.UnsupportedVersionError(): "fix the settings",
        e.InvalidTransactionTimeout(): "transaction.max.timeout.ms",
    }
    for exc, hint in fatal.items():
        err = translate_error(exc, "x", trust="ssl_cafile='ca.pem'")
        assert err.retriable is False and hint in str(err), str(err)
        assert err.__cause__ is exc
    # The TLS error behind aiokafka's generic bootstrap error decides.
    err = translate_error(e.KafkaConnectionError("Unable to bootstrap"), "x", also=[verify])
    assert err.retriable is False and "not trusted by the client" in str(err)


def test_dead_letters_fit_the_limit_and_say_what_was_cut() -> None:
    from flowactors_kafka._client import record_size
    from flowactors_kafka._dead_letters import MAX_REASON_BYTES, _fit, bounded_reason

    assert bounded_reason("short") == b"short"
    long = bounded_reason("é" * 5000)
    assert len(long) <= MAX_REASON_BYTES and long.decode().endswith("…")
    headers = [("flowactors.error", b"boom")]
    assert _fit(b"k", b"v" * 100, headers, 10_000) == (b"k", b"v" * 100, headers)
    key, value, cut_headers = _fit(b"k", b"v" * 50_000, headers, 10_000)
    assert key == b"k" and value is not None and 9_000 < len(value) < 10_000
    assert record_size(key, value, cut_headers) <= 10_000
    assert dict(cut_headers)["flowactors.truncated"] == b"value"
    assert dict(cut_headers)["flowactors.original-size"] == b"50000"
    key, value, cut_headers = _fit(b"k" * 50_000, b"v" * 50_000, headers, 10_000)
    assert key is not None and value is not None
    assert record_size(key, value, cut_headers) <= 10_000
    assert dict(cut_headers)["flowactors.truncated"] == b"key,value"


def test_records_per_poll_is_bounded_and_configurable() -> None:
    assert source().settings.max_records_per_poll == 1000
    assert source(max_records_per_poll=50).settings.max_records_per_poll == 50
    built = (
        KafkaSource.builder()
        .set_bootstrap_servers("b:1")
        .set_topics("t")
        .set_value_only_deserializer("json")
        .set_max_records_per_poll(7)
        .build()
    )
    assert built.settings.max_records_per_poll == 7
    with pytest.raises(ValueError, match="max_records_per_poll must be at least 1"):
        source(max_records_per_poll=0)
