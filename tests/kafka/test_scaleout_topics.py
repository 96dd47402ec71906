"""How internal topics are configured (pure: no broker)."""

from __future__ import annotations

import pytest
from flowactors_kafka._scaleout._topics import InternalTopicSettings


def test_repartition_topics_never_expire_by_time_and_changelogs_are_compacted() -> None:
    props: dict[str, object] = {"security.protocol": "PLAINTEXT"}
    settings = InternalTopicSettings.take_from(props)
    assert settings.replication_factor == 1
    assert settings.repartition() == {
        "cleanup.policy": "delete",
        "retention.ms": "-1",
        "segment.bytes": "52428800",
    }
    assert settings.changelog() == {"cleanup.policy": "compact"}
    assert props == {"security.protocol": "PLAINTEXT"}  # client properties stay


def test_topic_prefixed_properties_configure_every_internal_topic() -> None:
    props: dict[str, object] = {
        "replication.factor": "3",
        "min.insync.replicas": 2,
        "topic.segment.bytes": 1 << 20,
        "topic.compression.type": "zstd",
        "topic.message.timestamp.type": "LogAppendTime",
        "client.id": "orders",
    }
    settings = InternalTopicSettings.take_from(props)
    assert settings.replication_factor == 3
    assert settings.repartition() == {
        "cleanup.policy": "delete",
        "retention.ms": "-1",
        "segment.bytes": "1048576",
        "min.insync.replicas": "2",
        "compression.type": "zstd",
        "message.timestamp.type": "LogAppendTime",
    }
    assert settings.changelog() == {
        "cleanup.policy": "compact",
        "segment.bytes": "1048576",
        "min.insync.replicas": "2",
        "compression.type": "zstd",
        "message.timestamp.type": "LogAppendTime",
    }
    assert props == {"client.id": "orders"}


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("topic.cleanup.policy", "delete", "need their cleanup policy"),
        ("topic.retention.ms", 86_400_000, "never expired by time"),
    ],
)
def test_what_the_protocol_rests_on_cannot_be_set(key: str, value: object, says: str) -> None:
    with pytest.raises(ValueError, match=says) as raised:
        InternalTopicSettings.take_from({key: value})
    assert key in str(raised.value)
