"""An in-memory scale-out backend for the core's half of scale-out (no Kafka).

Every topic is lists, one per partition. Records of an internal topic are
``(input index, value, timestamp)``, as Kafka carries them (the index in a header).
The worker runs every task of one stage after the other, stage by stage; a task's
reader hands its partition on in order — each run of one input with its index — and
ends its input, so every timer fires.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowactors.runtime import scaleout
from flowactors.spi import (
    HopSpec,
    InputStatus,
    ReaderOutput,
    ScaleOutJob,
    ScaleOutSettings,
    ScaleOutStatistics,
    Sink,
    SinkWriter,
    SinkWriterContext,
    Source,
    SourceReader,
    SourceReaderContext,
    StageSpec,
    StageTask,
    TaskPorts,
)

Record = tuple[int, Any, int | None]


class Topic(Source[Any]):
    """A user topic: its partitions are lists of values."""

    def __init__(self, partitions: list[list[Any]]) -> None:
        self.partitions = partitions

    def create_reader(self, context: SourceReaderContext) -> SourceReader[Any]:
        raise AssertionError("a scaled-out job reads through the backend")


class PartitionReader(SourceReader[Any]):
    """One partition: values of a user topic, or records of an internal one."""

    def __init__(self, stage: StageSpec, records: list[Any]) -> None:
        self.stage = stage
        self.records = records

    async def poll_next(self, output: ReaderOutput[Any]) -> InputStatus:
        records, self.records = self.records, []
        if self.stage.source is not None:
            await output.collect_batch(records)
        elif self.stage.inputs == 1:
            await output.collect_batch([r[1] for r in records], [r[2] for r in records])
        else:
            start = 0
            for end in range(1, len(records) + 1):  # runs of one input, in order
                if end == len(records) or records[end][0] != records[start][0]:
                    run = records[start:end]
                    await output.collect_input_batch(
                        run[0][0], [r[1] for r in run], [r[2] for r in run]
                    )
                    start = end
        return InputStatus.END_OF_INPUT


class PartitionSource(Source[Any]):
    def __init__(self, stage: StageSpec, records: list[Any]) -> None:
        self.stage = stage
        self.records = records

    def create_reader(self, context: SourceReaderContext) -> SourceReader[Any]:
        return PartitionReader(self.stage, self.records)


class Appender(SinkWriter[Any]):
    def __init__(self, write: Any) -> None:
        self._write = write

    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        self._write(values, timestamps or [None] * len(values))


class HopSink(Sink[Any]):
    def __init__(self, spec: HopSpec, partitions: list[list[Record]]) -> None:
        self.spec = spec
        self.route = spec.make_router()
        self.partitions = partitions

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        def write(values: list[Any], timestamps: list[int | None]) -> None:
            for value, ts, partition in zip(values, timestamps, self.route(values)):
                self.partitions[partition].append((self.spec.input_index, value, ts))

        return Appender(write)


class Collected(Sink[Any]):
    def __init__(self) -> None:
        self.values: list[Any] = []

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        return Appender(lambda values, _: self.values.extend(values))


class MemoryWorker:
    """Runs every task of one stage after the other, stage by stage."""

    def __init__(self, job: ScaleOutJob) -> None:
        self.job = job
        self.topics: dict[str, list[list[Record]]] = {
            name: [[] for _ in range(n)] for name, n in job.internal_topics.items()
        }
        self.owned: list[tuple[str, int]] = []
        #: The user sinks handed to ``wrap_sink`` (once per task writing them).
        self.wrapped: list[Sink[Any]] = []

    def wrap(self, sink: Sink[Any]) -> Sink[Any]:
        self.wrapped.append(sink)
        return sink

    async def start(self) -> None:
        self._run = asyncio.ensure_future(self._all())

    async def _all(self) -> None:
        for stage in self.job.stages:
            if stage.source is not None:
                assert isinstance(stage.source, Topic)
                inputs: list[list[Any]] = stage.source.partitions
            else:
                assert stage.input_topic is not None
                inputs = list(self.topics[stage.input_topic])
            tasks: list[StageTask] = []
            for partition, records in enumerate(inputs):
                self.owned.append((stage.uid, partition))
                ports = TaskPorts(
                    PartitionSource(stage, records),
                    lambda spec: HopSink(spec, self.topics[spec.topic]),
                    self.wrap,
                )
                tasks.append(await self.job.start_task(stage.uid, partition, ports))
            for task in tasks:
                await task.wait()

    def assignment(self) -> list[tuple[str, int]]:
        return list(self.owned)

    def statistics(self) -> ScaleOutStatistics:
        return ScaleOutStatistics(tuple(self.owned), 0, 0.0, 0.0, 0)

    async def wait(self) -> None:
        await self._run

    async def stop(self) -> None:
        await self._run

    async def cancel(self) -> None:
        self._run.cancel()


class MemoryBackend:
    """The backend, found in place of the installed one (see :func:`use_memory_backend`);
    keeps the jobs it was given and the workers it made."""

    jobs: list[ScaleOutJob] = []
    workers: list[MemoryWorker] = []

    def can_read(self, source: Source[Any]) -> bool:
        return isinstance(source, Topic)

    def create_worker(self, settings: ScaleOutSettings, job: ScaleOutJob) -> MemoryWorker:
        assert settings.application_id == "app"
        worker = MemoryWorker(job)
        self.jobs.append(job)
        self.workers.append(worker)
        return worker


def use_memory_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scaleout, "load_backend", MemoryBackend)
    monkeypatch.setattr("flowactors.api.environment.load_backend", MemoryBackend)
    MemoryBackend.jobs = []
    MemoryBackend.workers = []
