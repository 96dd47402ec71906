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
from flowactors.checkpoint.storage import CheckpointStorage, CompletedCheckpoint
from flowactors.errors import (
    CheckpointError,
    JobFailedError,
)
from flowactors.runtime.config import ExecutionConfig
from flowactors.runtime.failures import TaskFailure
from flowactors.runtime.graph import Plan, Transformation
from flowactors.runtime.metrics import JobMetrics, collect_metrics
from flowactors.runtime.operators import StreamOperator
from flowactors.runtime.physical import Restore, RunInfo, build_tasks
from flowactors.runtime.runner import Runner
from flowactors.runtime.task import StreamTask

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
        run = RunInfo(
            job_name=self.job_name,
            max_parallelism=self.max_parallelism,
            attempt=self.attempt,
            run_id=self.run_id,
            checkpointing=self.checkpoint_config is not None,
            highest_parallelism=self.highest_parallelism,
        )
        restore = None
        if self.restore is not None:
            serializer = self.checkpoint_config.serializer if self.checkpoint_config else PICKLE
            restore = Restore(self.restore, serializer, self.allow_non_restored_state)
        self.tasks, self.operators = build_tasks(self.plan, self.config, run, restore)

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
        # A supervisor cancelled before it ever ran stopped nothing: stop what start() began.
        await self._stop_all()
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
