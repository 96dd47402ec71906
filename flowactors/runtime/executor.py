"""Runs a plan: builds the actors and their wiring, supervises them, cancels them.

:class:`JobExecution` owns everything one run of a job started. Any task that
fails makes the job fail: the other tasks are cancelled and awaited (no task
outlives the job), and :class:`~flowactors.errors.JobFailedError` names the
operator, the subtask and the original error. Cancelling the job (or the task
awaiting it) cancels every task it started.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from dataclasses import dataclass

from flowactors.checkpoint.config import PICKLE, CheckpointConfig
from flowactors.checkpoint.coordinator import CheckpointCoordinator
from flowactors.checkpoint.snapshot import RestoreView
from flowactors.checkpoint.storage import CheckpointStorage, CompletedCheckpoint
from flowactors.errors import (
    CheckpointError,
    IncompatibleSnapshotError,
    InvalidGraphError,
    JobFailedError,
)
from flowactors.runtime.config import ExecutionConfig
from flowactors.runtime.context import OperatorContext
from flowactors.runtime.failures import TaskFailure, key_by_name
from flowactors.runtime.graph import Edge, Plan, Transformation
from flowactors.runtime.keyed import KeyedOperator, KeySelectorCheck
from flowactors.runtime.mailbox import Mailbox
from flowactors.runtime.metrics import JobMetrics, collect_metrics
from flowactors.runtime.operators import StreamOperator
from flowactors.runtime.runner import Runner
from flowactors.runtime.task import BatchHandler, StreamTask
from flowactors.runtime.writer import Channel, Partitioning, PartitionSpec, RecordWriter
from flowactors.time.clock import SystemClock

log = logging.getLogger("flowactors.runtime")


class JobStatus(enum.Enum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    RESTARTING = "RESTARTING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


@dataclass(frozen=True)
class JobExecutionResult:
    """How a job ended. ``execute_blocking`` also returns one when a signal stopped the
    job: ``status`` is then ``CANCELED``, or ``FINISHED`` with the ``savepoint`` it
    stopped with."""

    job_name: str
    net_runtime_ms: float
    metrics: JobMetrics
    status: JobStatus = JobStatus.FINISHED
    savepoint: str | None = None


def _channels_per_receiver(plan: Plan, edge: Edge) -> int:
    """A forward edge gives each receiver one channel; others one per sending subtask."""
    return 1 if edge.kind is Partitioning.FORWARD else plan.parallelism[edge.upstream]


class JobExecution:
    """One run of a job's plan."""

    def __init__(
        self,
        job_name: str,
        plan: Plan,
        config: ExecutionConfig,
        max_parallelism: int,
        *,
        checkpoint_config: CheckpointConfig | None = None,
        restore: CompletedCheckpoint | None = None,
        attempt: int = 0,
        allow_non_restored_state: bool = False,
        highest_parallelism: dict[str, int] | None = None,
    ) -> None:
        self.job_name = job_name
        #: Per uid, the highest parallelism any run of the job started with.
        self.highest_parallelism = highest_parallelism or {}
        self.plan = plan
        self.config = config
        self.max_parallelism = max_parallelism
        self.checkpoint_config = checkpoint_config
        self.restore = restore
        self.attempt = attempt
        self.allow_non_restored_state = allow_non_restored_state
        self.run_id = uuid.uuid4().hex[:12]
        self.status = JobStatus.CREATED
        self.tasks: list[StreamTask] = []
        self.operators: dict[Transformation, list[StreamOperator]] = {}
        self.coordinator: CheckpointCoordinator | None = None
        self._asyncio_tasks: list[asyncio.Task[None]] = []
        self._coordinator_task: asyncio.Task[None] | None = None
        self._runner: Runner[JobExecutionResult] | None = None
        self._started = 0.0

    # -- building ----------------------------------------------------------

    def _build(self) -> None:
        plan, config = self.plan, self.config
        tasks: dict[tuple[int, int], StreamTask] = {}  # (chain index, subtask) -> task
        chain_index = {id(c): i for i, c in enumerate(plan.chains)}

        # Channels of each chain head: one per upstream subtask of each input edge.
        channel_base: dict[tuple[Transformation, int], int] = {}
        num_channels: dict[Transformation, int] = {}
        for chain in plan.chains:
            base = 0
            for i, edge in enumerate(plan.inputs_of(chain.head)):
                channel_base[(chain.head, i)] = base
                base += _channels_per_receiver(plan, edge)
            num_channels[chain.head] = base

        clock = config.clock or SystemClock()
        for chain in plan.chains:
            ci = chain_index[id(chain)]
            for s in range(chain.parallelism):
                ops: list[StreamOperator] = []
                mailbox = Mailbox(num_channels[chain.head], config.mailbox_capacity)
                task = StreamTask(chain.name, s, ops, mailbox, config)
                task.processing_time = clock.service(task.post_control)
                for t in chain.members:
                    try:
                        op = t.factory()
                    except Exception as exc:
                        raise InvalidGraphError(
                            f"cannot create operator {t.name!r}: {type(exc).__name__}: {exc}"
                        ) from exc
                    op.setup(
                        OperatorContext(
                            job_name=self.job_name,
                            operator_name=t.name,
                            uid=plan.uids[t],
                            subtask_index=s,
                            parallelism=chain.parallelism,
                            max_parallelism=self.max_parallelism,
                            config=config,
                            post_control=task.post_control,
                            processing_time=task.processing_time,
                            attempt=self.attempt,
                            run_id=self.run_id,
                            checkpointing=self.checkpoint_config is not None,
                            highest_parallelism=max(
                                chain.parallelism,
                                self.highest_parallelism.get(plan.uids[t], 0),
                            ),
                            turn=task.turn,
                        )
                    )
                    ops.append(op)
                    self.operators.setdefault(t, []).append(op)
                task.uids = [plan.uids[t] for t in chain.members]
                if self.restore is not None and s == 0:
                    for uid, op in zip(task.uids, ops):
                        self._check_restores_into(uid, op)
                if self.restore is not None:
                    serializer = (
                        self.checkpoint_config.serializer if self.checkpoint_config else PICKLE
                    )
                    task.restore_views = [
                        RestoreView(self.restore, uid, s, chain.parallelism, serializer)
                        for uid in task.uids
                    ]
                tasks[(ci, s)] = task

        # Wiring: every edge either chains two operators or gets a writer per sender.
        for edge in plan.edges:
            up, down = edge.upstream, edge.downstream
            up_ops = self.operators[up]
            for s, up_op in enumerate(up_ops):
                out = up_op.output if edge.input.tag is None else up_op.side_output(edge.input.tag)
                if edge.chained:
                    target = self.operators[down][s]
                    spec = edge.input.partition
                    if edge.kind is Partitioning.HASH and not target.keyed and spec is not None:
                        assert spec.key_selector is not None
                        check = KeySelectorCheck(spec.key_selector, down.name)
                        check.output.operators.append(target)
                        check.output.seal()
                        target = check
                    out.operators.append(target)
                    continue
                down_chain = plan.chain_of[down]
                dci = chain_index[id(down_chain)]
                index_of_edge = plan.inputs_of(down).index(edge)
                base = channel_base[(down, index_of_edge)]
                if edge.kind is Partitioning.FORWARD:
                    channels = [Channel(tasks[(dci, s)].mailbox, base)]
                else:
                    # GLOBAL sends data to the first channel only, but watermarks and
                    # end-of-input to all of them, like every other partitioning.
                    channels = [
                        Channel(tasks[(dci, r)].mailbox, base + s)
                        for r in range(down_chain.parallelism)
                    ]
                spec = edge.input.partition or PartitionSpec(edge.kind)
                if spec.kind is not edge.kind:
                    spec = PartitionSpec(edge.kind, spec.key_selector)
                writer = RecordWriter(
                    channels,
                    spec,
                    batch_size=config.batch_size,
                    sender_index=s,
                    max_parallelism=self.max_parallelism,
                    operator_name=(
                        key_by_name(down.name) if edge.kind is Partitioning.HASH else up.name
                    ),
                )
                out.writers.append(writer)
                tasks[(chain_index[id(plan.chain_of[up])], s)].writers.append(writer)

        # Input handlers of chain heads, per channel.
        for chain in plan.chains:
            ci = chain_index[id(chain)]
            in_edges = plan.inputs_of(chain.head)
            for s in range(chain.parallelism):
                task = tasks[(ci, s)]
                head = task.head
                handlers: list[BatchHandler] = []
                for edge in in_edges:
                    handler = head.process_batch
                    if edge.input.input_index == 1:
                        handler = head.process_batch2  # type: ignore[attr-defined]
                    handlers.extend([handler] * _channels_per_receiver(plan, edge))
                task.channel_handlers = handlers

        for ops in self.operators.values():
            for op in ops:
                op.output.seal()
                for side in op.side_outputs.values():
                    side.seal()
        self.tasks = list(tasks.values())

    def _check_restores_into(self, uid: str, op: StreamOperator) -> None:
        """Refuse a snapshot whose state of ``uid`` the operator now there would drop
        (another kind of operator took the uid), unless the user allowed that."""
        assert self.restore is not None
        meta = self.restore.operators().get(uid)
        if not meta or self.allow_non_restored_state:
            return
        keyed = "keyed" in meta or "rocksdb" in meta
        if keyed and not isinstance(op, KeyedOperator):
            lost = "keyed state"
        elif type(op).initialize_state is StreamOperator.initialize_state:
            lost = "operator state"
        else:
            return
        raise IncompatibleSnapshotError(
            f"operator {uid!r} in the {self.restore.kind} {self.restore.directory} has "
            f"{lost}, but the operator with that uid now ({type(op).__name__}) cannot take it "
            "back: give the operators their old uid(), or pass allow_non_restored_state=True "
            "to drop that state"
        )

    # -- running -----------------------------------------------------------

    def start(self) -> None:
        """Build the actors and start them (requires a running event loop)."""
        self._build()
        self._started = asyncio.get_running_loop().time()
        self.status = JobStatus.RUNNING
        cp = self.checkpoint_config
        storage = CheckpointStorage(cp.storage, self.job_name) if cp is not None else None
        first_id = 1
        if storage is not None:
            first_id = storage.latest_id() + 1
        if self.restore is not None:
            first_id = max(first_id, self.restore.checkpoint_id + 1)
        self.coordinator = CheckpointCoordinator(
            self.job_name,
            self.tasks,
            cp,
            storage,
            first_id,
            {self.plan.uids[t]: self.plan.parallelism[t] for t in self.plan.transformations},
            cp.serializer if cp is not None else PICKLE,
        )
        for task in self.tasks:
            task.checkpoints = self.coordinator
        self._coordinator_task = asyncio.create_task(
            self.coordinator.run(), name=f"flowactors:{self.job_name}:checkpoint-coordinator"
        )
        for task in self.tasks:
            self._asyncio_tasks.append(
                asyncio.create_task(
                    task.run(), name=f"flowactors:{self.job_name}:{task.name}#{task.subtask_index}"
                )
            )
        self._runner = Runner(
            self.job_name, self._supervise(), f"flowactors:{self.job_name}:supervisor"
        )
        log.info("job %r started: %d tasks", self.job_name, len(self.tasks))

    async def _supervise(self) -> JobExecutionResult:
        pending: set[asyncio.Task[None]] = set(self._asyncio_tasks)
        coordinator = self._coordinator_task
        assert coordinator is not None
        failure: BaseException | None = None
        try:
            while pending and failure is None:
                done, pending = await asyncio.wait(
                    pending | {coordinator}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(coordinator)
                for t in done:
                    if not t.cancelled() and t.exception() is not None:
                        failure = t.exception()
                        break
        except asyncio.CancelledError:
            await self._stop_all()
            self.status = JobStatus.CANCELED
            log.info("job %r cancelled", self.job_name)
            raise
        await self._stop_coordinator()
        if failure is not None:
            await self._stop_all()
            self.status = JobStatus.FAILED
            if isinstance(failure, TaskFailure):
                error = JobFailedError(
                    self.job_name, failure.operator, failure.subtask, failure.cause
                )
                cause = failure.cause
            elif isinstance(failure, CheckpointError):
                error = JobFailedError(self.job_name, "<checkpoint coordinator>", -1, failure)
                cause = failure
            else:
                error = JobFailedError(self.job_name, "<runtime>", -1, failure)
                cause = failure
            log.error("%s", error)
            raise error from cause
        self.status = JobStatus.FINISHED
        runtime = (asyncio.get_running_loop().time() - self._started) * 1000.0
        log.info("job %r finished in %.0f ms", self.job_name, runtime)
        return JobExecutionResult(self.job_name, runtime, self.metrics())

    async def _stop_coordinator(self) -> None:
        if self.coordinator is not None:
            self.coordinator.abort_all("the job ended")
        task = self._coordinator_task
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def _stop_all(self) -> None:
        await self._stop_coordinator()
        for t in self._asyncio_tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*self._asyncio_tasks, return_exceptions=True)

    async def wait(self) -> JobExecutionResult:
        assert self._runner is not None, "job not started"
        return await self._runner.wait()

    async def cancel(self) -> None:
        assert self._runner is not None, "job not started"
        await self._runner.cancel()
        if self.status is JobStatus.RUNNING:
            self.status = JobStatus.CANCELED

    @property
    def done(self) -> bool:
        return self._runner is not None and self._runner.done

    def all_tasks_done(self) -> bool:
        return all(t.done() for t in self._asyncio_tasks)

    # -- metrics -----------------------------------------------------------

    def metrics(self) -> JobMetrics:
        return collect_metrics(self.tasks, self.config.batch_size)
