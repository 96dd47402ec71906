"""Running a job's stages on a scale-out backend: the core's half of scale-out.

The backend (found through the ``flowactors.scale_out`` entry point group, see
:data:`flowactors.spi.SCALE_OUT_ENTRY_POINTS`) owns membership, input, output
and commits. The core owns what runs in between: for every task it is handed
(stage, partition, ports), it builds the stage's operators into a plan of its
own, at parallelism 1 and fully chained, with the task's input as the source
and the task's outputs as sinks, and runs it with today's runtime
(:class:`~flowactors.runtime.executor.JobExecution`).

Invariant: a task's plan is one chain, so while its source reader is being
polled every record it emitted before has gone through every operator into the
sinks. The backend commits at that moment (see :class:`flowactors.spi.TaskPorts`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from flowactors.errors import InvalidGraphError, JobCancelledError
from flowactors.runtime.async_io import AsyncMapOperator
from flowactors.runtime.changelog import ChangeTrackingStateBackend, KeyedStateLog
from flowactors.runtime.config import ExecutionConfig
from flowactors.runtime.executor import JobExecution, JobExecutionResult, JobStatus
from flowactors.runtime.graph import Input, Transformation, build_plan
from flowactors.runtime.metrics import JobMetrics
from flowactors.runtime.runner import Runner
from flowactors.runtime.source_sink import SinkOperator, SourceOperator, TwoInputSourceOperator
from flowactors.runtime.stages import Hop, Stage, StagePlan
from flowactors.spi import (
    SCALE_OUT_ENTRY_POINTS,
    HopSpec,
    ScaleOutBackend,
    ScaleOutJob,
    ScaleOutSettings,
    ScaleOutStatistics,
    ScaleOutWorker,
    Sink,
    StageSpec,
    TaskPorts,
)

log = logging.getLogger("flowactors.scaleout")


def load_backend() -> ScaleOutBackend:
    """The installed scale-out backend (``kafka`` when several are installed)."""
    found = {ep.name: ep for ep in entry_points(group=SCALE_OUT_ENTRY_POINTS)}
    if not found:
        raise InvalidGraphError(
            "enable_scale_out needs a scale-out backend: pip install flowactors-kafka"
        )
    ep = found.get("kafka") or found[sorted(found)[0]]
    factory = ep.load()
    backend: ScaleOutBackend = factory()
    return backend


def _hop_spec(hop: Hop, max_parallelism: int) -> HopSpec:
    return HopSpec(hop.topic, hop.input_index, lambda: hop.router(max_parallelism))


def stage_spec(stage_plan: StagePlan, stage: Stage) -> StageSpec:
    return StageSpec(
        stage.uid,
        stage.source,
        stage.input_topic,
        stage.partitions,
        tuple(_hop_spec(h, stage_plan.max_parallelism) for h in stage.hops_out),
        stage_plan.changelog_topic(stage),
        tuple(sorted({stage_plan.stage_of(h.upstream).uid for h in stage.hops_in})),
        stage.inputs,
    )


def task_graph(stage_plan: StagePlan, stage: Stage, ports: TaskPorts) -> list[Transformation]:
    """The sinks of task (``stage``, any partition)'s own logical graph.

    Operators keep their uids (their state is the stage's state). The stage's
    input is ``ports.source``; every hop out is a sink from ``ports.hop_sink``;
    user sinks go through ``ports.wrap_sink``. A two-input head reads both its
    inputs from that one source, which hands each batch to input 1 or 2
    (:class:`TwoInputSourceOperator`), so the task stays one chain.
    """
    uids = stage_plan.plan.uids
    max_p = stage_plan.max_parallelism
    head = stage.head
    copies: dict[Transformation, Transformation] = {}
    source = ports.source
    if stage.input_topic is None:
        strategy = head.watermark_strategy
        copies[head] = Transformation(
            head.name,
            lambda: SourceOperator(source, strategy),
            uid=uids[head],
            is_source=True,
            source=source,
            watermark_strategy=strategy,
        )
    else:
        reader_type = SourceOperator if stage.inputs == 1 else TwoInputSourceOperator
        reader = Transformation(
            f"{stage.input_topic}", lambda: reader_type(source), uid=f"{stage.uid}.input"
        )
        reader.is_source = True
        copies[head] = dataclasses.replace(
            head, inputs=[Input(reader)], parallelism=None, uid=uids[head]
        )
    sinks: list[Transformation] = []
    for t in stage.members[1:]:
        inputs = [Input(copies[i.upstream], None, i.tag, i.input_index) for i in t.inputs]
        factory = t.factory
        if t.is_sink and t.sink is not None:
            factory = _sink_factory(ports.wrap_sink(t.sink))
        copies[t] = dataclasses.replace(
            t, inputs=inputs, factory=factory, parallelism=None, uid=uids[t]
        )
        if t.is_sink:
            sinks.append(copies[t])
    for hop in stage.hops_out:
        sink = ports.hop_sink(_hop_spec(hop, max_p))
        sinks.append(
            Transformation(
                f"to {hop.topic}",
                _sink_factory(sink),
                [Input(copies[hop.upstream], None, hop.input.tag)],
                uid=f"{uids[hop.upstream]}.to.{hop.topic}.{hop.input_index}",
                is_sink=True,
                sink=sink,
            )
        )
    if not sinks:
        raise InvalidGraphError(f"stage {stage.uid!r} has no outputs")
    return sinks


def _sink_factory(sink: Sink[Any]) -> Callable[[], SinkOperator]:
    return lambda: SinkOperator(sink)


@dataclasses.dataclass(frozen=True)
class ScaleOutMetrics(JobMetrics):
    """:class:`JobMetrics` of the tasks this replica runs, with the worker's statistics."""

    scale_out: ScaleOutStatistics | None = None
    #: The task, as (stage uid, partition), that each of ``tasks`` belongs to.
    task_ids: tuple[tuple[str, int], ...] = ()


class RunningTask:
    """One task's execution (a :class:`flowactors.spi.StageTask`)."""

    def __init__(
        self,
        name: str,
        execution: JobExecution,
        on_end: Callable[[RunningTask], None],
        state: KeyedStateLog | None = None,
    ) -> None:
        self.name = name
        self.execution = execution
        self._on_end = on_end
        self._state = state

    async def wait(self) -> None:
        try:
            await self.execution.wait()
        finally:
            self._on_end(self)

    async def cancel(self) -> None:
        try:
            await self.execution.cancel()
        finally:
            self._on_end(self)

    def state_changes(self) -> list[tuple[bytes, bytes | None]]:
        return [] if self._state is None else self._state.changes()


def _keyed_operators(execution: JobExecution) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keyed state backends and timer services of a task's operators, by uid."""
    backends: dict[str, Any] = {}
    timers: dict[str, Any] = {}
    for t, ops in execution.operators.items():
        for op in ops:
            backend = getattr(op, "backend", None)
            # (a two-input operator over unkeyed inputs is keyed in type only: no backend)
            if getattr(op, "keyed", False) and backend is not None:
                uid = execution.plan.uids[t]
                backends[uid] = backend
                timers[uid] = op.timers  # type: ignore[attr-defined]
    return backends, timers


class ScaleOutRunner:
    """This replica's part of a scaled-out job: the worker and the tasks it runs."""

    def __init__(
        self,
        job_name: str,
        stage_plan: StagePlan,
        config: ExecutionConfig,
        settings: ScaleOutSettings,
        backend: ScaleOutBackend,
    ) -> None:
        self.job_name = job_name
        self.stage_plan = stage_plan
        # every keyed backend of a task records its changed entries for the changelog
        self.config = config.replace(
            chaining=True, state_backend=ChangeTrackingStateBackend(config.state_backend)
        )
        self.settings = settings
        self.tasks: dict[tuple[str, int], RunningTask] = {}
        self.worker: ScaleOutWorker = backend.create_worker(
            settings,
            ScaleOutJob(
                job_name,
                tuple(stage_spec(stage_plan, s) for s in stage_plan.stages),
                stage_plan.internal_topics,
                self._start_task,
            ),
        )
        self.status = JobStatus.CREATED
        self._runner: Runner[JobExecutionResult] | None = None
        self._started = 0.0

    async def _start_task(self, stage_uid: str, partition: int, ports: TaskPorts) -> RunningTask:
        stage = self.stage_plan.stage(stage_uid)
        sinks = task_graph(self.stage_plan, stage, ports)
        plan = build_plan(sinks, default_parallelism=1, chaining=True)
        assert len(plan.chains) == 1, "a task runs as one chain"
        name = f"{self.job_name}/{stage_uid}#{partition}"
        execution = JobExecution(name, plan, self.config, self.stage_plan.max_parallelism)
        execution.start()  # builds the operators; none runs before the next await
        for t, ops in execution.operators.items():
            if any(isinstance(op, AsyncMapOperator) for op in ops):
                await execution.cancel()
                raise InvalidGraphError(
                    f"{t.name!r} cannot scale out yet: map_async keeps records in flight "
                    "across the task's commits"
                )
        state = None
        if self.stage_plan.changelog_topic(stage) is not None:
            backends, timers = _keyed_operators(execution)
            state = KeyedStateLog(backends, self.stage_plan.max_parallelism, timers)
            try:
                state.restore(ports.restored_state)
            except BaseException:
                await execution.cancel()
                raise
        key = (stage_uid, partition)
        task = RunningTask(name, execution, lambda t: self._forget(key, t), state)
        self.tasks[key] = task
        return task

    def _forget(self, key: tuple[str, int], task: RunningTask) -> None:
        if self.tasks.get(key) is task:
            del self.tasks[key]

    def start(self) -> None:
        self._started = asyncio.get_running_loop().time()
        self.status = JobStatus.RUNNING
        self._runner = Runner(self.job_name, self._run(), f"flowactors:{self.job_name}:worker")

    async def _run(self) -> JobExecutionResult:
        try:
            await self.worker.start()
            await self.worker.wait()
        except asyncio.CancelledError:
            await self.worker.cancel()
            self.status = JobStatus.CANCELED
            raise
        except BaseException:
            self.status = JobStatus.FAILED
            await self.worker.cancel()
            raise
        self.status = JobStatus.FINISHED
        runtime = (asyncio.get_running_loop().time() - self._started) * 1000.0
        return JobExecutionResult(self.job_name, runtime, self.metrics())

    async def wait(self) -> JobExecutionResult:
        assert self._runner is not None, "not started"
        return await self._runner.wait()

    async def cancel(self) -> None:
        if self._runner is not None:
            await self._runner.cancel()

    async def stop(self) -> None:
        """A planned stop: commit every task, leave the group, end."""
        await self.worker.stop()
        if self._runner is not None:
            try:
                await self._runner.wait()
            except JobCancelledError:
                pass

    def assignment(self) -> list[tuple[str, int]]:
        return self.worker.assignment()

    def metrics(self) -> JobMetrics:
        in_flight = capacity = 0
        tasks = []
        task_ids: list[tuple[str, int]] = []
        for task_id, running in list(self.tasks.items()):
            m = running.execution.metrics()
            in_flight += m.in_flight_records
            capacity += m.in_flight_capacity
            tasks.extend(m.tasks)
            task_ids.extend([task_id] * len(m.tasks))
        return ScaleOutMetrics(
            in_flight, capacity, tasks, self.worker.statistics(), tuple(task_ids)
        )
