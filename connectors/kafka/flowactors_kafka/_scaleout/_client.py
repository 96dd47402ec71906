"""The seam between scale-out and aiokafka: a group consumer and its sticky assignor, a
task's transactional producer, topic creation and changelog reads.

As in :mod:`flowactors_kafka._client` (whose helpers this reuses), nothing else in the
package imports aiokafka, and aiokafka's errors become :class:`flowactors.ConnectorError`.
A transactional producer fenced by a newer owner of its id raises :class:`TaskFenced`.

It is longer than the style guide's ~500 lines on purpose, for the same reason as
:mod:`flowactors_kafka._client`: every use of aiokafka by scale-out — the group consumer,
the task producers, the admin requests and the one protocol request aiokafka lacks —
stays behind this one seam.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import aiokafka
import aiokafka.errors as kafka_errors
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.client import AIOKafkaClient, ConnectionGroup, CoordinationType
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String
from aiokafka.structs import OffsetAndMetadata

from flowactors import ConnectorError
from flowactors_kafka._client import (
    RecordBatch,
    TopicPartition,
    admin_options,
    close_fully,
    connect_with_retry,
    translate_error,
)
from flowactors_kafka._scaleout._assignor import (
    Member,
    decode_owned,
    encode_owned,
    sticky_assignment,
)

log = logging.getLogger("flowactors_kafka.scaleout")

#: (key, value, timestamp ms, headers) of one record to send.
Record = tuple[bytes | None, bytes | None, int | None, list[tuple[str, bytes]]]


class NoPosition(ConnectorError):
    """A partition is assigned but has no position yet (its task is still opening)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=True)


class TaskFenced(ConnectorError):
    """A newer owner initialised this task's transactional id: this one must drop the task."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=False)


_FENCED = (
    kafka_errors.ProducerFenced,
    kafka_errors.InvalidProducerEpoch,
    kafka_errors.InvalidProducerIdMapping,
)


async def _call(awaitable: Awaitable[Any], action: str) -> Any:
    try:
        return await awaitable
    except _FENCED as exc:
        raise TaskFenced(
            f"Kafka: {action}: fenced by a newer owner ({type(exc).__name__})"
        ) from exc
    except (kafka_errors.KafkaError, OSError) as exc:
        raise translate_error(exc, action) from exc


def _tp(tp: Any) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        revoked: Callable[[list[TopicPartition]], Awaitable[None]],
        assigned: Callable[[list[TopicPartition]], Awaitable[None]],
    ) -> None:
        self._revoked = revoked
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        await self._revoked([_tp(tp) for tp in revoked])

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        await self._assigned([_tp(tp) for tp in assigned])


class StickyTaskAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """aiokafka's side of :func:`sticky_assignment`: each member sends the tasks it owns
    (``owned()``, called when it joins) and its last generation (``generation()``) as
    user data; the leader assigns with them."""

    name = "flowactors-sticky"
    version = 0

    def __init__(
        self, owned: Callable[[], Iterable[TopicPartition]], generation: Callable[[], int]
    ) -> None:
        self._owned = owned
        self._generation = generation

    def assign(
        self, cluster: Any, members: Mapping[str, Any]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        decoded = {
            member_id: Member(frozenset(meta.subscription), *decode_owned(meta.user_data))
            for member_id, meta in members.items()
        }
        topics = sorted({t for member in decoded.values() for t in member.subscription})
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(cluster.partitions_for_topic(topic) or ())
        ]
        result = sticky_assignment(decoded, partitions)
        out = {}
        for member_id, tps in result.items():
            by_topic: dict[str, list[int]] = {}
            for tp in tps:
                by_topic.setdefault(tp.topic, []).append(tp.partition)
            out[member_id] = ConsumerProtocolMemberAssignment(
                self.version, sorted(by_topic.items()), b""
            )
        return out

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(
            self.version, sorted(topics), encode_owned(self._owned(), self._generation())
        )

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        return None


class GroupConsumer:
    """A consumer in group ``group_id`` (``read_committed``, no auto-commit) over ``topics``,
    calling ``on_revoked`` / ``on_assigned`` around every rebalance (aiokafka rebalances
    eagerly: every rebalance revokes everything first). Partitions are assigned by
    :class:`StickyTaskAssignor`; ``owned()`` names the tasks this member keeps state of."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        group_id: str,
        instance_id: str | None,
        topics: Sequence[str],
        options: Mapping[str, Any],
        on_revoked: Callable[[list[TopicPartition]], Awaitable[None]],
        on_assigned: Callable[[list[TopicPartition]], Awaitable[None]],
        owned: Callable[[], Iterable[TopicPartition]],
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.topics = list(topics)
        self._kwargs = dict(options)
        # Every task seeks explicitly; a position that falls out of the log later (retention
        # deleted what was not read yet) fails the worker instead of skipping records,
        # unless the user's properties choose a reset.
        self._kwargs.setdefault("auto_offset_reset", "none")
        if "partition_assignment_strategy" in self._kwargs:
            raise ValueError(
                "scale-out assigns tasks with its own sticky assignor: "
                "partition.assignment.strategy cannot be set"
            )
        if instance_id is not None:
            self._kwargs["group_instance_id"] = instance_id
        self._listener = _Listener(on_revoked, on_assigned)
        self._assignor = StickyTaskAssignor(owned, self._generation)
        self._consumer: Any = None

    async def start(self, timeout_s: float) -> None:
        async def start() -> None:
            self._consumer = aiokafka.AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                group_id=self.group_id,
                enable_auto_commit=False,
                isolation_level="read_committed",
                partition_assignment_strategy=(self._assignor,),
                **self._kwargs,
            )
            await self._consumer.start()
            self._consumer.subscribe(self.topics, listener=self._listener)

        await connect_with_retry(
            start,
            self.stop,
            what="scale-out consumer",
            bootstrap_servers=self.bootstrap_servers,
            timeout_s=timeout_s,
        )

    async def stop(self) -> None:
        """Leave the group (at once for dynamic members) and close."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await close_fully(consumer.stop())
            except Exception as exc:
                log.debug("closing the scale-out consumer: %r", exc)

    @property
    def _c(self) -> Any:
        if self._consumer is None:
            raise ConnectorError("Kafka: the scale-out consumer is not running", retriable=True)
        return self._consumer

    def _generation(self) -> int:
        """The group generation this member last joined (-1 once it was removed)."""
        coordinator = getattr(self._consumer, "_coordinator", None)
        return int(getattr(coordinator, "generation", -1))

    async def fetch(
        self, timeout_ms: int, max_records: int | None
    ) -> dict[TopicPartition, list[Any]]:
        try:
            got = await self._c.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except kafka_errors.NoOffsetForPartitionError as exc:
            raise NoPosition(f"Kafka: {exc}") from exc
        except (kafka_errors.KafkaError, OSError) as exc:
            raise translate_error(exc, "fetching records") from exc
        return {_tp(tp): records for tp, records in got.items()}

    async def committed(self, tp: TopicPartition) -> int | None:
        offset, _ = await self.committed_with_metadata(tp)
        return offset

    async def committed_with_metadata(self, tp: TopicPartition) -> tuple[int | None, str]:
        """The group's committed offset of ``tp`` (``None``: never committed) and the
        metadata string committed with it."""
        key = aiokafka.TopicPartition(*tp)
        # aiokafka's committed() drops the metadata; its coordinator returns both
        got = await _call(
            self._c._coordinator.fetch_committed_offsets([key]),
            f"reading the committed offset of {tp.topic}/{tp.partition}",
        )
        found = got.get(key)
        if found is None or found.offset == -1:
            return None, ""
        return int(found.offset), found.metadata or ""

    async def seek(self, tp: TopicPartition, offset: int | None) -> None:
        """Read ``tp`` from ``offset``; ``None``: from its beginning."""
        key = aiokafka.TopicPartition(*tp)
        if offset is None:
            await _call(self._c.seek_to_beginning(key), f"seeking {tp.topic}/{tp.partition}")
        else:
            self._c.seek(key, offset)

    async def beginning_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        got = await _call(
            self._c.beginning_offsets([aiokafka.TopicPartition(*tp) for tp in tps]),
            "reading the earliest offsets",
        )
        return {_tp(tp): int(o) for tp, o in got.items()}

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        got = await _call(
            self._c.end_offsets([aiokafka.TopicPartition(*tp) for tp in tps]),
            "reading the latest offsets",
        )
        return {_tp(tp): int(o) for tp, o in got.items()}

    async def offsets_for_times(
        self, tps: Sequence[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int | None]:
        got = await _call(
            self._c.offsets_for_times({aiokafka.TopicPartition(*tp): timestamp_ms for tp in tps}),
            "looking up offsets by timestamp",
        )
        return {_tp(tp): None if o is None else int(o.offset) for tp, o in got.items()}

    def position(self, tp: TopicPartition) -> int | None:
        """The next offset the consumer will fetch, if it knows it (no request)."""
        subscription = self._c._subscription.subscription
        if subscription is None or subscription.assignment is None:
            return None
        key = aiokafka.TopicPartition(*tp)
        if key not in subscription.assignment.tps:
            return None
        state = subscription.assignment.state_value(key)
        if state is None or not state.has_valid_position:
            return None
        return int(state.position)

    def stable_end(self, tp: TopicPartition) -> int | None:
        """The partition's last stable offset as of the last fetch (no request)."""
        try:
            end = self._c.last_stable_offset(aiokafka.TopicPartition(*tp))
        except (AssertionError, kafka_errors.KafkaError):  # not assigned (any more)
            return None
        return None if end is None or end < 0 else int(end)

    def owns(self, tp: TopicPartition) -> bool:
        """Whether ``tp`` is in this member's current assignment."""
        return aiokafka.TopicPartition(*tp) in self._c.assignment()

    def request_rejoin(self) -> None:
        """Join the group again (a rebalance of the whole group): after a fence, the
        assignment decides who owns what."""
        self._c._coordinator.request_rejoin()

    def pause(self, tp: TopicPartition) -> None:
        self._c.pause(aiokafka.TopicPartition(*tp))

    def resume(self, tp: TopicPartition) -> None:
        self._c.resume(aiokafka.TopicPartition(*tp))


class TaskProducer:
    """The one transactional producer of a task. :meth:`start` initialises its id, which
    aborts what a previous owner left open and fences that owner."""

    def __init__(
        self, bootstrap_servers: str, *, transactional_id: str, options: Mapping[str, Any]
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.transactional_id = transactional_id
        self._kwargs = dict(options)
        self._kwargs.setdefault("client_id", transactional_id)
        self._producer: Any = None
        self._partitions: dict[str, int] = {}

    async def start(self, timeout_s: float) -> None:
        async def start() -> None:
            self._producer = aiokafka.AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                transactional_id=self.transactional_id,
                **self._kwargs,
            )
            await self._producer.start()

        try:
            await connect_with_retry(
                start,
                self.abandon,
                what=f"transactional producer {self.transactional_id}",
                bootstrap_servers=self.bootstrap_servers,
                timeout_s=timeout_s,
            )
        except BaseException:  # also cancelled while connecting: no producer left open
            await self.abandon()
            raise

    @property
    def _p(self) -> Any:
        if self._producer is None:
            raise ConnectorError("Kafka: the task's producer is not running", retriable=True)
        return self._producer

    def identity(self) -> tuple[int, int]:
        """(producer id, epoch) the broker gave this producer when it started. Each
        start of a producer for the same transactional id raises the epoch by one (more
        when it had to abort an open transaction), so an owner can tell whether anyone
        else started one in between."""
        txn = self._p._txn_manager
        return int(txn.producer_id), int(txn.producer_epoch)

    async def num_partitions(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            parts = await _call(self._p.partitions_for(topic), f"reading metadata of {topic}")
            n = self._partitions[topic] = len(parts)
        return n

    async def begin(self) -> None:
        await _call(
            self._p.begin_transaction(), f"beginning a transaction of {self.transactional_id}"
        )

    async def send(
        self, topic: str, partitions: Iterable[int], records: Iterable[Record]
    ) -> list[asyncio.Future[Any]]:
        """Queue ``records[i]`` for ``partitions[i]`` of ``topic``, one batch per partition."""
        batches: dict[int, RecordBatch] = {}
        futures: list[asyncio.Future[Any]] = []
        for part, (key, value, ts, headers) in zip(partitions, records):
            batch = batches.get(part)
            if batch is None:
                batch = batches[part] = self.create_batch()
            if batch.append(batch.count, ts, key, value, headers) is None:  # type: ignore[arg-type]
                futures.append(await self.send_batch(batch, topic, part))
                batch = batches[part] = self.create_batch()
                if batch.append(0, ts, key, value, headers) is None:  # type: ignore[arg-type]
                    raise ConnectorError(
                        f"Kafka: a record for {topic} is larger than the batch size",
                        retriable=False,
                    )
            batch.count += 1
        for part, batch in batches.items():
            if batch.count:
                futures.append(await self.send_batch(batch, topic, part))
        return futures

    def create_batch(self) -> RecordBatch:
        return RecordBatch(self._p.create_batch())

    async def send_batch(self, batch: RecordBatch, topic: str, part: int) -> asyncio.Future[Any]:
        builder = batch.builder
        if hasattr(builder, "_relative_offset"):
            builder._relative_offset = batch.count
        future: asyncio.Future[Any] = await _call(
            self._p.send_batch(builder, topic, partition=part), f"sending to {topic}"
        )
        return future

    async def commit(
        self, offsets: Mapping[TopicPartition, tuple[int, str]], group_id: str
    ) -> None:
        """Commit the open transaction with ``offsets`` (next offset to read, and the
        metadata string that goes with it) of ``group_id``."""
        producer = self._p
        if offsets:
            await _call(
                producer.send_offsets_to_transaction(
                    {
                        aiokafka.TopicPartition(*tp): OffsetAndMetadata(o, m)
                        for tp, (o, m) in offsets.items()
                    },
                    group_id,
                ),
                f"adding offsets to transaction {self.transactional_id}",
            )
        await _call(producer.commit_transaction(), f"committing {self.transactional_id}")

    async def abort(self, timeout_s: float = 5.0) -> None:
        try:
            await asyncio.wait_for(self._p.abort_transaction(), timeout_s)
        except Exception as exc:
            log.debug("aborting %s: %r", self.transactional_id, exc)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await close_fully(producer.stop())
            except Exception as exc:
                log.debug("closing %s: %r", self.transactional_id, exc)

    async def abandon(self) -> None:
        """Close without flushing (after a failure or a fence); never raises."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer._message_accumulator.fail_all(
                kafka_errors.KafkaError("the task's producer was closed")
            )
        except Exception as exc:
            log.debug("abandoning %s: %r", self.transactional_id, exc)
        try:
            await asyncio.wait_for(close_fully(producer.stop()), 5.0)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.debug("abandoning %s: %r", self.transactional_id, exc)


async def _started_admin(
    bootstrap_servers: str, options: Mapping[str, Any], timeout_s: float
) -> Any:
    """An admin client, connected (retrying while the brokers cannot be reached)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **options)

    async def start() -> None:
        await admin.start()

    async def nothing() -> None:
        return None

    await connect_with_retry(
        start,
        nothing,
        what="Kafka admin client",
        bootstrap_servers=bootstrap_servers,
        timeout_s=timeout_s,
    )
    return admin


async def ensure_topics(
    bootstrap_servers: str,
    topics: Mapping[str, tuple[int, Mapping[str, str]]],
    *,
    options: Mapping[str, Any],
    replication_factor: int,
    timeout_s: float,
) -> None:
    """Create ``topics`` (name -> (partitions, configs)) unless they exist; an existing topic
    with another partition count is an error (its key-group ranges would not match)."""
    admin = await _started_admin(bootstrap_servers, admin_options(options), timeout_s)
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=n,
                    replication_factor=replication_factor,
                    topic_configs=dict(configs),
                )
                for name, (n, configs) in topics.items()
            ]
        )
        for entry in response.topic_errors:
            error = kafka_errors.for_code(entry[1])
            if error not in (kafka_errors.NoError, kafka_errors.TopicAlreadyExistsError):
                raise error(f"{entry[0]}: {entry[2] if len(entry) > 2 else ''}")
        # A topic just created shows its partitions and their leaders a little later:
        # wait for them, so that the first writes do not meet "not enough replicas".
        deadline = time.monotonic() + timeout_s
        while True:
            described = await admin.describe_topics(list(topics))
            ready = all(
                topic["partitions"] and all(p["leader"] >= 0 for p in topic["partitions"])
                for topic in described
            )
            if ready or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        for topic in described:
            name = topic["topic"]
            have = len(topic["partitions"])
            want = topics[name][0]
            if have != want:
                raise ConnectorError(
                    f"Kafka: internal topic {name!r} has {have} partitions, the job needs "
                    f"{want} (its key-group ranges follow the partition count): delete it "
                    "or use another application_id",
                    retriable=False,
                )
    except (kafka_errors.KafkaError, OSError) as exc:
        raise translate_error(exc, "creating internal topics") from exc
    finally:
        try:
            await admin.close()
        except Exception as exc:
            log.debug("closing the admin client: %r", exc)


async def read_partition(
    bootstrap_servers: str, tp: TopicPartition, *, options: Mapping[str, Any], timeout_s: float
) -> list[tuple[bytes | None, bytes | None]]:
    """Every committed record of ``tp`` as (key, value), up to its last stable offset."""
    kwargs = dict(options)
    consumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **kwargs,
    )

    async def start() -> None:
        await consumer.start()

    try:
        await connect_with_retry(
            start,
            consumer.stop,
            what="changelog reader",
            bootstrap_servers=bootstrap_servers,
            timeout_s=timeout_s,
        )
    except BaseException:  # also cancelled while connecting: no connection left open
        await close_fully(consumer.stop())
        raise
    key = aiokafka.TopicPartition(*tp)
    out: list[tuple[bytes | None, bytes | None]] = []
    try:
        consumer.assign([key])
        await consumer.seek_to_beginning(key)
        end = (await consumer.end_offsets([key]))[key]  # read_committed: the last stable offset
        while await consumer.position(key) < end:
            got = await consumer.getmany(key, timeout_ms=500)
            for record in got.get(key, []):
                out.append((record.key, record.value))
    except (kafka_errors.KafkaError, OSError) as exc:
        raise translate_error(exc, f"reading changelog {tp.topic}/{tp.partition}") from exc
    finally:
        await close_fully(consumer.stop())
    return out


async def topic_partitions(
    bootstrap_servers: str, topics: Sequence[str], *, options: Mapping[str, Any]
) -> dict[str, int]:
    """The partition count of each of ``topics`` (which must exist)."""
    if not topics:
        return {}
    admin = await _started_admin(bootstrap_servers, admin_options(options), 60.0)
    try:
        described = await admin.describe_topics(list(topics))
        out: dict[str, int] = {}
        for topic in described:
            error = kafka_errors.for_code(topic["error_code"])
            if error is not kafka_errors.NoError:
                raise ConnectorError(
                    f"Kafka: topic {topic['topic']!r}: {error.__name__}", retriable=False
                )
            out[topic["topic"]] = len(topic["partitions"])
        return out
    except (kafka_errors.KafkaError, OSError) as exc:
        raise translate_error(exc, "describing topics") from exc
    finally:
        try:
            await admin.close()
        except Exception as exc:
            log.debug("closing the admin client: %r", exc)


class RecordPurger:
    """Deletes records of internal topics that every reader has committed past
    (``DeleteRecords``), so repartition topics hold only what is still to be read."""

    def __init__(self, bootstrap_servers: str, *, options: Mapping[str, Any]) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._options = admin_options(options)
        self._admin: Any = None

    async def start(self, timeout_s: float) -> None:
        self._admin = await _started_admin(self.bootstrap_servers, self._options, timeout_s)

    async def delete_before(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets or self._admin is None:
            return
        await _call(
            self._admin.delete_records(
                {aiokafka.TopicPartition(*tp): RecordsToDelete(o) for tp, o in offsets.items()}
            ),
            "purging internal topics",
        )

    async def stop(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                await admin.close()
            except Exception as exc:
                log.debug("closing the admin client: %r", exc)


# -- leaving the group as a static member ----------------------------------------------
#
# A static member (group.instance.id) that closes its consumer does not leave the group:
# the point of static membership is that a restart within the session timeout moves
# nothing. A planned stop should move its tasks at once, so it sends what Kafka's admin
# client sends for removeMembersFromConsumerGroup: LeaveGroup v3 naming the instance id.
# aiokafka's protocol types stop at LeaveGroup v1; v3 is built from them here.


class _LeaveGroupResponseV3(Response):  # type: ignore[misc]
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        (
            "members",
            Array(
                ("member_id", String("utf-8")),
                ("group_instance_id", String("utf-8")),
                ("error_code", Int16),
            ),
        ),
    )


class _LeaveGroupRequestV3(RequestStruct):  # type: ignore[misc]
    API_KEY = 13
    API_VERSION = 3
    RESPONSE_TYPE = _LeaveGroupResponseV3
    SCHEMA = Schema(
        ("group_id", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


class _StaticLeave(Request[_LeaveGroupRequestV3]):  # type: ignore[misc]
    API_KEY = 13

    def __init__(self, group_id: str, instance_id: str) -> None:
        self.group_id = group_id
        self.instance_id = instance_id

    def build(self, request_struct_class: type[_LeaveGroupRequestV3]) -> _LeaveGroupRequestV3:
        return request_struct_class(self.group_id, [("", self.instance_id)])


async def leave_group_as_static_member(
    bootstrap_servers: str,
    *,
    group_id: str,
    instance_id: str,
    options: Mapping[str, Any],
    timeout_s: float = 10.0,
) -> None:
    """Remove the static member ``instance_id`` from ``group_id`` now (a rebalance starts
    at once instead of after the session timeout)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, **admin_options(options))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        node = await asyncio.wait_for(
            client.coordinator_lookup(CoordinationType.GROUP, group_id), timeout_s
        )
        response = await asyncio.wait_for(
            client.send(
                node, _StaticLeave(group_id, instance_id), group=ConnectionGroup.COORDINATION
            ),
            timeout_s,
        )
        errors = [response.error_code] + [m[2] for m in response.members]
        error = next((kafka_errors.for_code(c) for c in errors if c), None)
        if error is not None and error is not kafka_errors.UnknownMemberIdError:
            raise ConnectorError(
                f"Kafka: leaving group {group_id} as {instance_id} failed: {error.__name__}",
                retriable=True,
            )
    except (kafka_errors.KafkaError, OSError, TimeoutError) as exc:
        raise translate_error(exc, f"leaving group {group_id}") from exc
    finally:
        try:
            await client.close()
        except Exception as exc:
            log.debug("closing the client: %r", exc)
