"""The checkpoint coordinator: the actor that starts, collects and completes snapshots.

Every ``interval`` it asks each source subtask to start checkpoint *n* (a
control message). Sources snapshot their position and send barrier *n*
downstream; every subtask snapshots when the barrier has passed it (aligned over
its inputs) and acknowledges once its files are written. When all subtasks have
acknowledged, the coordinator writes the checkpoint's metadata atomically — the
checkpoint is now *complete* — and tells every subtask, which is when sinks
commit. A checkpoint that times out or that a subtask declines is aborted;
more consecutive failures than tolerated fail the job.

Savepoints run the same protocol on request, into a directory of the user's
choice; ``stop=True`` makes the sources end after the savepoint barrier, and
no periodic checkpoint starts after it (the savepoint is the job's last
snapshot, unless it fails). A completed savepoint is recorded in the job's
checkpoint storage before anyone is told, so the next start of the job
resumes from it rather than from an older checkpoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from flowactors.checkpoint.barrier import CheckpointBarrier
from flowactors.checkpoint.config import CheckpointConfig, Serializer
from flowactors.checkpoint.snapshot import merge_subtask_part
from flowactors.checkpoint.storage import (
    CheckpointStorage,
    CompletedCheckpoint,
    metadata_for,
    write_metadata_atomically,
)
from flowactors.errors import CheckpointError

log = logging.getLogger("flowactors.checkpoint")


class CheckpointedTask(Protocol):
    """What the coordinator needs of a task (the runtime's ``StreamTask`` is one)."""

    name: str
    subtask_index: int

    @property
    def is_source(self) -> bool:
        """Sources start checkpoints: the coordinator asks them to emit barriers."""
        ...

    @property
    def running(self) -> bool:
        """Neither finished nor failed: it can take part in a checkpoint."""
        ...

    def post_control(self, message: Callable[[], Awaitable[None]]) -> None:
        """Run ``await message()`` in the task, between two batches."""
        ...

    async def trigger_checkpoint(self, barrier: CheckpointBarrier) -> None: ...

    async def notify_checkpoint_complete(self, checkpoint_id: int) -> None: ...

    async def notify_checkpoint_aborted(self, checkpoint_id: int) -> None: ...


@dataclass
class CheckpointStats:
    """What the last completed checkpoint cost."""

    checkpoint_id: int
    duration_ms: float
    #: The longest synchronous pause of any subtask (capturing state, no I/O).
    max_sync_pause_ms: float
    #: Bytes of state the checkpoint refers to (including files shared with earlier ones).
    size_bytes: int
    #: Bytes this checkpoint wrote (an incremental checkpoint reuses the rest).
    written_bytes: int
    #: When it completed (epoch milliseconds).
    completed_at_ms: int = 0
    #: When a checkpoint last failed (epoch milliseconds), and why; ``None`` if none has.
    last_failed_at_ms: int | None = None
    last_failure: str | None = None


@dataclass
class _Pending:
    checkpoint_id: int
    directory: Path
    is_savepoint: bool
    expected: set[int]
    started: float
    done: asyncio.Future[CompletedCheckpoint]
    operators: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_pause: float = 0.0
    timeout: asyncio.TimerHandle | None = None


class CheckpointCoordinator:
    def __init__(
        self,
        job_name: str,
        tasks: Sequence[CheckpointedTask],
        config: CheckpointConfig | None,
        storage: CheckpointStorage | None,
        first_id: int,
        parallelism: dict[str, int],
        serializer: Serializer,
    ) -> None:
        self.job_name = job_name
        self.tasks = tasks
        self.config = config
        self.storage = storage
        self.serializer = serializer
        self.next_id = first_id
        self.parallelism = parallelism
        self.pending: dict[int, _Pending] = {}
        self.failures = 0
        self.completed = 0
        self.last_stats: CheckpointStats | None = None
        #: (epoch ms, reason) of the last checkpoint that failed.
        self.last_failure: tuple[int, str] | None = None
        self.last_completed_at = 0.0
        self._failure: asyncio.Future[None] | None = None
        #: Aborted checkpoints whose late subtasks may still write files.
        self._aborted: set[int] = set()
        #: The id of a stop-with-savepoint in flight: no checkpoint starts after it.
        self._stopping_at: int | None = None

    # -- the periodic loop --------------------------------------------------

    async def run(self) -> None:
        """Trigger checkpoints every interval until cancelled; raise to fail the job."""
        loop = asyncio.get_running_loop()
        self._failure = loop.create_future()
        config = self.config
        if config is None:
            await self._failure  # savepoints only; wait for a fatal error
            return
        interval = config.interval_ms / 1000.0
        next_at = loop.time() + interval
        while True:
            waiter = asyncio.ensure_future(asyncio.shield(self._failure))
            try:
                await asyncio.wait([waiter], timeout=max(0.0, next_at - loop.time()))
            finally:
                waiter.cancel()
            if self._failure.done():
                self._failure.result()
            now = loop.time()
            next_at = now + interval
            if (
                len([p for p in self.pending.values() if not p.is_savepoint])
                >= config.max_concurrent
            ):
                continue
            if (
                self.last_completed_at
                and (now - self.last_completed_at) * 1000 < config.min_pause_ms
            ):
                continue
            if not self._all_running() or self._stopping_at is not None:
                continue
            self.trigger(is_savepoint=False)

    def _all_running(self) -> bool:
        return all(t.running for t in self.tasks)

    # -- triggering ---------------------------------------------------------

    def trigger(
        self, *, is_savepoint: bool, directory: Path | None = None, stop: bool = False
    ) -> asyncio.Future[CompletedCheckpoint]:
        loop = asyncio.get_running_loop()
        n = self.next_id
        self.next_id += 1
        if directory is None:
            assert self.storage is not None
            directory = self.storage.checkpoint_dir(n)
        directory.mkdir(parents=True, exist_ok=True)
        pending = _Pending(
            checkpoint_id=n,
            directory=directory,
            is_savepoint=is_savepoint,
            expected={id(t) for t in self.tasks},
            started=loop.time(),
            done=loop.create_future(),
        )
        self.pending[n] = pending
        timeout_ms = self.config.timeout_ms if self.config is not None else 600_000
        pending.timeout = loop.call_later(
            timeout_ms / 1000.0, self.abort, n, f"not complete after {timeout_ms} ms"
        )
        if stop:
            self._stopping_at = n
        barrier = CheckpointBarrier(n, is_savepoint=is_savepoint, stop=stop)
        for task in self.tasks:
            if task.is_source:
                task.post_control(_trigger_message(task, barrier))
        log.debug(
            "triggered %s %d of job %r",
            "savepoint" if is_savepoint else "checkpoint",
            n,
            self.job_name,
        )
        return pending.done

    # -- CheckpointParticipant ---------------------------------------------

    def directory_of(self, checkpoint_id: int) -> Path | None:
        pending = self.pending.get(checkpoint_id)
        return None if pending is None else pending.directory

    def shared_dir_of(self, checkpoint_id: int) -> Path | None:
        """Where incremental snapshots share files: checkpoints only (savepoints are
        self-contained)."""
        pending = self.pending.get(checkpoint_id)
        if pending is None or pending.is_savepoint or self.storage is None:
            return None
        return self.storage.shared_dir

    def acknowledge(
        self, checkpoint_id: int, task: CheckpointedTask, meta: dict[str, Any], pause_s: float
    ) -> None:
        pending = self.pending.get(checkpoint_id)
        if pending is None or id(task) not in pending.expected:
            self._discard_late(checkpoint_id)  # aborted meanwhile
            return
        pending.expected.discard(id(task))
        pending.max_pause = max(pending.max_pause, pause_s)
        for uid, part in meta.items():
            merge_subtask_part(pending.operators, uid, part, self.parallelism.get(uid))
        if not pending.expected:
            self._complete(pending)

    def decline(self, checkpoint_id: int, task: CheckpointedTask, cause: BaseException) -> None:
        if checkpoint_id not in self.pending:
            self._discard_late(checkpoint_id)
            return
        self.abort(
            checkpoint_id,
            f"{task.name} (subtask {task.subtask_index}) could not write its snapshot: "
            f"{type(cause).__name__}: {cause}",
        )

    # -- completion ---------------------------------------------------------

    def _complete(self, pending: _Pending) -> None:
        n = pending.checkpoint_id
        del self.pending[n]
        if pending.timeout is not None:
            pending.timeout.cancel()
        kind = "savepoint" if pending.is_savepoint else "checkpoint"
        metadata = metadata_for(self.job_name, n, kind, pending.operators)
        try:
            write_metadata_atomically(pending.directory, metadata)
        except OSError as exc:
            self._record_failure(pending, f"cannot write its metadata: {exc}")
            return
        if pending.is_savepoint and self.storage is not None:
            # Recorded before any sink commits: the next start must not resume from
            # an older checkpoint and commit this stretch of output again.
            try:
                self.storage.record_savepoint(n, pending.directory)
            except OSError as exc:
                self._record_failure(pending, f"cannot record it in {self.storage.job_dir}: {exc}")
                return
        loop = asyncio.get_running_loop()
        completed = CompletedCheckpoint(pending.directory, metadata)
        size = sum(info.size for info in completed.files())
        written = sum(
            info.size for info in completed.files() if not info.path.startswith("..")
        ) + sum(
            part.get("uploaded_bytes", 0)
            for op in pending.operators.values()
            for part in op.get("rocksdb", [])
        )
        self.last_stats = CheckpointStats(
            n,
            (loop.time() - pending.started) * 1000,
            pending.max_pause * 1000,
            size,
            written,
            completed_at_ms=int(time.time() * 1000),
        )
        if not pending.is_savepoint:
            self.failures = 0
            self.completed += 1
            self.last_completed_at = loop.time()
            if self.storage is not None and self.config is not None and not self.pending:
                # Nothing in flight may still need an old shared file.
                self.storage.retain(self.config.retained)
        # Routine checkpoints are DEBUG (one every interval); a savepoint, asked for, is INFO.
        log.log(
            logging.INFO if pending.is_savepoint else logging.DEBUG,
            "%s %d of job %r complete: %.0f ms, %d bytes, longest synchronous pause %.1f ms",
            kind,
            n,
            self.job_name,
            self.last_stats.duration_ms,
            size,
            self.last_stats.max_sync_pause_ms,
        )
        for task in self.tasks:
            if task.running:
                task.post_control(_notify_message(task, n, complete=True))
        if not pending.done.done():
            pending.done.set_result(completed)

    def abort(self, checkpoint_id: int, reason: str) -> None:
        pending = self.pending.pop(checkpoint_id, None)
        if pending is None:
            return
        if pending.timeout is not None:
            pending.timeout.cancel()
        self._record_failure(pending, reason)

    def stats(self) -> CheckpointStats | None:
        """The last completed checkpoint's costs, and when one last failed."""
        if self.last_stats is None:
            return None
        if self.last_failure is None:
            return self.last_stats
        at, reason = self.last_failure
        return dataclasses.replace(self.last_stats, last_failed_at_ms=at, last_failure=reason)

    def _record_failure(self, pending: _Pending, reason: str) -> None:
        n = pending.checkpoint_id
        kind = "savepoint" if pending.is_savepoint else "checkpoint"
        self.last_failure = (int(time.time() * 1000), f"{kind} {n}: {reason}")
        log.warning("%s %d of job %r aborted: %s", kind, n, self.job_name, reason)
        if self._stopping_at == n:
            self._stopping_at = None  # the job goes on: so do its checkpoints
        if pending.is_savepoint:
            # The directory was empty or absent when the savepoint began.
            shutil.rmtree(pending.directory, ignore_errors=True)
        elif self.storage is not None:
            self.storage.discard(n)
            self._aborted.add(n)
            if not self.pending:
                # Shared files only this checkpoint uploaded (a full disk) go too.
                self.storage.collect_shared()
        for task in self.tasks:
            if task.running:
                task.post_control(_notify_message(task, n, complete=False))
        error = CheckpointError(f"{kind} {n} of job {self.job_name!r} failed: {reason}")
        if not pending.done.done():
            pending.done.set_exception(error)
            pending.done.exception()  # retrieved: a failed periodic checkpoint is not an error
        if pending.is_savepoint or self.config is None:
            return
        self.failures += 1
        failure = self._failure
        if self.failures > self.config.tolerable_failures and failure and not failure.done():
            failure.set_exception(
                CheckpointError(
                    f"{self.failures} consecutive checkpoints failed (tolerable: "
                    f"{self.config.tolerable_failures}); the last one: {reason}"
                )
            )

    def _discard_late(self, checkpoint_id: int) -> None:
        """A subtask finished writing for a checkpoint that was aborted: its files go."""
        if checkpoint_id in self._aborted and self.storage is not None:
            self.storage.discard(checkpoint_id)

    def abort_all(self, reason: str) -> None:
        for n in list(self.pending):
            pending = self.pending.pop(n)
            if pending.timeout is not None:
                pending.timeout.cancel()
            if not pending.done.done():
                pending.done.set_exception(CheckpointError(f"checkpoint {n} aborted: {reason}"))
                pending.done.exception()


def _trigger_message(task: CheckpointedTask, barrier: CheckpointBarrier) -> Any:
    async def trigger() -> None:
        await task.trigger_checkpoint(barrier)

    return trigger


def _notify_message(task: CheckpointedTask, checkpoint_id: int, complete: bool) -> Any:
    async def notify() -> None:
        if complete:
            await task.notify_checkpoint_complete(checkpoint_id)
        else:
            await task.notify_checkpoint_aborted(checkpoint_id)

    return notify
