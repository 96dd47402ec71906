"""``KafkaSource``: what to read and how, validated when it is constructed.

The keyword constructor is the main path; :class:`KafkaSourceBuilder` (Flink's setters) is a
thin alias that collects the same arguments and ends in the constructor. The reading itself is
:mod:`flowactors_kafka._reader`'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Generic, overload

from typing_extensions import TypeVar

from flowactors import OutputTag
from flowactors.spi import Boundedness, Source, SourceReader, SourceReaderContext
from flowactors_kafka import _config
from flowactors_kafka._client import KafkaRecord
from flowactors_kafka._offsets import KafkaOffsetsInitializer, OffsetsSpec, offsets_of
from flowactors_kafka._properties import source_properties
from flowactors_kafka._reader import KafkaSourceReader, _Settings
from flowactors_kafka._serialization import Deserializer, DeserializerName, deserializer

T = TypeVar("T", default=Any)
V = TypeVar("V", default=Any)

#: Fetch sizes unless the properties say otherwise: 1 MiB per partition (aiokafka's and
#: Kafka's default) and 16 MiB per fetch response (aiokafka's is 50 MiB): with many
#: partitions, what a reader holds fetched stays bounded without slowing a few partitions.
FETCH_DEFAULTS = {"max_partition_fetch_bytes": 1 << 20, "fetch_max_bytes": 16 << 20}


class KafkaSource(Source[T]):
    """Reads Kafka topics (see :mod:`flowactors_kafka._reader` for how).

    >>> import orjson
    >>> src = KafkaSource(bootstrap_servers="localhost:9092", topics=["rides"], group_id="g",
    ...                   starting_offsets="earliest", value_deserializer=orjson.loads)
    >>> src.boundedness.value
    'unbounded'

    Records are ``value_deserializer(value)``; with ``key_deserializer`` as well they are
    ``(key, value)`` tuples (a missing key stays ``None``); with ``deserializer`` they are
    ``deserializer(record)`` of the whole record (topic, partition, offset, timestamp, key,
    value, headers: Flink's ``KafkaRecordDeserializationSchema``). Deserializers are callables
    or the names ``"json"`` (orjson), ``"str"`` and ``"bytes"``.

    - ``topics`` (a name or a list) or ``topic_pattern`` (a regex matching whole names; topics
      created later are picked up at the next discovery).
    - ``group_id``: the consumer group whose committed offsets ``"committed"`` starts from and
      to which offsets are committed when a checkpoint completes (monitoring only).
    - ``starting_offsets``: where a fresh job starts (restored jobs start from the snapshot):
      ``"earliest"`` (default), ``"latest"``, ``"committed"`` (falling back to earliest), a
      timestamp in ms, ``{(topic, partition): offset}``, or a ``KafkaOffsetsInitializer``.
    - ``bounded``: stop at these offsets and end the input (``"latest"``: what was there when
      the job started); ``None`` (default) reads without end.
    - ``properties``: Kafka client properties (``security.protocol``, ``ssl_context``,
      ``sasl.mechanism``, ``isolation.level``, ...). Those the source owns are mapped onto its
      arguments or refused (see ``docs/kafka.md``).
    - ``dead_letter_topic`` / ``malformed_record_output``: where records that do not
      deserialize go instead of failing the job (one of the two).
    - Durations take a ``timedelta`` or milliseconds: ``partition_discovery_interval``
      (default 5 min, 0 turns discovery off), ``startup_timeout`` (how long to keep trying
      to reach the broker and find the topics at start, default 30 s), ``poll_timeout`` (the
      longest one wait for records lasts, default 100 ms).
    - ``max_records_per_poll`` (default 1,000): the most records a reader takes from the
      consumer at a time, and so the most it holds fetched but not yet decoded and emitted.
      Fetch sizes default to 1 MiB per partition and 16 MiB per fetch
      (``max.partition.fetch.bytes``, ``fetch.max.bytes`` in ``properties`` change them).
    """

    @overload
    def __init__(
        self,
        *,
        bootstrap_servers: str | Sequence[str],
        topics: str | Sequence[str] | None = None,
        topic_pattern: str | re.Pattern[str] | None = None,
        group_id: str | None = None,
        starting_offsets: OffsetsSpec = "earliest",
        bounded: OffsetsSpec | None = None,
        value_deserializer: Callable[[bytes], T] | DeserializerName | None = None,
        key_deserializer: None = None,
        deserializer: Callable[[KafkaRecord], T] | None = None,
        properties: Mapping[str, Any] | None = None,
        partition_discovery_interval: timedelta | int = 300_000,
        dead_letter_topic: str | None = None,
        malformed_record_output: OutputTag[Any] | None = None,
        client_id_prefix: str = "flowactors",
        startup_timeout: timedelta | int = 30_000,
        poll_timeout: timedelta | int = 100,
        commit_offsets_on_checkpoint: bool = True,
        max_records_per_poll: int = 1000,
    ) -> None: ...

    @overload
    def __init__(
        self: KafkaSource[tuple[Any, V]],
        *,
        bootstrap_servers: str | Sequence[str],
        topics: str | Sequence[str] | None = None,
        topic_pattern: str | re.Pattern[str] | None = None,
        group_id: str | None = None,
        starting_offsets: OffsetsSpec = "earliest",
        bounded: OffsetsSpec | None = None,
        value_deserializer: Callable[[bytes], V] | DeserializerName,
        key_deserializer: Callable[[bytes], Any] | DeserializerName,
        deserializer: None = None,
        properties: Mapping[str, Any] | None = None,
        partition_discovery_interval: timedelta | int = 300_000,
        dead_letter_topic: str | None = None,
        malformed_record_output: OutputTag[Any] | None = None,
        client_id_prefix: str = "flowactors",
        startup_timeout: timedelta | int = 30_000,
        poll_timeout: timedelta | int = 100,
        commit_offsets_on_checkpoint: bool = True,
        max_records_per_poll: int = 1000,
    ) -> None: ...

    def __init__(
        self,
        *,
        bootstrap_servers: str | Sequence[str],
        topics: str | Sequence[str] | None = None,
        topic_pattern: str | re.Pattern[str] | None = None,
        group_id: str | None = None,
        starting_offsets: OffsetsSpec = "earliest",
        bounded: OffsetsSpec | None = None,
        value_deserializer: Deserializer | DeserializerName | None = None,
        key_deserializer: Deserializer | DeserializerName | None = None,
        deserializer: Callable[[KafkaRecord], Any] | None = None,
        properties: Mapping[str, Any] | None = None,
        partition_discovery_interval: timedelta | int = 300_000,
        dead_letter_topic: str | None = None,
        malformed_record_output: OutputTag[Any] | None = None,
        client_id_prefix: str = "flowactors",
        startup_timeout: timedelta | int = 30_000,
        poll_timeout: timedelta | int = 100,
        commit_offsets_on_checkpoint: bool = True,
        max_records_per_poll: int = 1000,
    ) -> None:
        servers = _config.servers(bootstrap_servers)
        topic_list, pattern = _topics(topics, topic_pattern)
        if group_id is not None:
            _config.name(group_id, "group_id")
        decode, value_fn = _decoder(value_deserializer, key_deserializer, deserializer)
        if dead_letter_topic is not None:
            _config.name(dead_letter_topic, "dead_letter_topic")
            if malformed_record_output is not None:
                raise ValueError(
                    "KafkaSource: give dead_letter_topic or malformed_record_output, not both"
                )
        if malformed_record_output is not None and not isinstance(
            malformed_record_output, OutputTag
        ):
            raise TypeError(
                f"malformed_record_output must be an OutputTag, got {malformed_record_output!r}"
            )
        props = dict(properties or {})
        mapped = source_properties(
            props,
            bootstrap_servers=servers,
            group_id=group_id,
            starting=offsets_of(starting_offsets, "starting_offsets"),
            starting_named=isinstance(starting_offsets, str) and starting_offsets == "committed",
            dead_letters=dead_letter_topic is not None,
        )
        group_id, starting = mapped.group_id, mapped.starting
        stopping = None if bounded is None else offsets_of(bounded, "bounded")
        if group_id is None and "committed" in (
            starting.kind,
            stopping.kind if stopping else None,
        ):
            raise ValueError(
                "KafkaSource: committed offsets need a consumer group: pass group_id=..."
            )
        self.settings: _Settings[T] = _Settings(
            bootstrap_servers=servers,
            topics=topic_list,
            pattern=pattern,
            group_id=group_id,
            starting=starting,
            stopping=stopping,
            decode=decode,
            value_fn=value_fn,
            consumer_options={**FETCH_DEFAULTS, **mapped.consumer_options},
            producer_options=mapped.producer_options,
            discovery_interval_ms=_config.millis(
                partition_discovery_interval, "partition_discovery_interval"
            ),
            dead_letter_topic=dead_letter_topic,
            malformed_output=malformed_record_output,
            client_id_prefix=_config.name(client_id_prefix, "client_id_prefix"),
            startup_timeout_s=_config.millis(startup_timeout, "startup_timeout", minimum=1) / 1000,
            poll_timeout_ms=_config.millis(poll_timeout, "poll_timeout", minimum=1),
            commit_offsets_on_checkpoint=bool(commit_offsets_on_checkpoint),
            max_records_per_poll=_positive(max_records_per_poll, "max_records_per_poll"),
            properties=props,
        )
        self.boundedness = (
            Boundedness.BOUNDED if stopping is not None else Boundedness.CONTINUOUS_UNBOUNDED
        )

    @staticmethod
    def builder() -> KafkaSourceBuilder[Any]:
        """Flink's builder, an alias of the keyword constructor."""
        return KafkaSourceBuilder()

    def create_reader(self, context: SourceReaderContext) -> SourceReader[T]:
        return KafkaSourceReader(self.settings, context)


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def _topics(
    topics: str | Sequence[str] | None, pattern: str | re.Pattern[str] | None
) -> tuple[list[str] | None, re.Pattern[str] | None]:
    if (topics is None) == (pattern is None):
        raise ValueError("KafkaSource needs topics=[...] or topic_pattern=..., exactly one")
    if pattern is not None:
        if isinstance(pattern, str):
            try:
                return None, re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"topic_pattern {pattern!r} is not a regex: {exc}") from None
        if not isinstance(pattern, re.Pattern):
            raise TypeError(f"topic_pattern must be a string or re.Pattern, got {pattern!r}")
        return None, pattern
    names = [topics] if isinstance(topics, str) else list(topics or [])
    if not names:
        raise ValueError("KafkaSource: topics must name at least one topic")
    for topic in names:
        _config.name(topic, "a topic name")
    return names, None


def _decoder(
    value: Deserializer | DeserializerName | None,
    key: Deserializer | DeserializerName | None,
    whole: Callable[[KafkaRecord], Any] | None,
) -> tuple[Callable[[KafkaRecord], Any], Deserializer | None]:
    """The record decoder and, for values only, the value deserializer (the fast path)."""
    if whole is not None:
        if value is not None or key is not None:
            raise ValueError(
                "KafkaSource: deserializer=fn(record) decodes the whole record; "
                "do not also give value_deserializer or key_deserializer"
            )
        if not callable(whole):
            raise TypeError(f"deserializer must be callable, got {whole!r}")
        return whole, None
    if value is None:
        raise ValueError(
            "KafkaSource needs a deserializer: value_deserializer=... (with key_deserializer=... "
            "for (key, value) records) or deserializer=fn(record)"
        )
    vd = deserializer(value)
    if key is None:
        return (lambda record: vd(record.value)), vd
    kd = deserializer(key)

    def decode(record: KafkaRecord) -> Any:
        k = record.key
        return (None if k is None else kd(k), vd(record.value))  # type: ignore[arg-type]

    return decode, None


class KafkaSourceBuilder(Generic[T]):
    """Flink's ``KafkaSource.builder()``: setters that end in the keyword constructor.

    >>> src = (KafkaSource.builder().set_bootstrap_servers("localhost:9092")
    ...        .set_topics("rides").set_value_only_deserializer("json").build())
    >>> src.boundedness.value
    'unbounded'
    """

    def __init__(self) -> None:
        self._kwargs: dict[str, Any] = {}
        self._properties: dict[str, Any] = {}

    def _set(self, **kwargs: Any) -> KafkaSourceBuilder[T]:
        self._kwargs.update(kwargs)
        return self

    def set_bootstrap_servers(self, servers: str | Sequence[str]) -> KafkaSourceBuilder[T]:
        return self._set(bootstrap_servers=servers)

    def set_topics(self, *topics: str | Sequence[str]) -> KafkaSourceBuilder[T]:
        names: list[str] = []
        for t in topics:
            names.extend([t] if isinstance(t, str) else list(t))
        if not names:
            raise ValueError("set_topics needs at least one topic")
        return self._set(topics=names, topic_pattern=None)

    def set_topic_pattern(self, pattern: str | re.Pattern[str]) -> KafkaSourceBuilder[T]:
        return self._set(topic_pattern=pattern, topics=None)

    def set_group_id(self, group_id: str) -> KafkaSourceBuilder[T]:
        return self._set(group_id=group_id)

    def set_starting_offsets(self, offsets: KafkaOffsetsInitializer) -> KafkaSourceBuilder[T]:
        return self._set(starting_offsets=offsets)

    def set_bounded(self, stopping: KafkaOffsetsInitializer) -> KafkaSourceBuilder[T]:
        return self._set(bounded=stopping)

    def set_value_only_deserializer(self, d: str | Deserializer) -> KafkaSourceBuilder[T]:
        return self._set(value_deserializer=d, key_deserializer=None, deserializer=None)

    def set_key_value_deserializers(
        self, key: str | Deserializer, value: str | Deserializer
    ) -> KafkaSourceBuilder[T]:
        return self._set(value_deserializer=value, key_deserializer=key, deserializer=None)

    def set_deserializer(self, fn: Callable[[KafkaRecord], T]) -> KafkaSourceBuilder[T]:
        return self._set(deserializer=fn, value_deserializer=None, key_deserializer=None)

    def set_property(self, key: str, value: Any) -> KafkaSourceBuilder[T]:
        self._properties[key] = value
        return self

    def set_properties(self, properties: Mapping[str, Any]) -> KafkaSourceBuilder[T]:
        self._properties.update(properties)
        return self

    def set_partition_discovery_interval(self, interval: timedelta | int) -> KafkaSourceBuilder[T]:
        return self._set(partition_discovery_interval=interval)

    def set_dead_letter_topic(self, topic: str) -> KafkaSourceBuilder[T]:
        return self._set(dead_letter_topic=topic)

    def set_malformed_record_output(self, tag: OutputTag[Any]) -> KafkaSourceBuilder[T]:
        return self._set(malformed_record_output=tag)

    def set_client_id_prefix(self, prefix: str) -> KafkaSourceBuilder[T]:
        return self._set(client_id_prefix=prefix)

    def set_startup_timeout(self, timeout: timedelta | float) -> KafkaSourceBuilder[T]:
        """Seconds (as Flink's builder took them) or a ``timedelta``."""
        if not isinstance(timeout, timedelta):
            timeout = timedelta(seconds=timeout)
        return self._set(startup_timeout=timeout)

    def set_poll_timeout(self, timeout_ms: int) -> KafkaSourceBuilder[T]:
        return self._set(poll_timeout=timeout_ms)

    def set_commit_offsets_on_checkpoint(self, commit: bool) -> KafkaSourceBuilder[T]:
        return self._set(commit_offsets_on_checkpoint=commit)

    def set_max_records_per_poll(self, records: int) -> KafkaSourceBuilder[T]:
        return self._set(max_records_per_poll=records)

    def build(self) -> KafkaSource[T]:
        if "bootstrap_servers" not in self._kwargs:
            raise ValueError("KafkaSource needs set_bootstrap_servers(...)")
        source: KafkaSource[T] = KafkaSource(**self._kwargs, properties=self._properties)
        return source
