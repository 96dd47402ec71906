"""Kafka client properties that the source or the sink owns: mapped onto its arguments, or refused.

Some properties name things the connector decides itself: the consumer group, where reading
starts, offset commits, (de)serializers, transactional ids. aiokafka would take them and the
connector would then override them, or they would have no effect at all (group membership
settings on a source that assigns partitions itself). None is ever accepted and ignored:

- a property that says the same as an argument is mapped onto it when that is unambiguous
  (``group.id`` without ``group_id``; ``auto.offset.reset`` as the fallback of
  ``starting_offsets="committed"``), and accepted when it agrees with it;
- anything else is refused at construction with a ``ValueError`` naming the argument to use.

Keys are compared after normalization (``"group.id"``, ``"group_id"`` and ``"group-id"`` are
one key), as the clients take them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowactors_kafka._client import client_options, normalize_key, role_of
from flowactors_kafka._offsets import KafkaOffsetsInitializer

#: Consumer-group membership settings: the source assigns partitions itself (no group
#: membership, no rebalancing), so they could have no effect.
_MEMBERSHIP = {
    "partition_assignment_strategy",
    "session_timeout_ms",
    "heartbeat_interval_ms",
    "max_poll_interval_ms",
    "rebalance_timeout_ms",
    "group_instance_id",
}


def _flag(raw_key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"Kafka property {raw_key!r} must be true or false, got {value!r}")


def _same_servers(a: Any, b: str) -> bool:
    given = a if isinstance(a, str) else ",".join(a) if isinstance(a, list | tuple) else None
    return given is not None and given.replace(" ", "") == b.replace(" ", "")


@dataclass
class SourceProperties:
    """What the source runs with after its properties were mapped."""

    consumer_options: dict[str, Any]
    producer_options: dict[str, Any]
    group_id: str | None
    starting: KafkaOffsetsInitializer


def source_properties(
    properties: Mapping[str, Any],
    *,
    bootstrap_servers: str,
    group_id: str | None,
    starting: KafkaOffsetsInitializer,
    starting_named: bool,
    dead_letters: bool,
) -> SourceProperties:
    """Map or refuse the source's own properties, then split the rest into client options.

    ``starting_named``: ``starting_offsets`` was the bare name ``"committed"`` (its fallback
    was not chosen, so ``auto.offset.reset`` may choose it).
    """
    rest: dict[str, Any] = {}
    for raw_key, value in properties.items():
        key = normalize_key(raw_key)
        if key == "group_id":
            if not isinstance(value, str) or not value:
                raise ValueError(f"Kafka property {raw_key!r} must be a group name, got {value!r}")
            if group_id is not None and group_id != value:
                raise ValueError(
                    f"Kafka property {raw_key}={value!r} contradicts group_id={group_id!r}: "
                    "pass the group as group_id=... only"
                )
            group_id = value
        elif key == "auto_offset_reset":
            if value not in ("earliest", "latest"):
                raise ValueError(
                    f"Kafka property {raw_key}={value!r} is not supported: the source starts "
                    "where starting_offsets=... says ('earliest', 'latest', 'committed', a "
                    "timestamp or offsets)"
                )
            if starting.kind != "committed":
                raise ValueError(
                    f"Kafka property {raw_key}={value!r} has no effect: the source starts where "
                    f"starting_offsets says ({starting!r}); use starting_offsets={value!r}, or "
                    f"starting_offsets='committed' to fall back to {value!r} without a "
                    "committed offset"
                )
            fallback = starting.fallback.kind if starting.fallback else "earliest"
            if starting_named:
                starting = KafkaOffsetsInitializer.committed(value)
            elif fallback != value:
                raise ValueError(
                    f"Kafka property {raw_key}={value!r} contradicts starting_offsets="
                    f"{starting!r}: choose the fallback there only"
                )
        elif key == "enable_auto_commit":
            if _flag(raw_key, value):
                raise ValueError(
                    f"Kafka property {raw_key}=true is not supported: the source commits "
                    "offsets to its group when a checkpoint completes "
                    "(commit_offsets_on_checkpoint=True, the default, with group_id=...); "
                    "periodic commits would cover records the job has not processed"
                )
            # false says what the source does anyway: it never commits on a timer.
        elif key in ("key_deserializer", "value_deserializer"):
            raise ValueError(
                f"Kafka property {raw_key!r} is not used: pass {key}=... (a callable or "
                "'json', 'str', 'bytes') to KafkaSource"
            )
        elif key == "bootstrap_servers":
            if not _same_servers(value, bootstrap_servers):
                raise ValueError(
                    f"Kafka property {raw_key}={value!r} contradicts bootstrap_servers="
                    f"{bootstrap_servers!r}: pass the servers as bootstrap_servers=... only"
                )
        elif key in _MEMBERSHIP:
            raise ValueError(
                f"Kafka property {raw_key!r} would have no effect: the source assigns "
                "partitions to its subtasks itself (no consumer-group membership, no "
                "rebalancing); parallelism decides who reads what"
            )
        elif key in ("transactional_id", "key_serializer", "value_serializer", "partitioner"):
            raise ValueError(f"Kafka property {raw_key!r} is a sink setting, not a source's")
        else:
            rest[raw_key] = value
    producer_hint = (
        None
        if dead_letters
        else "the source writes only dead letters, and has no dead_letter_topic=..."
    )
    consumer = client_options(rest, "consumer", foreign=producer_hint)
    producer = client_options(
        {k: v for k, v in rest.items() if role_of(normalize_key(k)) != "consumer"}, "producer"
    )
    return SourceProperties(consumer, producer, group_id, starting)


def sink_properties(
    properties: Mapping[str, Any], *, bootstrap_servers: str, guarantee: str
) -> dict[str, Any]:
    """Map or refuse the sink's own properties; the producer options of the rest."""
    rest: dict[str, Any] = {}
    for raw_key, value in properties.items():
        key = normalize_key(raw_key)
        if key == "transactional_id":
            raise ValueError(
                f"Kafka property {raw_key!r} is not used: the exactly-once sink names its "
                "transactions <prefix>-<subtask>-<n>; pass transactional_id_prefix=..."
            )
        if key in ("key_serializer", "value_serializer"):
            raise ValueError(
                f"Kafka property {raw_key!r} is not used: pass {key}=... (a callable or "
                "'json', 'str', 'bytes') to KafkaSink"
            )
        if key in ("partitioner", "partitioner_class"):
            raise ValueError(
                f"Kafka property {raw_key!r} is not used: pass partitioner=None | 'fixed' | "
                "fn(record, key, value, topic, partitions) to KafkaSink"
            )
        if key == "isolation_level":
            raise ValueError(
                f"Kafka property {raw_key!r} is a consumer setting and a sink does not read: "
                "set it on the readers of the topic (read_committed for an exactly-once sink)"
            )
        if key == "transaction_timeout_ms" and guarantee != "exactly-once":
            raise ValueError(
                f"Kafka property {raw_key!r} only applies to delivery_guarantee='exactly-once' "
                f"(this sink's is {guarantee!r})"
            )
        if key == "acks" and guarantee != "none" and str(value) not in ("all", "-1"):
            raise ValueError(
                f"Kafka property {raw_key}={value!r} contradicts delivery_guarantee="
                f"{guarantee!r}, which needs acks=all; use delivery_guarantee='none' for "
                "fire-and-forget writes"
            )
        if (
            key == "enable_idempotence"
            and guarantee == "exactly-once"
            and not _flag(raw_key, value)
        ):
            raise ValueError(
                f"Kafka property {raw_key}=false contradicts delivery_guarantee='exactly-once' "
                "(transactions need the idempotent producer)"
            )
        if key == "bootstrap_servers":
            if not _same_servers(value, bootstrap_servers):
                raise ValueError(
                    f"Kafka property {raw_key}={value!r} contradicts bootstrap_servers="
                    f"{bootstrap_servers!r}: pass the servers as bootstrap_servers=... only"
                )
            continue
        if key in ("group_id", "auto_offset_reset", "enable_auto_commit") or key in _MEMBERSHIP:
            raise ValueError(
                f"Kafka property {raw_key!r} is a consumer setting; a sink does not read"
            )
        rest[raw_key] = value
    return client_options(
        rest, "producer", foreign="a sink only produces (consumer settings have no effect)"
    )
