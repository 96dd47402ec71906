"""Runs a job through failures: restore, restart under a strategy, resume after a crash.

A :class:`JobMaster` starts a :class:`JobExecution`; when it fails, the restart
strategy decides whether and when to run again, from the newest complete
checkpoint (state, timers and source positions), and ``JobFailedError`` reports
how many attempts were made when it gives up. When a job starts with checkpoint
storage that already holds a complete checkpoint of the same job name (a
service restarted by its supervisor), it resumes from the newest one
(``resume="latest"``) — or from a savepoint the job took, when that is newer
(a service stopped with ``stop_with_savepoint`` and deployed again). When
snapshots exist but none verifies, it refuses to start unless the user chose
``resume="latest-or-empty"``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from flowactors.checkpoint.config import CheckpointConfig, NoRestart, RestartStrategy
from flowactors.checkpoint.storage import (
    CheckpointStorage,
    CompletedCheckpoint,
)
from flowactors.errors import (
    CheckpointError,
    IncompatibleSnapshotError,
    JobFailedError,
    NoValidCheckpointError,
    is_retriable,
)
from flowactors.runtime.config import ExecutionConfig
from flowactors.runtime.executor import JobExecution, JobExecutionResult, JobStatus
from flowactors.runtime.graph import Plan
from flowactors.runtime.metrics import JobMetrics
from flowactors.runtime.runner import Runner
from flowactors.state.rocksdb import RocksDBStateBackend

log = logging.getLogger("flowactors.runtime")


class JobMaster:
    def __init__(
        self,
        job_name: str,
        plan: Plan,
        config: ExecutionConfig,
        max_parallelism: int,
        checkpoint_config: CheckpointConfig | None,
        restart_strategy: RestartStrategy,
        savepoint_path: Path | None,
        allow_non_restored_state: bool,
    ) -> None:
        self.job_name = job_name
        self.plan = plan
        self.config = config
        self.max_parallelism = max_parallelism
        self.checkpoint_config = checkpoint_config
        self.restart_strategy = restart_strategy
        self.savepoint_path = savepoint_path
        self.allow_non_restored_state = allow_non_restored_state
        self.storage = (
            CheckpointStorage(checkpoint_config.storage, job_name) if checkpoint_config else None
        )
        self.execution: JobExecution | None = None
        self.attempts = 0
        self.restored_from: CompletedCheckpoint | None = None
        self._restarting = False
        self._runner: Runner[JobExecutionResult] | None = None
        self._started = asyncio.Event()

    # -- choosing what to restore -------------------------------------------

    def initial_restore(self) -> CompletedCheckpoint | None:
        if self.savepoint_path is not None:
            checkpoint = CompletedCheckpoint.load(self.savepoint_path)
            self._check_matches(checkpoint)
            log.info("job %r starts from savepoint %s", self.job_name, self.savepoint_path)
            return checkpoint
        config = self.checkpoint_config
        if self.storage is not None and config is not None and config.resume != "none":
            strict = config.resume == "latest"
            latest = self.storage.latest_valid(strict=strict)
            if latest is None and not strict and self.storage.latest_id():
                log.warning(
                    "job %r starts with empty state: no snapshot in %s verifies "
                    "(resume='latest-or-empty')",
                    self.job_name,
                    self.storage.job_dir,
                )
            if latest is not None:
                self._check_matches(latest)
                log.info(
                    "job %r resumes from %s %d in %s",
                    self.job_name,
                    latest.kind,
                    latest.checkpoint_id,
                    latest.directory,
                )
                return latest
        return None

    def _check_matches(self, checkpoint: CompletedCheckpoint) -> None:
        """Refuse a snapshot whose state this job would silently drop or misread."""
        where = f"the {checkpoint.kind} {checkpoint.directory}"
        uids = set(self.plan.uids.values())
        missing = sorted(set(checkpoint.operators()) - uids)
        if missing and not self.allow_non_restored_state:
            raise IncompatibleSnapshotError(
                f"{where} holds state of operators this job does not have: "
                f"{', '.join(missing)}. Give those operators the same uid(), or pass "
                "allow_non_restored_state=True to drop that state"
            )
        on_disk = isinstance(self.config.state_backend, RocksDBStateBackend)
        for uid, meta in checkpoint.operators().items():
            if uid not in uids:
                continue
            if "max_parallelism" in meta and meta["max_parallelism"] != self.max_parallelism:
                recorded = meta["max_parallelism"]
                raise IncompatibleSnapshotError(
                    f"operator {uid!r} in {where} has max parallelism {recorded}, the job has "
                    f"{self.max_parallelism}: set_max_parallelism({recorded}) to restore it"
                )
            if meta.get("rocksdb") and not on_disk:
                raise IncompatibleSnapshotError(
                    f"operator {uid!r} in {where} keeps its state in RocksDB files: restore "
                    "it with env.set_state_backend(RocksDBStateBackend(...))"
                )

    def _latest_for_restart(self) -> CompletedCheckpoint | None:
        """The newest checkpoint this run of the job took — never one of an earlier
        run it did not start from — or else what it started from."""
        if self.storage is not None:
            # With nothing to fall back to, damaged checkpoints of this run stop the job
            # as they stop a start: restarting empty would commit their output again.
            strict = self.restored_from is None and (
                self.checkpoint_config is None or self.checkpoint_config.resume != "latest-or-empty"
            )
            latest = self.storage.latest_valid(min_id=self.first_checkpoint_id, strict=strict)
            if latest is not None:
                return latest
        return self.restored_from

    # -- running ------------------------------------------------------------

    def start(self) -> None:
        parallelism = {
            self.plan.uids[t]: self.plan.parallelism[t] for t in self.plan.transformations
        }
        self.highest_parallelism = parallelism
        if self.storage is not None:
            self.storage.claim()
            self.storage.reclaim()
            self.highest_parallelism = self.storage.record_parallelism(parallelism)
        restore = self.initial_restore()
        self.restored_from = restore
        self.first_checkpoint_id = self.storage.latest_id() + 1 if self.storage is not None else 1
        self._launch(restore)
        self._runner = Runner(self.job_name, self._run(), f"flowactors:{self.job_name}:jobmaster")

    def _launch(self, restore: CompletedCheckpoint | None) -> None:
        if restore is not None:
            self._check_matches(restore)
        self.execution = JobExecution(
            self.job_name,
            self.plan,
            self.config,
            self.max_parallelism,
            checkpoint_config=self.checkpoint_config,
            restore=restore,
            attempt=self.attempts,
            allow_non_restored_state=self.allow_non_restored_state,
            highest_parallelism=self.highest_parallelism,
        )
        self.execution.start()

    async def _run(self) -> JobExecutionResult:
        failures: list[float] = []
        while True:
            assert self.execution is not None
            try:
                return await self.execution.wait()
            except JobFailedError as error:
                now = time.monotonic()
                failures.append(now)
                if not is_retriable(error.cause):
                    final = JobFailedError(
                        error.job_name, error.operator, error.subtask, error.cause
                    )
                    final.args = (f"{error} (no restart can fix this)",)
                    raise final from error.cause
                delay = self.restart_strategy.next_delay_ms(failures, now)
                if delay is None:
                    if isinstance(self.restart_strategy, NoRestart):
                        raise
                    final = JobFailedError(
                        error.job_name,
                        error.operator,
                        error.subtask,
                        error.cause,
                        attempts=len(failures),
                    )
                    final.args = (
                        f"{error} (gave up after {len(failures)} attempt"
                        f"{'s' if len(failures) > 1 else ''}; restart strategy: "
                        f"{self.restart_strategy.describe()})",
                    )
                    raise final from error.cause
                log.warning(
                    "job %r failed (attempt %d), restarting in %d ms: %s",
                    self.job_name,
                    len(failures),
                    delay,
                    error,
                )
                self._restarting = True
                await asyncio.sleep(delay / 1000.0)
                self.attempts += 1
                try:
                    restore = self._latest_for_restart()
                    if restore is not None:
                        log.info(
                            "job %r restores %s %d",
                            self.job_name,
                            restore.kind,
                            restore.checkpoint_id,
                        )
                    self._restarting = False
                    self._launch(restore)
                except (NoValidCheckpointError, IncompatibleSnapshotError) as cause:
                    self._restarting = False
                    final = JobFailedError(
                        self.job_name, "<restore>", -1, cause, attempts=len(failures)
                    )
                    final.args = (f"{final} (no restart can fix this)",)
                    raise final from cause

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the job has ended, however it ended."""
        assert self._runner is not None
        self._runner.on_done(callback)

    async def wait(self) -> JobExecutionResult:
        assert self._runner is not None
        return await self._runner.wait()

    async def cancel(self) -> None:
        """Cancel the job (and a restart it may be waiting for) and wait until it ended."""
        assert self._runner is not None
        if self._runner.done:
            return
        await self._runner.cancel()
        if self.execution is not None:
            await self.execution.cancel()

    @property
    def status(self) -> JobStatus:
        if self._restarting:
            return JobStatus.RESTARTING
        if self._runner is not None and self._runner.done:
            task = self._runner.task
            if task.cancelled():
                return JobStatus.CANCELED
            return JobStatus.FAILED if task.exception() else JobStatus.FINISHED
        return self.execution.status if self.execution is not None else JobStatus.CREATED

    def metrics(self) -> JobMetrics:
        assert self.execution is not None
        return self.execution.metrics()

    async def trigger_savepoint(self, path: Path, stop: bool = False) -> CompletedCheckpoint:
        execution = self.execution
        if execution is None or execution.coordinator is None or execution.done:
            raise CheckpointError(f"job {self.job_name!r} is not running")
        if not all(t.running for t in execution.tasks):
            raise CheckpointError(
                f"job {self.job_name!r} has finished tasks: a savepoint needs every task running"
            )
        if _non_empty_dir(path):
            raise CheckpointError(f"savepoint directory {path} is not empty")
        return await execution.coordinator.trigger(is_savepoint=True, directory=path, stop=stop)


def _non_empty_dir(path: Path) -> bool:
    return path.exists() and any(path.iterdir())
