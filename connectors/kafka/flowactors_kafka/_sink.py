"""``KafkaSink``: where and how records are written, validated when it is constructed.

The keyword constructor is the main path; :class:`KafkaSinkBuilder` (Flink's setters) is a
thin alias that collects the same arguments and ends in the constructor. Writing is
:mod:`flowactors_kafka._writer`'s (none, at least once) and
:mod:`flowactors_kafka._transactions`'s (exactly once).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Generic, Literal, TypeAlias

from typing_extensions import TypeVar

from flowactors.spi import Sink, SinkWriter, SinkWriterContext
from flowactors_kafka import _config
from flowactors_kafka._properties import sink_properties
from flowactors_kafka._serialization import SerializerName, serializer
from flowactors_kafka._transactions import ExactlyOnceWriter
from flowactors_kafka._writer import DeliveryGuarantee, KafkaWriter, Partitioner, _SinkSettings

T = TypeVar("T", default=Any)

Guarantee: TypeAlias = Literal["none", "at-least-once", "exactly-once"]


class KafkaSink(Sink[T]):
    """Writes records to Kafka.

    >>> import orjson
    >>> sink = KafkaSink(bootstrap_servers="localhost:9092", topic="out",
    ...                  value_serializer=orjson.dumps, delivery_guarantee="exactly-once",
    ...                  transactional_id_prefix="job-1")
    >>> sink.settings.guarantee
    <DeliveryGuarantee.EXACTLY_ONCE: 'exactly-once'>

    - ``topic``: a name, or ``fn(record) -> name``.
    - ``value_serializer``: ``fn(record) -> bytes`` or ``"json"``/``"str"``/``"bytes"``;
      ``key_serializer``: ``fn(record) -> bytes | None`` (e.g. ``lambda r:
      str(r["id"]).encode()``) or one of those names.
    - ``partitioner``: ``None`` (keyed records go where Kafka's Java producer puts them:
      murmur2 of the key; keyless ones to one partition per batch, round-robin), ``"fixed"``
      (subtask *i* writes to partition *i* mod partitions, Flink's ``FlinkFixedPartitioner``),
      or ``fn(record, key, value, topic, partitions) -> partition``.
    - ``delivery_guarantee``: ``"none"`` (default), ``"at-least-once"`` or ``"exactly-once"``
      (Kafka transactions, committed when a checkpoint completes; needs
      ``transactional_id_prefix``, unique per job on a cluster).
    - ``properties``: Kafka producer properties (``security.protocol``, ``ssl_context``,
      ``linger.ms``, ``transaction.timeout.ms``, ...). Those the sink owns are mapped onto
      its arguments or refused (see ``docs/kafka.md``).
    - ``startup_timeout`` (``timedelta`` or ms, default 30 s): how long to keep trying to
      reach the broker at start. ``transaction_pool_size``: transactional ids per subtask
      (default 8). ``fail_on_lost_transaction``: whether a recorded transaction that Kafka
      aborted meanwhile fails the job (default) or is logged as Flink does.

    The record's event timestamp, when it has one, becomes the Kafka timestamp.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str | Sequence[str],
        topic: str | Callable[[T], str],
        value_serializer: Callable[[T], bytes] | SerializerName,
        key_serializer: Callable[[T], bytes | None] | SerializerName | None = None,
        partitioner: Partitioner | Literal["fixed"] | None = None,
        delivery_guarantee: Guarantee | DeliveryGuarantee = "none",
        transactional_id_prefix: str | None = None,
        properties: Mapping[str, Any] | None = None,
        client_id_prefix: str = "flowactors",
        startup_timeout: timedelta | int = 30_000,
        transaction_pool_size: int = 8,
        fail_on_lost_transaction: bool = True,
    ) -> None:
        servers = _config.servers(bootstrap_servers)
        if isinstance(topic, str):
            _config.name(topic, "topic")
        elif not callable(topic):
            raise TypeError(f"topic must be a name or fn(record) -> name, got {topic!r}")
        if isinstance(partitioner, str) and partitioner != "fixed":
            raise ValueError(
                f"partitioner must be None, 'fixed' or a callable, got {partitioner!r}"
            )
        if (
            partitioner is not None
            and not isinstance(partitioner, str)
            and not callable(partitioner)
        ):
            raise TypeError(f"partitioner must be None, 'fixed' or a callable, got {partitioner!r}")
        try:
            guarantee = DeliveryGuarantee(delivery_guarantee)
        except ValueError:
            raise ValueError(
                "delivery_guarantee must be 'none', 'at-least-once' or 'exactly-once', "
                f"got {delivery_guarantee!r}"
            ) from None
        if transactional_id_prefix is not None:
            _config.name(transactional_id_prefix, "transactional_id_prefix")
        if isinstance(transaction_pool_size, bool) or not isinstance(transaction_pool_size, int):
            raise TypeError(f"transaction_pool_size must be an int, got {transaction_pool_size!r}")
        if transaction_pool_size < 3:
            raise ValueError(
                f"transaction_pool_size must be at least 3 (the open transaction, one awaiting "
                f"its checkpoint, one just committed), got {transaction_pool_size}"
            )
        options = sink_properties(
            dict(properties or {}), bootstrap_servers=servers, guarantee=guarantee.value
        )
        if guarantee is DeliveryGuarantee.EXACTLY_ONCE:
            if transactional_id_prefix is None:
                raise ValueError(
                    "an exactly-once KafkaSink needs transactional_id_prefix=... "
                    "(unique per job on the cluster)"
                )
            # Flink's default is 1 h; Kafka's brokers refuse more than transaction.max.timeout.ms
            # (15 min by default), so that is the default here.
            options.setdefault("transaction_timeout_ms", 900_000)
        options.setdefault("max_batch_size", 256 * 1024)
        options.setdefault("linger_ms", 0)
        self.settings = _SinkSettings(
            bootstrap_servers=servers,
            topic=topic,
            value_serializer=serializer(value_serializer),
            key_serializer=None if key_serializer is None else serializer(key_serializer),  # type: ignore[arg-type]
            partitioner=partitioner,
            guarantee=guarantee,
            transactional_id_prefix=transactional_id_prefix,
            producer_options=options,
            client_id_prefix=_config.name(client_id_prefix, "client_id_prefix"),
            startup_timeout_s=_config.millis(startup_timeout, "startup_timeout", minimum=1) / 1000,
            transaction_pool_size=transaction_pool_size,
            fail_on_lost_transaction=bool(fail_on_lost_transaction),
        )

    @staticmethod
    def builder() -> KafkaSinkBuilder[Any]:
        """Flink's builder, an alias of the keyword constructor."""
        return KafkaSinkBuilder()

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[T]:
        if self.settings.guarantee is DeliveryGuarantee.EXACTLY_ONCE:
            return ExactlyOnceWriter(self.settings, context)
        return KafkaWriter(self.settings, context)


class KafkaSinkBuilder(Generic[T]):
    """Flink's ``KafkaSink.builder()``: setters that end in the keyword constructor.

    >>> sink = (KafkaSink.builder().set_bootstrap_servers("localhost:9092")
    ...         .set_record_serializer(topic="out", value_serializer="json")
    ...         .set_delivery_guarantee("at-least-once").build())
    >>> sink.settings.guarantee
    <DeliveryGuarantee.AT_LEAST_ONCE: 'at-least-once'>
    """

    def __init__(self) -> None:
        self._kwargs: dict[str, Any] = {}
        self._properties: dict[str, Any] = {}

    def _set(self, **kwargs: Any) -> KafkaSinkBuilder[T]:
        self._kwargs.update(kwargs)
        return self

    def set_bootstrap_servers(self, servers: str | Sequence[str]) -> KafkaSinkBuilder[T]:
        return self._set(bootstrap_servers=servers)

    def set_record_serializer(
        self,
        *,
        topic: str | Callable[[T], str],
        value_serializer: str | Callable[[T], bytes],
        key_serializer: str | Callable[[T], bytes | None] | None = None,
        partitioner: Partitioner | str | None = None,
    ) -> KafkaSinkBuilder[T]:
        """Flink's ``KafkaRecordSerializationSchema``; the arguments are the constructor's."""
        if isinstance(partitioner, str) and partitioner != "fixed":
            raise ValueError(
                f"partitioner must be None, 'fixed' or a callable, got {partitioner!r}"
            )
        return self._set(
            topic=topic,
            value_serializer=value_serializer,
            key_serializer=key_serializer,
            partitioner=partitioner,
        )

    def set_delivery_guarantee(self, guarantee: str | DeliveryGuarantee) -> KafkaSinkBuilder[T]:
        return self._set(delivery_guarantee=DeliveryGuarantee(guarantee))

    def set_transactional_id_prefix(self, prefix: str) -> KafkaSinkBuilder[T]:
        return self._set(transactional_id_prefix=_config.name(prefix, "transactional_id_prefix"))

    def set_property(self, key: str, value: Any) -> KafkaSinkBuilder[T]:
        self._properties[key] = value
        return self

    def set_properties(self, properties: Mapping[str, Any]) -> KafkaSinkBuilder[T]:
        self._properties.update(properties)
        return self

    def set_client_id_prefix(self, prefix: str) -> KafkaSinkBuilder[T]:
        return self._set(client_id_prefix=prefix)

    def set_startup_timeout(self, timeout: timedelta | float) -> KafkaSinkBuilder[T]:
        """Seconds (as Flink's builder took them) or a ``timedelta``."""
        if not isinstance(timeout, timedelta):
            timeout = timedelta(seconds=timeout)
        return self._set(startup_timeout=timeout)

    def set_transaction_pool_size(self, size: int) -> KafkaSinkBuilder[T]:
        if size < 3:
            raise ValueError("the transaction pool needs at least 3 ids")
        return self._set(transaction_pool_size=size)

    def set_fail_on_lost_transaction(self, fail: bool) -> KafkaSinkBuilder[T]:
        return self._set(fail_on_lost_transaction=fail)

    def build(self) -> KafkaSink[T]:
        if "bootstrap_servers" not in self._kwargs:
            raise ValueError("KafkaSink needs set_bootstrap_servers(...)")
        if "topic" not in self._kwargs:
            raise ValueError(
                "KafkaSink needs set_record_serializer(topic=..., value_serializer=...)"
            )
        sink: KafkaSink[T] = KafkaSink(**self._kwargs, properties=self._properties)
        return sink
