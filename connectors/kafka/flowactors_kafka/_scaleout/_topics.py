"""How the internal topics of a scaled-out job are created.

Two kinds, as in Kafka Streams:

- **repartition** topics (``<application_id>-<uid>-repartition``) carry records
  between stages. Their readers delete what they committed past (``DeleteRecords``,
  see the worker's purge loop), so they are never expired by time:
  ``retention.ms=-1``. Time-based retention would be wrong twice over: records carry
  their *event* timestamps, which for a replay of old data lie years back, and the
  broker would drop whole segments before they were read. Segments are 50 MB so that
  the purged part of a partition is freed soon.
- **changelog** topics (``<application_id>-<stage>-changelog``) hold the latest value
  of each state entry: ``cleanup.policy=compact``.

Properties of ``enable_scale_out`` set them: ``replication.factor`` (default 1),
``min.insync.replicas`` (default: the broker's), and any topic config prefixed with
``topic.`` (Kafka Streams' prefix), e.g. ``topic.segment.ms`` or
``topic.max.message.bytes``, for every internal topic. ``cleanup.policy`` and the
repartition topics' ``retention.ms`` are what the protocol rests on and cannot be
set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["InternalTopicSettings"]

TOPIC_PREFIX = "topic."
_REPARTITION = {"cleanup.policy": "delete", "retention.ms": "-1", "segment.bytes": "52428800"}
_CHANGELOG = {"cleanup.policy": "compact"}
#: Configs the protocol needs as they are.
_FIXED = ("cleanup.policy",)


@dataclass(frozen=True)
class InternalTopicSettings:
    replication_factor: int = 1
    #: Topic configs the user gave, for every internal topic.
    configs: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def take_from(cls, properties: dict[str, Any]) -> InternalTopicSettings:
        """The settings in ``properties``, removed from it (the rest are client properties)."""
        replication_factor = int(properties.pop("replication.factor", 1))
        configs: dict[str, str] = {}
        min_isr = properties.pop("min.insync.replicas", None)
        if min_isr is not None:
            configs["min.insync.replicas"] = str(int(min_isr))
        for key in [k for k in properties if k.startswith(TOPIC_PREFIX)]:
            name = key.removeprefix(TOPIC_PREFIX)
            if name in _FIXED:
                raise ValueError(
                    f"scale-out property {key!r}: internal topics need their cleanup policy "
                    "(repartition topics are purged by their readers, changelogs compacted)"
                )
            value = properties.pop(key)
            configs[name] = str(value).lower() if isinstance(value, bool) else str(value)
        if configs.get("retention.ms") not in (None, "-1"):
            raise ValueError(
                f"scale-out property 'topic.retention.ms={configs['retention.ms']}': "
                "repartition topics are never expired by time (their records carry event "
                "timestamps); their readers delete what they committed past. Set "
                "repartition.purge.interval.ms to purge more often"
            )
        return cls(replication_factor, configs)

    def repartition(self) -> dict[str, str]:
        return {**_REPARTITION, **self.configs}

    def changelog(self) -> dict[str, str]:
        return {**self.configs, **_CHANGELOG}
