"""``StreamExecutionEnvironment`` (builds a job) and ``JobClient`` (a running one).

The environment only collects the logical graph; ``execute`` hands it to a
fresh :class:`~flowactors.runtime.executor.JobExecution`. Nothing is global:
several environments and jobs can run in one event loop at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from flowactors.api.datastream import DataStream, _check_parallelism
from flowactors.api.settings import CheckpointConfigView, ExecutionConfigView
from flowactors.api.sources import (
    CollectionSource,
    GeneratorSource,
    JsonLinesSource,
    TextFileSource,
)
from flowactors.checkpoint.config import (
    PICKLE,
    CheckpointConfig,
    RestartStrategies,
    RestartStrategy,
    Resume,
    Serializer,
    storage_path,
)
from flowactors.checkpoint.coordinator import CheckpointStats
from flowactors.errors import InvalidGraphError, JobFailedError
from flowactors.runtime.config import ExecutionConfig
from flowactors.runtime.executor import JobExecution, JobExecutionResult, JobStatus
from flowactors.runtime.graph import Input, Transformation, build_plan
from flowactors.runtime.jobmaster import JobMaster
from flowactors.runtime.live_state import KeyedStateView, wait_state_restored
from flowactors.runtime.metrics import JobMetrics
from flowactors.runtime.scaleout import ScaleOutRunner, load_backend
from flowactors.runtime.source_sink import SourceOperator
from flowactors.runtime.stages import plan_stages
from flowactors.spi import ScaleOutSettings, Source
from flowactors.state.keygroups import DEFAULT_MAX_PARALLELISM
from flowactors.time import to_millis
from flowactors.time.watermarks import WatermarkStrategy

T = TypeVar("T")
R = TypeVar("R")

_log = logging.getLogger("flowactors.runtime")

#: The commit interval of a scaled-out job without ``enable_checkpointing``.
DEFAULT_COMMIT_INTERVAL_MS = 200


class JobClient:
    """A handle on a running job (``await env.execute_async()``)."""

    def __init__(self, master: JobMaster) -> None:
        self._master = master
        self._loop = asyncio.get_running_loop()

    @property
    def _execution(self) -> JobExecution:
        assert self._master.execution is not None
        return self._master.execution

    @property
    def job_name(self) -> str:
        return self._master.job_name

    @property
    def status(self) -> JobStatus:
        return self._master.status

    @property
    def attempts(self) -> int:
        """Restarts so far (0 while the first run is going)."""
        return self._master.attempts

    async def wait(self) -> JobExecutionResult:
        """Wait for the job to finish. Raises ``JobFailedError`` / ``JobCancelledError``.

        Cancelling the caller of ``wait()`` does not cancel the job.
        """
        return await self._master.wait()

    async def cancel(self) -> None:
        """Cancel the job and wait until every task it started has ended."""
        await self._master.cancel()

    def metrics(self) -> JobMetrics:
        """Counters per task, and the records in flight (queued or buffered) right now."""
        return self._master.metrics()

    def keyed_state(self, uid: str, state_name: str) -> KeyedStateView:
        """A read-only live view of keyed state ``state_name`` of the operator with ``uid``.

        ``view.get(key)``, ``view.keys()``, ``view.items()``, ``len(view)``, ``key in view``:
        the values the job holds right now, read on the job's event loop between its
        batches. Built-in keyed aggregations (``reduce``, ``sum``, ...) name their state
        ``"value"``. Works with the in-memory and the RocksDB backends, follows restarts,
        and is populated as soon as ``execute_async`` returned (restored state included).
        An unknown uid or state name raises an error listing what exists.
        """
        return KeyedStateView(self._master, self._loop, uid, state_name)

    def assignment(self) -> list[tuple[str, int]]:
        """The scale-out tasks this replica owns now, as (stage uid, partition); empty
        for a job that runs in one process."""
        return []

    def checkpoint_stats(self) -> CheckpointStats | None:
        """Duration, size and longest synchronous pause of the last completed snapshot."""
        coordinator = self._execution.coordinator
        return None if coordinator is None else coordinator.stats()

    async def trigger_savepoint(self, path: str | os.PathLike[str]) -> str:
        """Take a savepoint into directory ``path`` (created; must be empty); return it.

        The job goes on running. Resume from it with ``execute(savepoint_path=path)``,
        at any parallelism.
        """
        done = await self._master.trigger_savepoint(Path(path))
        return str(done.directory)

    async def stop_with_savepoint(self, path: str | os.PathLike[str]) -> str:
        """Take a savepoint and stop the job cleanly after it; return the savepoint path.

        Sources stop right after the savepoint barrier and operators end without
        firing what is pending (it is in the savepoint), so resuming from it
        continues exactly where the job stopped.
        """
        done = await self._master.trigger_savepoint(Path(path), stop=True)
        await self._master.wait()
        return str(done.directory)


class ScaleOutJobClient(JobClient):
    """A handle on this replica's part of a scaled-out job."""

    def __init__(self, runner: ScaleOutRunner) -> None:
        self._runner = runner

    @property
    def _execution(self) -> JobExecution:
        raise InvalidGraphError("a scaled-out job has no single execution")

    @property
    def job_name(self) -> str:
        return self._runner.job_name

    @property
    def status(self) -> JobStatus:
        return self._runner.status

    @property
    def attempts(self) -> int:
        return 0

    async def wait(self) -> JobExecutionResult:
        return await self._runner.wait()

    async def cancel(self) -> None:
        """Stop at once, without committing (open transactions are aborted when the
        tasks' new owners fence them)."""
        await self._runner.cancel()

    async def stop(self) -> None:
        """A planned stop: commit every task, leave the group at once, end."""
        await self._runner.stop()

    def metrics(self) -> JobMetrics:
        return self._runner.metrics()

    def assignment(self) -> list[tuple[str, int]]:
        return self._runner.assignment()

    def checkpoint_stats(self) -> CheckpointStats | None:
        return None

    async def trigger_savepoint(self, path: str | os.PathLike[str]) -> str:
        raise InvalidGraphError("a scaled-out job keeps its state in Kafka: no savepoints")

    async def stop_with_savepoint(self, path: str | os.PathLike[str]) -> str:
        raise InvalidGraphError("a scaled-out job keeps its state in Kafka: no savepoints")


class StreamExecutionEnvironment:
    """Where a job is defined and from where it is run.

    >>> env = StreamExecutionEnvironment(parallelism=2)
    >>> env.get_parallelism()
    2
    """

    def __init__(
        self,
        parallelism: int = 1,
        max_parallelism: int = DEFAULT_MAX_PARALLELISM,
        config: ExecutionConfig | None = None,
    ) -> None:
        _check_parallelism(parallelism)
        self._parallelism = parallelism
        self._max_parallelism = max_parallelism
        self._config = config or ExecutionConfig()
        self._sinks: list[Transformation] = []
        self._checkpoint_config: CheckpointConfig | None = None
        self._restart_strategy: RestartStrategy | None = None
        #: The job the sinks defined so far were handed to (a pipeline runs once).
        self._started_job: str | None = None
        self._scale_out: ScaleOutSettings | None = None
        self._commit_interval_ms: int | None = None

    @staticmethod
    def get_execution_environment(parallelism: int = 1) -> StreamExecutionEnvironment:
        return StreamExecutionEnvironment(parallelism)

    # -- settings ----------------------------------------------------------

    def set_parallelism(self, parallelism: int) -> StreamExecutionEnvironment:
        """Default parallelism of operators that do not set their own."""
        _check_parallelism(parallelism)
        self._parallelism = parallelism
        return self

    def get_parallelism(self) -> int:
        return self._parallelism

    def set_max_parallelism(self, max_parallelism: int) -> StreamExecutionEnvironment:
        """Number of key groups: the most subtasks a keyed operator can ever be rescaled to."""
        if not isinstance(max_parallelism, int) or not 1 <= max_parallelism <= 32768:
            raise InvalidGraphError(f"max_parallelism must be in 1..32768, got {max_parallelism!r}")
        self._max_parallelism = max_parallelism
        return self

    def get_max_parallelism(self) -> int:
        return self._max_parallelism

    @property
    def config(self) -> ExecutionConfig:
        """The execution settings (immutable; ``configure`` or ``get_config()`` change them)."""
        return self._config

    def configure(self, **changes: Any) -> StreamExecutionEnvironment:
        """Change execution settings by keyword (see :class:`ExecutionConfig`)."""
        self._config = self._config.replace(**changes)
        return self

    def get_config(self) -> ExecutionConfigView:
        """Flink's setters over the execution settings (``set_batch_size(n)``...)."""
        return ExecutionConfigView(lambda: self._config, self._set_config)

    def _set_config(self, config: ExecutionConfig) -> None:
        self._config = config

    def enable_checkpointing(
        self,
        interval: timedelta | int,
        storage: str | os.PathLike[str] | None = None,
        *,
        resume: Resume = "latest",
        timeout: timedelta | int = timedelta(minutes=10),
        min_pause: timedelta | int = 0,
        max_concurrent: int = 1,
        tolerable_failures: int = 0,
        retained: int = 3,
        serializer: Serializer = PICKLE,
    ) -> StreamExecutionEnvironment:
        """Snapshot the job's state every ``interval`` into ``storage`` (a directory).

        A job that starts with storage holding a complete checkpoint of the same
        job name (or a savepoint it took) resumes from the newest one
        (``resume="latest"``), and refuses to start when there are some but none
        verifies (``"latest-or-empty"`` starts empty then; ``"none"`` always
        starts fresh). A checkpoint not complete after ``timeout`` is aborted;
        ``min_pause`` separates the end of one from the start of the next;
        ``max_concurrent`` may be in flight at once; more than
        ``tolerable_failures`` failed checkpoints in a row fail the job; the newest
        ``retained`` complete ones are kept. ``serializer`` turns state into bytes
        (default pickle: checkpoint storage must be as trusted as the job's code).
        Durations take a ``timedelta`` or milliseconds.
        """
        if storage is None:
            # In scale-out mode the interval is the commit interval and state lives in
            # Kafka: storage is optional there (checked when the job starts).
            self._commit_interval_ms = to_millis(interval)
            self._checkpoint_config = None
            return self
        self._checkpoint_config = CheckpointConfig(
            interval_ms=to_millis(interval),
            storage=storage_path(storage),
            resume=resume,
            timeout_ms=to_millis(timeout),
            min_pause_ms=to_millis(min_pause),
            max_concurrent=max_concurrent,
            tolerable_failures=tolerable_failures,
            retained=retained,
            serializer=serializer,
        )
        return self

    def enable_scale_out(
        self,
        *,
        bootstrap_servers: str,
        application_id: str,
        instance_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> StreamExecutionEnvironment:
        """Share this job among every replica that runs it with the same ``application_id``.

        The job is cut into stages at its re-partitioning edges (``key_by``,
        ``rebalance``, the inputs of a union or connected stream); stages talk
        through internal Kafka topics ``<application_id>-<uid>-repartition``, and
        replicas share the tasks (stage, partition) through one consumer group
        ``application_id``. Every commit interval (``enable_checkpointing``'s
        interval; 200 ms by default) each task commits its outputs and its input
        offsets in one Kafka transaction. ``instance_id`` (e.g. the pod name)
        gives static group membership: a restart within the session timeout
        moves no task. ``properties`` configure the internal Kafka clients (TLS,
        SASL, ...). Needs ``flowactors-kafka``; see ``docs/scaleout.md``.
        """
        if not isinstance(bootstrap_servers, str) or not bootstrap_servers:
            raise InvalidGraphError("enable_scale_out needs bootstrap_servers")
        if not isinstance(application_id, str) or not application_id:
            raise InvalidGraphError("enable_scale_out needs an application_id")
        if instance_id is not None and (not isinstance(instance_id, str) or not instance_id):
            raise InvalidGraphError(f"instance_id must be a non-empty str, got {instance_id!r}")
        self._scale_out = ScaleOutSettings(
            bootstrap_servers=bootstrap_servers,
            application_id=application_id,
            instance_id=instance_id,
            properties=dict(properties or {}),
        )
        return self

    def get_checkpoint_config(self) -> CheckpointConfigView:
        """Flink's setters over the checkpoint settings (after ``enable_checkpointing``)."""
        if self._checkpoint_config is None:
            raise InvalidGraphError("checkpointing is not enabled (enable_checkpointing first)")
        return CheckpointConfigView(self._checkpoint_settings, self._set_checkpoint_config)

    def _checkpoint_settings(self) -> CheckpointConfig:
        assert self._checkpoint_config is not None
        return self._checkpoint_config

    def _set_checkpoint_config(self, config: CheckpointConfig) -> None:
        self._checkpoint_config = config

    def set_restart_strategy(self, strategy: RestartStrategy) -> StreamExecutionEnvironment:
        """How a failed job runs again (``RestartStrategies.fixed_delay(...)`` etc.).

        The default is no restarts without checkpointing, and exponential
        backoff (1 s to 1 min) without limit with it, as in Flink.
        """
        self._restart_strategy = strategy
        return self

    def set_state_backend(self, backend: Any) -> StreamExecutionEnvironment:
        """Where keyed state lives: in memory (``None``, the default) or on disk with
        ``flowactors.state.RocksDBStateBackend(memory_budget_mb=...)``."""
        self._config = self._config.replace(state_backend=backend)
        return self

    def disable_operator_chaining(self) -> StreamExecutionEnvironment:
        """Run every operator in its own actor (for debugging; slower)."""
        self._config = self._config.replace(chaining=False)
        return self

    # -- sources -----------------------------------------------------------

    def from_source(
        self,
        source: Source[T],
        watermark_strategy: WatermarkStrategy[T] | None = None,
        name: str = "Source",
    ) -> DataStream[T]:
        """Read from any :class:`~flowactors.spi.Source` (connectors use this).

        With a ``watermark_strategy``, timestamps are assigned and watermarks
        generated per source split (e.g. per Kafka partition) and combined by
        minimum, idle splits excluded.
        """
        if isinstance(watermark_strategy, str):  # from_source(source, "name") reads naturally
            name, watermark_strategy = watermark_strategy, None
        t = Transformation(
            name,
            lambda: SourceOperator(source, watermark_strategy),
            max_parallelism=source.max_parallelism,
            is_source=True,
            source=source,
            watermark_strategy=watermark_strategy,
        )
        return DataStream(self, [Input(t)], t)

    def from_collection(
        self, elements: Iterable[T], name: str = "Collection Source"
    ) -> DataStream[T]:
        """The elements of ``elements``, in order (a non-parallel source)."""
        return self.from_source(CollectionSource(elements), name=name)

    def from_generator(
        self,
        fn: Callable[[int], T] | Callable[[int], Awaitable[T]],
        count: int | None = None,
        rate: float | None = None,
        name: str = "Generator Source",
    ) -> DataStream[T]:
        """``fn(i)`` for ``i`` in ``range(count)`` (endless when ``count`` is None),
        at most ``rate`` records per second when given. Parallel."""
        return self.from_source(GeneratorSource(fn, count, rate), name=name)

    def read_text_file(
        self, path: str | os.PathLike[str], encoding: str = "utf-8"
    ) -> DataStream[str]:
        """Lines of a file (or of all files in a directory), without line endings."""
        return self.from_source(TextFileSource(path, encoding), name=f"Text File {path}")

    def read_json_lines(
        self, path: str | os.PathLike[str], bad_lines: Any = None
    ) -> DataStream[Any]:
        """One JSON value per line. A malformed line fails the job naming file and line,
        unless ``bad_lines`` is an ``OutputTag``: then it goes to that side output
        as a ``MalformedRecord`` (read it with ``get_side_output(bad_lines)``)."""
        return self.from_source(JsonLinesSource(path, bad_lines), name=f"JSON Lines {path}")

    # -- running -----------------------------------------------------------

    def _add_sink(self, t: Transformation) -> None:
        self._sinks.append(t)

    def _take_plan_inputs(self) -> list[Transformation]:
        sinks, self._sinks = self._sinks, []
        return sinks

    async def execute_async(
        self,
        job_name: str = "job",
        savepoint_path: str | os.PathLike[str] | None = None,
        allow_non_restored_state: bool = False,
    ) -> JobClient:
        """Start the job and return at once with a :class:`JobClient`.

        The pipeline defined so far goes to that job: running again needs a pipeline
        defined anew (new sinks), on this environment or another.
        """
        if not self._sinks and self._started_job is not None:
            raise InvalidGraphError(
                f"this environment already started job {self._started_job!r}, and a "
                "pipeline runs once: define the pipeline again (sources to sinks) to run "
                "it again"
            )
        """Start the job and return at once with a :class:`JobClient`."""
        if self._scale_out is not None:
            if savepoint_path is not None:
                raise InvalidGraphError(
                    "a scaled-out job keeps its state in Kafka and cannot start from a savepoint"
                )
            return self._execute_scaled_out(job_name, self._scale_out)
        if self._checkpoint_config is None and self._commit_interval_ms is not None:
            raise InvalidGraphError("enable_checkpointing needs a storage directory")
        sinks = self._take_plan_inputs()
        self._started_job = job_name
        plan = build_plan(
            sinks, default_parallelism=self._parallelism, chaining=self._config.chaining
        )
        strategy = self._restart_strategy
        if strategy is None:
            strategy = (
                RestartStrategies.exponential_delay(1000, 60_000, 1.5)
                if self._checkpoint_config is not None
                else RestartStrategies.no_restart()
            )
        master = JobMaster(
            job_name,
            plan,
            self._config,
            self._max_parallelism,
            self._checkpoint_config,
            strategy,
            None if savepoint_path is None else Path(savepoint_path),
            allow_non_restored_state,
        )
        master.start()
        client = JobClient(master)
        # Keyed state restored before this returns: a live state view answers at once.
        await wait_state_restored(master)
        return client

    def _execute_scaled_out(self, job_name: str, settings: ScaleOutSettings) -> JobClient:
        backend = load_backend()
        plan = build_plan(
            self._take_plan_inputs(),
            default_parallelism=self._parallelism,
            chaining=True,
        )
        stage_plan = plan_stages(
            plan,
            application_id=settings.application_id,
            max_parallelism=self._max_parallelism,
            can_read=backend.can_read,
        )
        settings = dataclasses.replace(
            settings,
            commit_interval_ms=self._commit_interval_ms or DEFAULT_COMMIT_INTERVAL_MS,
            max_parallelism=self._max_parallelism,
        )
        runner = ScaleOutRunner(job_name, stage_plan, self._config, settings, backend)
        runner.start()
        return ScaleOutJobClient(runner)

    async def execute(
        self,
        job_name: str = "job",
        savepoint_path: str | os.PathLike[str] | None = None,
        allow_non_restored_state: bool = False,
    ) -> JobExecutionResult:
        """Run the job to the end of its input (or until cancelled).

        ``savepoint_path`` resumes from a savepoint (operators matched by uid,
        at any parallelism). Cancelling the task that awaits this cancels the job.
        """
        client = await self.execute_async(job_name, savepoint_path, allow_non_restored_state)
        try:
            return await client.wait()
        except asyncio.CancelledError:
            await client.cancel()
            raise

    def execute_blocking(
        self,
        job_name: str = "job",
        savepoint_path: str | os.PathLike[str] | None = None,
        allow_non_restored_state: bool = False,
        *,
        savepoint_on_stop: str | os.PathLike[str] | None = None,
    ) -> JobExecutionResult:
        """Run the job on a new event loop (uvloop when installed) and block until it ends.

        SIGTERM or Ctrl-C (SIGINT) end the job gracefully and this returns normally:
        with ``savepoint_on_stop`` (a directory) the job stops with a savepoint in a
        new ``savepoint-<UTC time>`` directory under it, which the next start with the
        same checkpoint storage resumes from (the result is ``FINISHED`` and names
        it); without, or if that savepoint fails, the job is cancelled (the result is
        ``CANCELED``) and the next start resumes from its newest checkpoint. A second
        signal while the savepoint is being taken cancels at once. Signals are only
        caught in the main thread.
        """
        return run_blocking(
            self._execute_until_stopped(
                job_name, savepoint_path, allow_non_restored_state, savepoint_on_stop
            )
        )

    async def _execute_until_stopped(
        self,
        job_name: str,
        savepoint_path: str | os.PathLike[str] | None,
        allow_non_restored_state: bool,
        savepoint_on_stop: str | os.PathLike[str] | None,
    ) -> JobExecutionResult:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        caught = _catch_stop_signals(loop, stop)
        try:
            started = loop.time()
            client = await self.execute_async(job_name, savepoint_path, allow_non_restored_state)
            job = asyncio.ensure_future(client.wait())
            if not await _first(job, stop):
                return job.result()
            stop.clear()
            savepoint = None
            if savepoint_on_stop is not None:
                savepoint = await _stop_with_savepoint(client, Path(savepoint_on_stop), stop)
            if savepoint is None:
                _log.info("job %r: stop requested, cancelling it", job_name)
                await client.cancel()
            await asyncio.gather(job, return_exceptions=True)
            if isinstance(job.exception(), JobFailedError):
                return job.result()  # it failed meanwhile: raise that
            if savepoint is not None and not job.exception():
                return dataclasses.replace(job.result(), savepoint=savepoint)
            runtime = (loop.time() - started) * 1000.0
            return JobExecutionResult(job_name, runtime, client.metrics(), JobStatus.CANCELED)
        finally:
            for sig in caught:
                loop.remove_signal_handler(sig)


async def _first(job: asyncio.Future[Any], stop: asyncio.Event) -> bool:
    """Wait for the job to end or a stop to be requested; whether a stop came first."""
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({job, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    return not job.done()


async def _stop_with_savepoint(
    client: JobClient, directory: Path, stop: asyncio.Event
) -> str | None:
    """Stop the job with a savepoint under ``directory``; ``None`` if that failed or a
    second stop request came first (the caller then cancels the job)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = directory / f"savepoint-{stamp}"
    _log.info("job %r: stop requested, stopping with a savepoint into %s", client.job_name, target)
    stopping = asyncio.ensure_future(client.stop_with_savepoint(target))
    if await _first(stopping, stop):
        _log.warning("job %r: second stop request, cancelling it", client.job_name)
        stopping.cancel()
        await asyncio.gather(stopping, return_exceptions=True)
        return None
    error = stopping.exception()
    if error is not None:
        _log.warning(
            "job %r: stop with savepoint failed, cancelling it: %s", client.job_name, error
        )
        return None
    return stopping.result()


def _catch_stop_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> list[int]:
    """Make SIGTERM and SIGINT set ``stop``; the signals it could catch."""
    caught: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or no signals on this platform
        caught.append(sig)
    return caught


def run_blocking(coro: Coroutine[Any, Any, R]) -> R:
    """``asyncio.run`` with uvloop's loop when uvloop is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
