"""Where a Kafka source starts reading, and where a bounded one stops (Flink's
``OffsetsInitializer``).

>>> KafkaOffsetsInitializer.earliest()
KafkaOffsetsInitializer.earliest()
>>> KafkaOffsetsInitializer.committed(KafkaOffsetsInitializer.latest())
KafkaOffsetsInitializer.committed(KafkaOffsetsInitializer.latest())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal, TypeAlias

from flowactors_kafka._client import Consumer, TopicPartition


class KafkaOffsetsInitializer:
    """Resolves an offset for each partition: earliest, latest, committed, by timestamp, given.

    Build one with the static methods; ``resolve`` is called by the source's readers.
    """

    def __init__(
        self,
        kind: str,
        *,
        timestamp_ms: int | None = None,
        offsets: Mapping[TopicPartition, int] | None = None,
        fallback: KafkaOffsetsInitializer | None = None,
    ) -> None:
        self.kind = kind
        self.timestamp_ms = timestamp_ms
        self.fixed_offsets = {TopicPartition(*tp): int(o) for tp, o in (offsets or {}).items()}
        self.fallback = fallback

    @staticmethod
    def earliest() -> KafkaOffsetsInitializer:
        """The first offset still in the log."""
        return KafkaOffsetsInitializer("earliest")

    @staticmethod
    def latest() -> KafkaOffsetsInitializer:
        """The end of the log when the reader starts (only records written later are read;
        as a bounded stop: exactly what was there when the job started)."""
        return KafkaOffsetsInitializer("latest")

    @staticmethod
    def committed(fallback: KafkaOffsetsInitializer | str = "earliest") -> KafkaOffsetsInitializer:
        """The consumer group's committed offset (needs ``set_group_id``), else ``fallback``
        (``"earliest"``, ``"latest"`` or another initializer)."""
        return KafkaOffsetsInitializer("committed", fallback=_initializer(fallback))

    @staticmethod
    def timestamp(timestamp: int | datetime) -> KafkaOffsetsInitializer:
        """The first record with a timestamp at or after ``timestamp`` (ms since the epoch, or
        an aware ``datetime``); the end of the log where there is none."""
        ms = int(timestamp.timestamp() * 1000) if isinstance(timestamp, datetime) else timestamp
        return KafkaOffsetsInitializer("timestamp", timestamp_ms=int(ms))

    @staticmethod
    def offsets(
        offsets: Mapping[TopicPartition, int],
        fallback: KafkaOffsetsInitializer | str = "earliest",
    ) -> KafkaOffsetsInitializer:
        """The given offset per ``TopicPartition(topic, partition)``; ``fallback`` for others."""
        return KafkaOffsetsInitializer("offsets", offsets=offsets, fallback=_initializer(fallback))

    def __repr__(self) -> str:
        if self.kind == "committed":
            return f"KafkaOffsetsInitializer.committed({self.fallback!r})"
        if self.kind == "timestamp":
            return f"KafkaOffsetsInitializer.timestamp({self.timestamp_ms})"
        if self.kind == "offsets":
            return f"KafkaOffsetsInitializer.offsets({self.fixed_offsets!r}, {self.fallback!r})"
        return f"KafkaOffsetsInitializer.{self.kind}()"

    async def resolve(
        self, consumer: Consumer, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """An offset for every partition in ``partitions``."""
        tps = list(partitions)
        if not tps:
            return {}
        if self.kind == "earliest":
            return await consumer.beginning_offsets(tps)
        if self.kind == "latest":
            return await consumer.end_offsets(tps)
        if self.kind == "timestamp":
            assert self.timestamp_ms is not None
            found = await consumer.offsets_for_times(tps, self.timestamp_ms)
            missing = [tp for tp, o in found.items() if o is None]
            ends = await consumer.end_offsets(missing) if missing else {}
            return {tp: ends[tp] if o is None else o for tp, o in found.items()}
        out: dict[TopicPartition, int] = {}
        if self.kind == "committed":
            if consumer.group_id is None:
                raise ValueError("KafkaOffsetsInitializer.committed() needs set_group_id(...)")
            for tp, offset in (await consumer.committed(tps)).items():
                if offset is not None:
                    out[tp] = offset
        elif self.kind == "offsets":
            out = {tp: self.fixed_offsets[tp] for tp in tps if tp in self.fixed_offsets}
        else:  # pragma: no cover - the constructors above are the only way in
            raise ValueError(f"unknown offsets initializer {self.kind!r}")
        rest = [tp for tp in tps if tp not in out]
        if rest:
            fallback = self.fallback or KafkaOffsetsInitializer.earliest()
            out.update(await fallback.resolve(consumer, rest))
        return out


def _initializer(spec: KafkaOffsetsInitializer | str) -> KafkaOffsetsInitializer:
    if isinstance(spec, KafkaOffsetsInitializer):
        return spec
    if spec in ("earliest", "latest"):
        return KafkaOffsetsInitializer(spec)
    raise ValueError(f"fallback must be 'earliest', 'latest' or an initializer, got {spec!r}")


#: What ``KafkaSource(starting_offsets=..., bounded=...)`` takes: a name, a timestamp in
#: milliseconds (or an aware ``datetime``), ``{(topic, partition): offset}``, or an initializer.
OffsetsSpec: TypeAlias = (
    Literal["earliest", "latest", "committed"]
    | int
    | datetime
    | Mapping[tuple[str, int], int]
    | KafkaOffsetsInitializer
)


def offsets_of(spec: OffsetsSpec, what: str) -> KafkaOffsetsInitializer:
    """The initializer for a user's ``starting_offsets`` or ``bounded`` argument.

    >>> offsets_of(1_700_000_000_000, "starting_offsets")
    KafkaOffsetsInitializer.timestamp(1700000000000)
    """
    if isinstance(spec, KafkaOffsetsInitializer):
        return spec
    if isinstance(spec, str):
        if spec == "committed":
            return KafkaOffsetsInitializer.committed()
        if spec in ("earliest", "latest"):
            return KafkaOffsetsInitializer(spec)
        raise ValueError(
            f"{what} must be 'earliest', 'latest', 'committed', a timestamp in ms, "
            f"a dict {{(topic, partition): offset}} or a KafkaOffsetsInitializer; got {spec!r}"
        )
    if isinstance(spec, bool):
        raise TypeError(f"{what} must not be a bool, got {spec!r}")
    if isinstance(spec, int | datetime):
        if isinstance(spec, int) and spec < 0:
            raise ValueError(f"{what}: a timestamp must be >= 0 ms since the epoch, got {spec}")
        return KafkaOffsetsInitializer.timestamp(spec)
    if isinstance(spec, Mapping):
        offsets: dict[TopicPartition, int] = {}
        for key, offset in spec.items():
            if (
                not isinstance(key, tuple)
                or len(key) != 2
                or not isinstance(key[0], str)
                or not isinstance(key[1], int)
            ):
                raise ValueError(f"{what}: keys must be (topic, partition) tuples, got {key!r}")
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                raise ValueError(f"{what}: offset of {key!r} must be an int >= 0, got {offset!r}")
            offsets[TopicPartition(*key)] = offset
        return KafkaOffsetsInitializer.offsets(offsets)
    raise TypeError(f"{what}: unsupported value {spec!r}")
