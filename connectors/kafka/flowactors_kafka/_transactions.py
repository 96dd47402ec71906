"""The exactly-once Kafka writer: one transaction per checkpoint per subtask.

Life of a transaction
    Records go into the open transaction. At checkpoint *n*'s barrier (``prepare_commit``)
    the writer waits until the broker has every record of it and keeps it open: it is
    *pre-committed*. ``snapshot_state`` records it as pending — transactional id, producer id,
    epoch, *n*. New records go into the next transaction, opened right away in the
    background. When checkpoint *n* completes (``notify_checkpoint_complete``) every pending
    transaction up to *n* is committed. A transaction with no records is not pre-committed;
    it simply stays open into the next checkpoint.

Transactional ids: a small pool per subtask, a fresh epoch per transaction
    Ids are ``<prefix>-<subtask>-<k>`` for ``k`` below the pool size (8 by default; about 3
    are in use at once). Each transaction gets its own producer, whose start
    (``InitProducerId``) bumps the id's epoch, so (id, producer id, epoch) names exactly one
    transaction, ever. That is what makes committing from a checkpoint safe: aiokafka cannot
    resume a transaction in a new producer (Flink does it by reflection on the Java client),
    so recovery sends ``EndTxn(COMMIT)`` itself with the recorded id, producer id and epoch
    (:class:`~flowactors_kafka._client.TransactionCoordinatorClient`). The broker commits the
    transaction if it is still open with that epoch, answers success again if it was already
    committed with it, and refuses with a newer epoch. A refusal is unambiguous because an id
    whose transaction a restorable checkpoint lists is never given a new epoch by this writer
    before a later checkpoint has completed: the slot stays reserved until then. A bounded
    pool keeps the broker's transactional-id state bounded too (one new id per checkpoint,
    as Flink's KafkaSink once did, grows it without end: FLINK-34554).

Recovery (``open``)
    1. Commit every pending transaction of the restored checkpoint (union state: each new
       subtask commits those of the old subtasks ``j`` with ``j % parallelism == subtask``).
       One the broker refuses was aborted since — its ``transaction.timeout.ms`` ran out
       before the job came back — and its records are lost: the job fails with a
       ``ConnectorError`` saying so (or, with ``set_fail_on_lost_transaction(False)``, it
       logs an error and goes on, as Flink does).
    2. Fence every other id of those old subtasks and of its own (``InitProducerId``), and
       those of every subtask any run of the job had (``highest_parallelism``: the storage
       records it before a run starts, so a run at a higher parallelism that died before
       its first checkpoint is known too): the broker aborts what a crashed run left open,
       so read_committed consumers are not held up and zombies cannot commit. Ids listed as
       pending anywhere in the checkpoint are skipped (they are committed, not open).
    On a fresh start (no checkpoint) only step 2 runs, for the subtask's own ids.

Timeouts
    A transaction is open from its first record until the checkpoint after it completes:
    about one checkpoint interval plus the checkpoint's duration, and across a failure until
    the job has restarted and recovered. ``transaction.timeout.ms`` (default here 15 min, the
    broker's default ``transaction.max.timeout.ms``) must exceed the longest of these or the
    broker aborts the transaction and its records are lost. The broker refuses a timeout
    above its ``transaction.max.timeout.ms``; raise that on the broker for longer ones.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flowactors import ConnectorError
from flowactors.spi import SinkWriter, SinkWriterContext
from flowactors_kafka._client import (
    Consumer,
    Producer,
    TopicPartition,
    TransactionCoordinatorClient,
    close_fully,
    consumer_options_of,
    wait_all,
    wait_for_topic,
)
from flowactors_kafka._writer import Broken, RecordEncoder, _SinkSettings

log = logging.getLogger("flowactors_kafka")

T = TypeVar("T")

_STATE_KEY = "flowactors_kafka.sink"
_STATE_VERSION = 1


@dataclass(frozen=True)
class _Pending:
    """A pre-committed transaction as a snapshot records it."""

    transactional_id: str
    pid: int
    epoch: int
    checkpoint_id: int
    probe: tuple[str, int, int] | None

    @staticmethod
    def of(entry: Sequence[Any]) -> _Pending:
        tid, pid, epoch, checkpoint_id, *rest = entry
        probe = tuple(rest[0]) if rest and rest[0] is not None else None
        return _Pending(str(tid), int(pid), int(epoch), int(checkpoint_id), probe)


class _SlotState(enum.Enum):
    FREE = "free"
    OPEN = "open"  #: a producer with a transaction begun (current or the next one)
    PENDING = "pending"  #: pre-committed at a barrier, awaiting its checkpoint
    RESERVED = "reserved"  #: committed; a restorable checkpoint may still list it


@dataclass
class _Slot:
    index: int
    transactional_id: str
    state: _SlotState = _SlotState.FREE
    producer: Producer | None = None
    producer_id: int = -1
    epoch: int = -1
    checkpoint_id: int = -1
    #: RESERVED until a checkpoint after this id completes.
    free_after: int = -1
    records: int = 0
    in_flight: list[asyncio.Future[Any]] = field(default_factory=list)
    #: The newest batch sent in this transaction; its first record identifies the transaction
    #: in the log (see ``ExactlyOnceWriter._resolve``).
    last_batch: asyncio.Future[Any] | None = None
    #: ``(topic, partition, offset)`` of one record of the transaction, once pre-committed.
    probe: tuple[str, int, int] | None = None


class ExactlyOnceWriter(SinkWriter[T]):
    """See the module docstring."""

    def __init__(self, settings: _SinkSettings, context: SinkWriterContext) -> None:
        assert settings.transactional_id_prefix is not None
        self.settings = settings
        self.context = context
        self.subtask = context.subtask_index
        self.prefix = settings.transactional_id_prefix
        self.encoder = RecordEncoder(settings, self.subtask)
        self.slots = [
            _Slot(k, f"{self.prefix}-{self.subtask}-{k}")
            for k in range(settings.transaction_pool_size)
        ]
        self.current: _Slot | None = None
        self.next_task: asyncio.Task[_Slot] | None = None
        self.pending: list[_Slot] = []
        self.last_snapshot = -1
        self.coordinator: TransactionCoordinatorClient | None = None
        self.broken = Broken(f"Kafka sink {context.sink_name!r} subtask {self.subtask}")
        #: What recovery did (for tests and logs).
        self.recovered_commits = 0
        self.fenced = 0

    def _client_id(self, what: str) -> str:
        s, ctx = self.settings, self.context
        return f"{s.client_id_prefix}-{ctx.job_name}-{ctx.sink_name}-{what}-{self.subtask}"

    # -- recovery ----------------------------------------------------------------------

    async def open(self) -> None:
        s, ctx = self.settings, self.context
        if not ctx.checkpointing:
            log.warning(
                "exactly-once Kafka sink %r without checkpointing: one transaction for the "
                "whole job, committed when the input ends",
                ctx.sink_name,
            )
        self.coordinator = TransactionCoordinatorClient(
            s.bootstrap_servers, client_id=self._client_id("recovery"), options=s.producer_options
        )
        await self.coordinator.start(s.startup_timeout_s)
        try:
            if isinstance(s.topic, str):
                await wait_for_topic(
                    self.coordinator.topics,
                    s.topic,
                    servers=s.bootstrap_servers,
                    timeout_s=s.startup_timeout_s,
                )
            await self._recover()
        finally:
            await self.coordinator.stop()

    async def _recover(self) -> None:
        s, ctx = self.settings, self.context
        assert self.coordinator is not None
        entries = [
            e
            for e in (ctx.restored_union_state or [])
            if isinstance(e, dict) and e.get(_STATE_KEY) == _STATE_VERSION
        ]
        p, me = ctx.parallelism, self.subtask
        pool = s.transaction_pool_size
        old_subtasks = {me}
        listed: set[str] = set()
        uncertain: list[_Pending] = []
        if entries:
            old_p = int(entries[0]["parallelism"])
            old_subtasks |= {j for j in range(old_p) if j % p == me}
            pool = max([pool, *(int(e["pool_size"]) for e in entries)])
            for entry in entries:
                listed.update(_Pending.of(t).transactional_id for t in entry["pending"])
            for entry in entries:
                if int(entry["subtask"]) not in old_subtasks:
                    continue
                for recorded in entry["pending"]:
                    txn = _Pending.of(recorded)
                    outcome = await self.coordinator.commit(
                        txn.transactional_id, txn.pid, txn.epoch
                    )
                    if outcome.status == "committed":
                        self.recovered_commits += 1
                    else:
                        uncertain.append(txn)
        # What this writer will reuse of its own ids must wait until a checkpoint of this run
        # completes: until then the restored checkpoint is the one a failure goes back to.
        for slot in self.slots:
            if slot.transactional_id in listed:
                slot.state, slot.free_after = _SlotState.RESERVED, -1
        # Fence the ids of every subtask any run may have had (a run at a higher
        # parallelism may have died before a checkpoint recorded it), this one's share.
        fenced_subtasks = old_subtasks | {j for j in range(ctx.highest_parallelism) if j % p == me}
        ids = [
            f"{self.prefix}-{j}-{k}"
            for j in sorted(fenced_subtasks)
            for k in range(pool)
            if f"{self.prefix}-{j}-{k}" not in listed
        ]
        # A recorded transaction whose id has a newer epoch is settled one way or the other;
        # whatever is open under that id now is a zombie's.
        ids += [txn.transactional_id for txn in uncertain]
        limit = asyncio.Semaphore(16)

        async def fence(tid: str) -> None:
            async with limit:
                assert self.coordinator is not None
                await self.coordinator.fence(tid)

        await asyncio.gather(*(fence(tid) for tid in ids))
        self.fenced = len(ids)
        for txn in uncertain:
            await self._resolve(txn)
        log.info(
            "Kafka sink %s subtask %d: committed %d recovered transaction(s), fenced %d id(s)",
            ctx.sink_name,
            me,
            self.recovered_commits,
            self.fenced,
        )

    async def _resolve(self, txn: _Pending) -> None:
        """A recorded transaction the broker would not commit: its id has a newer epoch.

        Either it was committed and the id used again since (restoring an older checkpoint
        or savepoint), or Kafka aborted it (its ``transaction.timeout.ms`` ran out): the log
        tells, since read_committed consumers see one of its records only if it committed.
        """
        s = self.settings
        assert self.coordinator is not None
        committed: bool | None = None
        if txn.probe is not None:
            topic, partition, offset = txn.probe
            consumer = Consumer(
                s.bootstrap_servers,
                group_id=None,
                client_id=self._client_id("recovery-check"),
                options={
                    **consumer_options_of(s.producer_options),
                    "isolation_level": "read_committed",
                },
            )
            try:
                await consumer.start(s.startup_timeout_s)
                committed = await consumer.committed_record_at(
                    TopicPartition(topic, partition), offset, timeout_s=30.0
                )
            finally:
                await consumer.stop()
        if committed:
            self.recovered_commits += 1
            log.info(
                "Kafka sink: transaction %s of checkpoint %d was committed before its id was "
                "used again",
                txn.transactional_id,
                txn.checkpoint_id,
            )
            return
        why = (
            "Kafka aborted it, most likely because recovery took longer than "
            f"transaction.timeout.ms ({self.coordinator.transaction_timeout_ms} ms). "
            "Its records are lost."
            if committed is False
            else "whether it was committed cannot be told (its record is not readable)."
        )
        message = (
            f"Kafka sink {self.context.sink_name!r}: the transaction {txn.transactional_id} "
            f"(producer id {txn.pid}, epoch {txn.epoch}) of checkpoint {txn.checkpoint_id} "
            f"can no longer be committed: {why} A restart cannot bring them back. Raise "
            "transaction.timeout.ms (and the broker's transaction.max.timeout.ms) so that "
            "recovery finishes in time, or pass fail_on_lost_transaction=False to go on "
            "without them."
        )
        if s.fail_on_lost_transaction:
            raise ConnectorError(message, retriable=False)
        log.error("%s", message)

    # -- transactions ------------------------------------------------------------------

    def _take_slot(self) -> _Slot:
        for slot in self.slots:
            if slot.state is _SlotState.FREE:
                slot.state = _SlotState.OPEN
                return slot
        states = ", ".join(f"{s.transactional_id}: {s.state.value}" for s in self.slots)
        raise ConnectorError(
            f"Kafka sink {self.context.sink_name!r}: all {len(self.slots)} transactional ids are "
            f"in use ({states}); checkpoints are not completing. Raise the pool with "
            f"set_transaction_pool_size or look at why checkpoints fail.",
            retriable=True,
        )

    async def _begin(self, slot: _Slot) -> _Slot:
        s = self.settings
        producer = Producer(
            s.bootstrap_servers,
            client_id=self._client_id(f"txn-{slot.index}"),
            options=s.producer_options,
            transactional_id=slot.transactional_id,
        )
        slot.producer = producer  # from now on close() finds it, whatever happens to this task
        try:
            await producer.start(s.startup_timeout_s)
            await producer.begin_transaction()
        except BaseException:
            await producer.abandon()
            slot.state, slot.producer = _SlotState.FREE, None
            raise
        slot.producer_id, slot.epoch = producer.producer_id, producer.producer_epoch
        slot.records, slot.in_flight, slot.last_batch, slot.probe = 0, [], None, None
        return slot

    def _open_next_in_background(self) -> None:
        if self.next_task is None:
            slot = self._take_slot()
            self.next_task = asyncio.create_task(
                self._begin(slot), name=f"flowactors:kafka-txn:{slot.transactional_id}"
            )

    async def _current(self) -> _Slot:
        if self.current is None:
            if self.next_task is None:
                self._open_next_in_background()
            task = self.next_task
            assert task is not None
            # Shielded: if this write is cancelled, the starting producer stays in next_task
            # for close() to clean up, instead of being cancelled halfway.
            await asyncio.shield(task)
            self.next_task = None
            self.current = task.result()
        return self.current

    async def write(self, values: list[T], timestamps: list[int | None] | None) -> None:
        self.broken.check()
        with self.broken.latch():
            await self._write(values, timestamps)

    async def _write(self, values: list[T], timestamps: list[int | None] | None) -> None:
        slot = await self._current()
        assert slot.producer is not None
        futures = await self.encoder.send(slot.producer, values, timestamps)
        if futures:
            slot.in_flight.extend(futures)
            slot.last_batch = futures[-1]
        slot.records += len(values)
        if len(slot.in_flight) > 256:
            done = [f for f in slot.in_flight if f.done()]
            slot.in_flight = [f for f in slot.in_flight if not f.done()]
            await wait_all(done, f"writing transaction {slot.transactional_id}")

    async def _flush(self, slot: _Slot) -> None:
        assert slot.producer is not None
        in_flight, slot.in_flight = slot.in_flight, []
        await wait_all(
            in_flight,
            f"writing transaction {slot.transactional_id}",
            slot.producer.operation_timeout_s,
        )
        await slot.producer.flush()

    async def prepare_commit(self, checkpoint_id: int) -> None:
        self.broken.check()
        with self.broken.latch():
            await self._prepare_commit(checkpoint_id)

    async def _prepare_commit(self, checkpoint_id: int) -> None:
        slot = self.current
        if slot is None or slot.records == 0:
            return  # nothing to pre-commit: an empty transaction stays open
        await self._flush(slot)
        if slot.last_batch is not None:
            metadata = slot.last_batch.result()
            slot.probe = (metadata.topic, metadata.partition, metadata.offset)
        slot.state, slot.checkpoint_id = _SlotState.PENDING, checkpoint_id
        self.pending.append(slot)
        self.current = None
        self._open_next_in_background()

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        self.last_snapshot = max(self.last_snapshot, checkpoint_id)
        return [
            {
                _STATE_KEY: _STATE_VERSION,
                "subtask": self.subtask,
                "parallelism": self.context.parallelism,
                "pool_size": len(self.slots),
                "pending": [
                    (s.transactional_id, s.producer_id, s.epoch, s.checkpoint_id, s.probe)
                    for s in self.pending
                ],
            }
        ]

    async def _commit(self, slot: _Slot) -> None:
        assert slot.producer is not None
        await slot.producer.commit_transaction()
        await slot.producer.abandon()
        slot.producer = None

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        for slot in self.slots:
            if slot.state is _SlotState.RESERVED and slot.free_after < checkpoint_id:
                slot.state = _SlotState.FREE
        done = [s for s in self.pending if s.checkpoint_id <= checkpoint_id]
        for slot in done:
            await self._commit(slot)
            self.pending.remove(slot)
            # The newest snapshot taken so far may still list it as pending.
            slot.state, slot.free_after = _SlotState.RESERVED, self.last_snapshot

    async def flush(self, end_of_input: bool) -> None:
        if not end_of_input:
            return
        self.broken.check()
        # The input is complete: nothing will be replayed, so everything is final.
        for slot in list(self.pending):
            await self._commit(slot)
            self.pending.remove(slot)
            slot.state = _SlotState.FREE
        current = self.current
        if current is not None:
            await self._flush(current)
            await self._commit(current)
            current.state, self.current = _SlotState.FREE, None

    async def close(self) -> None:
        await close_fully(self._close())

    async def _close(self) -> None:
        task, self.next_task = self.next_task, None
        if task is not None:
            # Let a producer that is starting finish (a few ms): aiokafka leaks connections
            # when its start is cancelled halfway.
            await asyncio.wait({task}, timeout=5.0)
            task.cancel()
            results = await asyncio.gather(task, return_exceptions=True)
            slot = results[0]
            if isinstance(slot, _Slot) and slot.producer is not None:
                await slot.producer.abandon()
        current, self.current = self.current, None
        if current is not None and current.producer is not None:
            # No checkpoint covers it: abort now rather than leave read_committed consumers
            # waiting until the next run fences it.
            await current.producer.abort_transaction(timeout_s=2.0)
        for slot in self.slots:
            producer, slot.producer = slot.producer, None
            if producer is not None:
                # Pending transactions stay open on purpose: a restore commits what its
                # checkpoint lists and fences the rest.
                await producer.abandon()
