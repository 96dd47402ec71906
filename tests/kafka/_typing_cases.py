"""What mypy --strict infers for the Kafka constructors (checked by test_unit, never run)."""

from __future__ import annotations

from typing import Any, assert_type

import orjson
from flowactors_kafka import KafkaRecord, KafkaSink, KafkaSource


def parse(data: bytes) -> int:
    return int(data)


def whole(record: KafkaRecord) -> tuple[str, int]:
    return record.topic, record.offset


def render(value: int) -> bytes:
    return str(value).encode()


def cases() -> None:
    """Never called: mypy reads it."""
    BS = "localhost:9092"
    assert_type(
        KafkaSource(bootstrap_servers=BS, topics=["t"], value_deserializer="json"), KafkaSource[Any]
    )
    assert_type(
        KafkaSource(bootstrap_servers=BS, topics=["t"], value_deserializer=orjson.loads),
        KafkaSource[Any],
    )
    assert_type(
        KafkaSource(bootstrap_servers=BS, topics=["t"], value_deserializer=parse), KafkaSource[int]
    )
    assert_type(
        KafkaSource(
            bootstrap_servers=BS, topics=["t"], key_deserializer="str", value_deserializer=parse
        ),
        KafkaSource[tuple[Any, int]],
    )
    assert_type(
        KafkaSource(bootstrap_servers=BS, topics=["t"], deserializer=whole),
        KafkaSource[tuple[str, int]],
    )
    assert_type(KafkaSource.builder().set_topics("t").build(), KafkaSource[Any])
    assert_type(KafkaSink(bootstrap_servers=BS, topic="o", value_serializer="json"), KafkaSink[Any])
    assert_type(KafkaSink(bootstrap_servers=BS, topic="o", value_serializer=render), KafkaSink[int])
