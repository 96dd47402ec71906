"""The plain data the connector and its users share: topic-partitions, fetched records, headers.

Nothing here depends on aiokafka's types except :func:`default_partition`, which borrows its
murmur2 so that keyed records land where Kafka's Java producer would put them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from aiokafka.partitioner import murmur2 as _murmur2


class TopicPartition(NamedTuple):
    """One partition of a topic: the unit of parallelism (a split) of a Kafka source.

    A plain named tuple, equal to aiokafka's own ``TopicPartition`` with the same fields.
    """

    topic: str
    partition: int


class KafkaRecord(Protocol):
    """What a record deserializer sees: one record as the consumer fetched it."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


Headers = list[tuple[str, bytes]]


def default_partition(key: bytes, num_partitions: int) -> int:
    """The partition Kafka's Java producer picks for ``key`` (murmur2), for co-partitioning
    with other Kafka clients."""
    return (int(_murmur2(key)) & 0x7FFFFFFF) % num_partitions
