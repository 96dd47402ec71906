"""The one seam between flowactors_kafka and aiokafka: typed wrappers and error translation.

aiokafka ships no type information and raises its own exception tree. Everything the
connector needs from it goes through this module, which

- exposes small typed classes (:class:`Consumer`, :class:`Producer`,
  :class:`TransactionCoordinatorClient`) with only the operations the source and sink use;
- turns every aiokafka error into :class:`flowactors.ConnectorError` (chained with ``from``),
  carrying aiokafka's own ``retriable`` verdict;
- retries connecting with exponential backoff until a deadline, so a broker that is down at
  start ends in one clear error instead of a hang;
- maps user properties (aiokafka keyword names, or Kafka's dotted Java names) onto aiokafka's
  constructor arguments and rejects unknown ones when the job is built.

Nothing outside this module imports aiokafka (the tests do, to play the outside world).
It is longer than the style guide's ~500 lines on purpose: every use of aiokafka, including
the few of its internals the connector relies on (the batch builder, the transaction
requests, the consumer's position), stays behind this one seam.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

import aiokafka
import aiokafka.errors as kafka_errors
from aiokafka.client import AIOKafkaClient, ConnectionGroup, CoordinationType
from aiokafka.partitioner import murmur2 as _murmur2
from aiokafka.protocol.transaction import EndTxnRequest, InitProducerIdRequest

from flowactors import ConnectorError

log = logging.getLogger("flowactors_kafka")

R = TypeVar("R")


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


# -- errors ------------------------------------------------------------------------------


def translate_error(exc: BaseException, action: str) -> ConnectorError:
    """A ``ConnectorError`` for an aiokafka (or socket) error met while doing ``action``.

    ``retriable`` follows aiokafka's classification (connection and leadership problems
    are retriable; authentication, authorization and fencing are not).
    """
    if isinstance(exc, ConnectorError):
        return exc
    retriable = bool(getattr(exc, "retriable", False)) or isinstance(
        exc, ConnectionError | TimeoutError | kafka_errors.KafkaTimeoutError
    )
    name = type(exc).__name__
    detail = str(exc) or getattr(exc, "description", "") or name
    err = ConnectorError(f"Kafka: {action} failed: {name}: {detail}", retriable=retriable)
    err.__cause__ = exc
    return err


async def _translated(awaitable: Awaitable[R], action: str) -> R:
    try:
        return await awaitable
    except (kafka_errors.KafkaError, OSError, TimeoutError) as exc:
        raise translate_error(exc, action) from exc


def is_kafka_error(exc: BaseException) -> bool:
    return isinstance(exc, kafka_errors.KafkaError)


# -- properties --------------------------------------------------------------------------

#: Kafka's Java property names whose aiokafka argument is not just the dotted name with "_".
_ALIASES = {
    "batch_size": "max_batch_size",
    "sasl_username": "sasl_plain_username",
    "sasl_password": "sasl_plain_password",
    "sasl_mechanisms": "sasl_mechanism",
}
#: Arguments the connector sets itself (through the builders), never through properties.
_MANAGED = {
    "loop",
    "bootstrap_servers",
    "group_id",
    "enable_auto_commit",
    "transactional_id",
    "key_deserializer",
    "value_deserializer",
    "key_serializer",
    "value_serializer",
    "partitioner",
    "api_version",
}


def _parameters(cls: type) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(cls).parameters)


_CONSUMER_PARAMS = _parameters(aiokafka.AIOKafkaConsumer)
_PRODUCER_PARAMS = _parameters(aiokafka.AIOKafkaProducer)
_CLIENT_PARAMS = _parameters(AIOKafkaClient)


def client_options(properties: Mapping[str, Any], role: str) -> dict[str, Any]:
    """aiokafka keyword arguments for ``role`` ("consumer" or "producer") from user properties.

    Keys may be aiokafka's argument names (``ssl_context``, ``sasl_mechanism``) or Kafka's
    dotted names (``security.protocol``, ``isolation.level``, ``max.poll.records``).
    Strings as Java properties files hold them (``"500"``, ``"true"``) become ints and bools
    where aiokafka does not expect a string. Unknown keys raise
    ``ValueError`` (a typo must not be silently ignored).
    """
    params = _CONSUMER_PARAMS if role == "consumer" else _PRODUCER_PARAMS
    out: dict[str, Any] = {}
    for raw_key, value in properties.items():
        key = raw_key.replace(".", "_").replace("-", "_")
        key = _ALIASES.get(key, key)
        if key in _MANAGED:
            raise ValueError(
                f"Kafka property {raw_key!r} is set by the connector (use the builder's setters)"
            )
        if key not in params:
            # A property of the other role (e.g. a producer setting given to a source that
            # also writes dead letters) is ignored for this one, not rejected.
            other = _PRODUCER_PARAMS if role == "consumer" else _CONSUMER_PARAMS
            if key in other:
                continue
            raise ValueError(f"unknown Kafka property {raw_key!r} (aiokafka has no {key!r})")
        default = params[key].default
        if isinstance(value, str) and not isinstance(default, str):
            if isinstance(default, bool) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            elif re.fullmatch(r"-?\d+", value):
                value = int(value)
        out[key] = value
    return out


def consumer_options_of(options: Mapping[str, Any]) -> dict[str, Any]:
    """The consumer arguments among producer ones (security and timeouts carry over)."""
    return {k: v for k, v in options.items() if k in _CONSUMER_PARAMS and k != "loop"}


def admin_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of consumer/producer options a bare client takes (security, timeouts)."""
    return {k: v for k, v in options.items() if k in _CLIENT_PARAMS and k != "loop"}


# -- connecting with retries -----------------------------------------------------------


#: Errors aiokafka met while bootstrapping in this task (it logs them and raises a generic
#: "Unable to bootstrap"): how an authentication failure is told from a broker that is down.
_bootstrap_errors: contextvars.ContextVar[list[BaseException] | None] = contextvars.ContextVar(
    "flowactors_kafka_bootstrap_errors", default=None
)


class _BootstrapErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        sink = _bootstrap_errors.get()
        if sink is not None and isinstance(record.args, tuple):
            sink.extend(a for a in record.args if isinstance(a, BaseException))
        return True


logging.getLogger("aiokafka").addFilter(_BootstrapErrorFilter())

_AUTH_ERRORS = (
    kafka_errors.AuthenticationFailedError,
    kafka_errors.AuthenticationMethodNotSupported,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.GroupAuthorizationFailedError,
    kafka_errors.TransactionalIdAuthorizationFailed,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.IllegalSaslStateError,
)


async def connect_with_retry(
    start: Callable[[], Awaitable[None]],
    cleanup: Callable[[], Awaitable[None]],
    *,
    what: str,
    bootstrap_servers: str,
    timeout_s: float,
) -> None:
    """Run ``start`` until it succeeds, with exponential backoff (0.1 s doubling to 2 s).

    Gives up after ``timeout_s`` with a :class:`ConnectorError` that names the servers and
    the last error. Errors that retrying cannot fix (authentication, authorization, bad
    configuration) fail at once.
    """
    deadline = time.monotonic() + timeout_s
    backoff = 0.1
    attempts = 0
    while True:
        attempts += 1
        seen: list[BaseException] = []
        token = _bootstrap_errors.set(seen)
        try:
            await start()
            return
        except (kafka_errors.KafkaError, OSError, TimeoutError) as exc:
            await _quietly(cleanup())
            auth = next((e for e in [exc, *seen] if isinstance(e, _AUTH_ERRORS)), None)
            if auth is not None:
                err = translate_error(auth, f"connecting the {what} to {bootstrap_servers}")
                raise ConnectorError(str(err), retriable=False) from auth
            if not getattr(exc, "retriable", True) and not isinstance(exc, OSError | TimeoutError):
                hint = ""
                if isinstance(exc, kafka_errors.InvalidTransactionTimeout):
                    hint = (
                        " (transaction.timeout.ms is above the broker's "
                        "transaction.max.timeout.ms, 15 min by default)"
                    )
                err = translate_error(exc, f"starting the {what} on {bootstrap_servers}")
                raise ConnectorError(f"{err}{hint}", retriable=False) from exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectorError(
                    f"Kafka: the {what} could not connect to {bootstrap_servers} within "
                    f"{timeout_s:g} s ({attempts} attempts); last error: "
                    f"{type(exc).__name__}: {exc}",
                    retriable=True,
                ) from exc
            log.warning(
                "%s: cannot reach Kafka at %s (%s: %s); retrying in %.1f s",
                what,
                bootstrap_servers,
                type(exc).__name__,
                exc,
                min(backoff, remaining),
            )
            await asyncio.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, 2.0)
        finally:
            _bootstrap_errors.reset(token)


#: Closings still running after their caller was cancelled (strong references).
_closing: set[asyncio.Future[None]] = set()


async def close_fully(closing: Awaitable[None]) -> None:
    """Await ``closing`` and let it finish even if the caller is cancelled meanwhile: aiokafka
    leaves connections (and producers) open when its ``stop`` or ``start`` is cut short."""
    future = asyncio.ensure_future(closing)
    _closing.add(future)
    future.add_done_callback(_closing.discard)
    await asyncio.shield(future)


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        pass


# -- consumer ----------------------------------------------------------------------------


class Consumer:
    """An aiokafka consumer with manual assignment (no group membership, no rebalancing).

    The group id, when given, is used only to read committed offsets (a starting position)
    and to commit offsets for monitoring.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        group_id: str | None,
        client_id: str,
        options: Mapping[str, Any],
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self._kwargs = dict(options)
        self._kwargs.setdefault("auto_offset_reset", "earliest")
        self._kwargs.setdefault("client_id", client_id)
        self._consumer: Any = None

    def _make(self) -> Any:
        return aiokafka.AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            **self._kwargs,
        )

    async def start(self, timeout_s: float) -> None:
        async def start() -> None:
            self._consumer = self._make()
            await self._consumer.start()

        await connect_with_retry(
            start,
            self.stop,
            what="Kafka source",
            bootstrap_servers=self.bootstrap_servers,
            timeout_s=timeout_s,
        )

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception as exc:  # closing must not hide the error that led here
                log.debug("closing the Kafka consumer: %r", exc)

    @property
    def _c(self) -> Any:
        if self._consumer is None:
            raise ConnectorError("Kafka: the consumer is not running", retriable=True)
        return self._consumer

    async def topic_partitions(self) -> dict[str, set[int]]:
        """Every topic of the cluster (internal ones excluded) and its partitions, fresh."""
        cluster = await _translated(self._c._client.fetch_all_metadata(), "reading metadata")
        out: dict[str, set[int]] = {}
        for topic in cluster.topics(exclude_internal_topics=True):
            parts = cluster.partitions_for_topic(topic)
            if parts:
                out[topic] = set(parts)
        return out

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        tps = [aiokafka.TopicPartition(tp.topic, tp.partition) for tp in partitions]
        self._c.assign(tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._c.seek(aiokafka.TopicPartition(tp.topic, tp.partition), offset)

    def pause(self, tp: TopicPartition) -> None:
        self._c.pause(aiokafka.TopicPartition(tp.topic, tp.partition))

    async def fetch(self, timeout_ms: int, max_records: int | None) -> dict[Any, list[Any]]:
        """Records by aiokafka ``TopicPartition`` (a tuple equal to ours); ``max_records``
        None: everything fetched so far."""
        try:
            result: dict[Any, list[Any]] = await self._c.getmany(
                timeout_ms=timeout_ms, max_records=max_records
            )
            return result
        except (kafka_errors.KafkaError, OSError) as exc:
            raise translate_error(exc, "fetching records") from exc

    def position(self, tp: TopicPartition) -> int | None:
        """The next offset the consumer will fetch, if it knows it (without waiting)."""
        subscription = self._c._subscription.subscription
        if subscription is None or subscription.assignment is None:
            return None
        key = aiokafka.TopicPartition(tp.topic, tp.partition)
        if key not in subscription.assignment.tps:
            return None
        state = subscription.assignment.state_value(key)
        if state is None or not state.has_valid_position:
            return None
        position: int = state.position
        return position

    async def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        got = await _translated(
            self._c.beginning_offsets([aiokafka.TopicPartition(*tp) for tp in tps]),
            "reading the earliest offsets",
        )
        return {TopicPartition(tp.topic, tp.partition): int(o) for tp, o in got.items()}

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        got = await _translated(
            self._c.end_offsets([aiokafka.TopicPartition(*tp) for tp in tps]),
            "reading the latest offsets",
        )
        return {TopicPartition(tp.topic, tp.partition): int(o) for tp, o in got.items()}

    async def offsets_for_times(
        self, tps: Sequence[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int | None]:
        got = await _translated(
            self._c.offsets_for_times({aiokafka.TopicPartition(*tp): timestamp_ms for tp in tps}),
            "looking up offsets by timestamp",
        )
        return {
            TopicPartition(tp.topic, tp.partition): None if o is None else int(o.offset)
            for tp, o in got.items()
        }

    async def committed(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        out: dict[TopicPartition, int | None] = {}
        for tp in tps:
            offset = await _translated(
                self._c.committed(aiokafka.TopicPartition(*tp)),
                f"reading the committed offset of {tp.topic}/{tp.partition}",
            )
            out[tp] = None if offset is None else int(offset)
        return out

    async def committed_record_at(
        self, tp: TopicPartition, offset: int, timeout_s: float
    ) -> bool | None:
        """Whether the record at ``offset`` is visible to this (read_committed) consumer:
        ``True`` if it is, ``False`` if reading skips it (its transaction was aborted), ``None``
        if that cannot be told within ``timeout_s`` (an open transaction before it)."""
        key = aiokafka.TopicPartition(tp.topic, tp.partition)
        self._c.assign([key])
        self._c.seek(key, offset)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await self.fetch(200, 1)
            for records in batch.values():
                if records:
                    return bool(records[0].offset == offset)
            position = self.position(tp)
            if position is not None and position > offset:
                return False
        return None

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        assigned = self._c.assignment()
        todo = {
            aiokafka.TopicPartition(*tp): o
            for tp, o in offsets.items()
            if aiokafka.TopicPartition(*tp) in assigned
        }
        if todo:
            await _translated(self._c.commit(todo), "committing offsets")


async def _topics(client: Any) -> set[str]:
    cluster = await _translated(client.fetch_all_metadata(), "reading metadata")
    return set(cluster.topics(exclude_internal_topics=True))


async def wait_for_topic(
    topics: Callable[[], Awaitable[set[str]]], topic: str, *, servers: str, timeout_s: float
) -> None:
    """Return once ``topic`` exists; a ``ConnectorError`` after ``timeout_s`` if it does not
    (rather than aiokafka's wait of ``request_timeout_ms`` at the first record)."""
    deadline = time.monotonic() + timeout_s
    while topic not in await topics():
        if time.monotonic() >= deadline:
            raise ConnectorError(
                f"Kafka: topic {topic!r} does not exist on {servers} (waited {timeout_s:g} s)",
                retriable=False,
            )
        await asyncio.sleep(0.2)


# -- producer ----------------------------------------------------------------------------


class RecordBatch:
    """A record batch under construction for one partition.

    ``append(offset, timestamp, key, value, headers)`` is aiokafka's compiled batch builder
    itself (its Python wrapper costs about a microsecond per record); ``offset`` is
    ``count``, the records already in the batch, and the caller increments ``count`` after
    each append that does not return ``None`` (``None``: the batch is full).
    """

    __slots__ = ("append", "builder", "count")

    def __init__(self, builder: Any) -> None:
        self.builder = builder
        self.count = 0
        inner = getattr(builder, "_builder", None)
        if inner is not None and hasattr(inner, "append"):
            self.append: Callable[[int, int | None, bytes | None, bytes, Headers], object] = (
                inner.append
            )
        else:  # another aiokafka layout: its public method, slower
            self.append = lambda _o, ts, k, v, h: builder.append(
                timestamp=ts, key=k, value=v, headers=h
            )


class Producer:
    """An aiokafka producer: plain, or transactional with one transactional id."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str,
        options: Mapping[str, Any],
        transactional_id: str | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.transactional_id = transactional_id
        self._kwargs = dict(options)
        self._kwargs.setdefault("client_id", client_id)
        if transactional_id is None:
            self._kwargs.setdefault("acks", "all")
        self._producer: Any = None
        self._partitions: dict[str, list[int]] = {}
        #: The longest a flush or a commit may take before the producer counts as stuck
        #: (aiokafka retries some broker errors without end): twice the request timeout.
        self.operation_timeout_s = 2 * int(self._kwargs.get("request_timeout_ms", 40_000)) / 1000

    async def _bounded(self, awaitable: Awaitable[R], action: str) -> R:
        try:
            return await asyncio.wait_for(_translated(awaitable, action), self.operation_timeout_s)
        except TimeoutError as exc:
            raise ConnectorError(
                f"Kafka: {action} did not finish within {self.operation_timeout_s:g} s",
                retriable=True,
            ) from exc

    async def start(self, timeout_s: float) -> None:
        async def start() -> None:
            self._producer = aiokafka.AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                transactional_id=self.transactional_id,
                **self._kwargs,
            )
            await self._producer.start()

        what = "Kafka sink" if self.transactional_id is None else "Kafka transactional producer"
        await connect_with_retry(
            start,
            self.abandon,
            what=what,
            bootstrap_servers=self.bootstrap_servers,
            timeout_s=timeout_s,
        )

    @property
    def _p(self) -> Any:
        if self._producer is None:
            raise ConnectorError("Kafka: the producer is not running", retriable=True)
        return self._producer

    @property
    def producer_id(self) -> int:
        return int(self._p._txn_manager.producer_id)

    @property
    def producer_epoch(self) -> int:
        return int(self._p._txn_manager.producer_epoch)

    async def partitions(self, topic: str) -> list[int]:
        """The topic's partitions (from metadata, cached until :meth:`refresh_partitions`)."""
        parts = self._partitions.get(topic)
        if parts is None:
            got = await _translated(self._p.partitions_for(topic), f"reading metadata of {topic}")
            parts = self._partitions[topic] = sorted(got)
        return parts

    def refresh_partitions(self) -> None:
        self._partitions.clear()

    async def topics(self) -> set[str]:
        return await _topics(self._p.client)

    def create_batch(self) -> RecordBatch:
        return RecordBatch(self._p.create_batch())

    async def send_batch(
        self, batch: RecordBatch, topic: str, partition: int
    ) -> asyncio.Future[Any]:
        """Queue a batch; the returned future resolves when the broker has it."""
        builder = batch.builder
        if hasattr(builder, "_relative_offset"):
            builder._relative_offset = batch.count  # appended behind its back
        future: asyncio.Future[Any] = await _translated(
            self._p.send_batch(builder, topic, partition=partition), f"sending to {topic}"
        )
        return future

    async def send_and_wait(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers
    ) -> None:
        await _translated(
            self._p.send_and_wait(topic, value=value, key=key, headers=headers),
            f"sending to {topic}",
        )

    async def flush(self) -> None:
        await self._bounded(self._p.flush(), "flushing")

    async def begin_transaction(self) -> None:
        await _translated(self._p.begin_transaction(), "beginning a transaction")

    async def commit_transaction(self) -> None:
        await self._bounded(
            self._p.commit_transaction(), f"committing transaction {self.transactional_id}"
        )

    async def abort_transaction(self, timeout_s: float) -> None:
        """Abort the open transaction, giving up quietly after ``timeout_s`` (it is aborted
        anyway when its id is fenced or its timeout runs out)."""
        try:
            await asyncio.wait_for(self._p.abort_transaction(), timeout_s)
        except Exception as exc:
            log.debug("aborting transaction %s: %r", self.transactional_id, exc)

    async def stop(self) -> None:
        """Flush what is queued and close."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await _translated(producer.stop(), "closing the producer")

    async def abandon(self) -> None:
        """Close without waiting for queued records (after a failure); never raises."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        producer._closed = True  # closed here, whatever happens below
        # Fail what is queued first: aiokafka's sender, cancelled, waits for its requests in
        # flight, and a transaction commit in flight waits for every queued batch.
        try:
            producer._message_accumulator.fail_all(
                kafka_errors.KafkaError("the producer was closed after a failure")
            )
        except Exception as exc:
            log.debug("abandoning a Kafka producer: %r", exc)
        sender_task = getattr(producer._sender, "sender_task", None)
        if sender_task is not None and not sender_task.done():
            sender_task.cancel()
            await asyncio.wait({sender_task}, timeout=2.0)
        try:
            await asyncio.wait_for(producer.client.close(), 5.0)
        except Exception as exc:
            log.debug("abandoning a Kafka producer: %r", exc)


async def wait_all(
    futures: Iterable[asyncio.Future[Any]], action: str, timeout_s: float | None = None
) -> None:
    """Await delivery futures; the first failure becomes a ``ConnectorError``, and so does
    waiting longer than ``timeout_s`` for all of them."""
    pending = list(futures)
    if not pending:
        return
    done, not_done = await asyncio.wait(pending, timeout=timeout_s)
    for future in pending:
        if future in done:
            if future.cancelled():
                raise ConnectorError(f"Kafka: {action}: a send was cancelled", retriable=True)
            exc = future.exception()
            if exc is not None:
                raise translate_error(exc, action) from exc
    if not_done:
        raise ConnectorError(
            f"Kafka: {action}: {len(not_done)} batch(es) not acknowledged within {timeout_s:g} s",
            retriable=True,
        )


# -- transaction coordinator (resuming and fencing transactions) ---------------------------


class TxnOutcome(NamedTuple):
    """How ending a recorded transaction went: ``"committed"`` (now or before) or ``"lost"``."""

    status: str
    detail: str


_RETRY_CODES = {
    kafka_errors.ConcurrentTransactions,
    kafka_errors.CoordinatorLoadInProgressError,
    kafka_errors.CoordinatorNotAvailableError,
    kafka_errors.NotCoordinatorError,
}


class TransactionCoordinatorClient:
    """Raw transaction requests that aiokafka's producer does not expose.

    - :meth:`commit` sends ``EndTxn(COMMIT)`` with a transactional id, producer id and epoch
      recorded in a checkpoint: it commits a transaction that a crashed process left
      pre-committed (as Flink does through reflection on the Java producer). The broker
      answers success for a transaction that is open with that epoch (it commits it) and for
      one already committed with that epoch (a retry); a higher epoch means the transaction
      was aborted since (it timed out) or its id was taken over.
    - :meth:`fence` sends ``InitProducerId`` for a transactional id: the broker aborts any
      transaction open under that id and bumps its epoch, so a zombie producer can neither
      commit nor write.
    """

    def __init__(self, bootstrap_servers: str, *, client_id: str, options: Mapping[str, Any]):
        self.bootstrap_servers = bootstrap_servers
        self._kwargs = admin_options(options)
        self._kwargs.setdefault("client_id", client_id)
        self._client: Any = None
        self.transaction_timeout_ms = int(options.get("transaction_timeout_ms", 60_000))

    async def start(self, timeout_s: float) -> None:
        async def start() -> None:
            self._client = AIOKafkaClient(bootstrap_servers=self.bootstrap_servers, **self._kwargs)
            await self._client.bootstrap()

        await connect_with_retry(
            start,
            self.stop,
            what="Kafka transaction recovery",
            bootstrap_servers=self.bootstrap_servers,
            timeout_s=timeout_s,
        )

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _quietly(client.close())

    async def topics(self) -> set[str]:
        return await _topics(self._client)

    async def _request(
        self, transactional_id: str, build: Callable[[], Any], timeout_s: float
    ) -> Any:
        client = self._client
        assert client is not None
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                node = await client.coordinator_lookup(
                    CoordinationType.TRANSACTION, transactional_id
                )
                response = await client.send(node, build(), group=ConnectionGroup.COORDINATION)
            except (kafka_errors.KafkaError, OSError) as exc:
                if not getattr(exc, "retriable", False) or time.monotonic() > deadline:
                    raise translate_error(
                        exc, f"transaction request for {transactional_id}"
                    ) from exc
                await client.force_metadata_update()
                await asyncio.sleep(0.1)
                continue
            error = kafka_errors.for_code(response.error_code)
            if error in _RETRY_CODES and time.monotonic() < deadline:
                if error in (
                    kafka_errors.NotCoordinatorError,
                    kafka_errors.CoordinatorNotAvailableError,
                ):
                    await client.force_metadata_update()
                await asyncio.sleep(0.05)
                continue
            return response

    async def commit(
        self, transactional_id: str, producer_id: int, epoch: int, timeout_s: float = 60.0
    ) -> TxnOutcome:
        response = await self._request(
            transactional_id,
            lambda: EndTxnRequest(transactional_id, producer_id, epoch, True),
            timeout_s,
        )
        error = kafka_errors.for_code(response.error_code)
        if error is kafka_errors.NoError:
            return TxnOutcome("committed", "")
        if error in (
            kafka_errors.InvalidProducerEpoch,
            kafka_errors.ProducerFenced,
            kafka_errors.InvalidProducerIdMapping,
            kafka_errors.InvalidTxnState,
        ):
            return TxnOutcome("lost", error.__name__)
        raise ConnectorError(
            f"Kafka: committing recovered transaction {transactional_id} failed: {error.__name__}",
            retriable=bool(getattr(error, "retriable", False)),
        )

    async def fence(self, transactional_id: str, timeout_s: float = 60.0) -> tuple[int, int]:
        """Abort whatever is open under ``transactional_id``; the new (producer id, epoch)."""
        response = await self._request(
            transactional_id,
            lambda: InitProducerIdRequest(transactional_id, self.transaction_timeout_ms),
            timeout_s,
        )
        error = kafka_errors.for_code(response.error_code)
        if error is not kafka_errors.NoError:
            hint = ""
            if error is kafka_errors.InvalidTransactionTimeout:
                hint = (
                    f": transaction.timeout.ms ({self.transaction_timeout_ms}) is above the "
                    f"broker's transaction.max.timeout.ms (15 min by default)"
                )
            raise ConnectorError(
                f"Kafka: fencing transactional id {transactional_id} failed: "
                f"{error.__name__}{hint}",
                retriable=bool(getattr(error, "retriable", False)),
            )
        return int(response.producer_id), int(response.producer_epoch)


# -- admin -------------------------------------------------------------------------------


async def create_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    *,
    replication_factor: int = 1,
    properties: Mapping[str, Any] | None = None,
    exist_ok: bool = True,
    timeout_s: float = 30.0,
) -> bool:
    """Create ``topic`` with ``partitions`` partitions; whether it was created (``False``:
    it existed and ``exist_ok``). ``properties`` as for the builders (security settings)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    options = admin_options(client_options(properties or {}, "consumer"))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **options)

    async def start() -> None:
        await admin.start()

    await connect_with_retry(
        start,
        _noop,
        what="Kafka admin client",
        bootstrap_servers=bootstrap_servers,
        timeout_s=timeout_s,
    )
    try:
        response = await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor)]
        )
        for entry in response.topic_errors:
            error = kafka_errors.for_code(entry[1])
            if error is kafka_errors.NoError:
                continue
            if error is kafka_errors.TopicAlreadyExistsError and exist_ok:
                return False
            raise error(f"{topic}: {entry[2] if len(entry) > 2 else ''}")
        return True
    except (kafka_errors.KafkaError, OSError) as exc:
        raise translate_error(exc, f"creating topic {topic!r}") from exc
    finally:
        await _quietly(admin.close())


async def _noop() -> None:
    return None
