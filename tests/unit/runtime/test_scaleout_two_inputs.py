"""Two-input operators scaled out, against an in-memory backend (no Kafka).

The backend keeps every topic as lists, one per partition. Records of an internal
topic are ``(input index, value, timestamp)``, as Kafka carries them (the index in a
header); a task's reader hands them on in order, each run with its input index, and
ends its input with the maximum watermark, so every timer fires. Each task of the
two-input stage is one chain (``ScaleOutRunner`` asserts it); its outputs are those
of the job in one process.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from flowactors import (
    Collector,
    KeyedContext,
    KeyedCoProcessFunction,
    ProcessJoinFunction,
    RuntimeContext,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from flowactors import StreamExecutionEnvironment as Env
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
                    lambda sink: sink,
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
    jobs: list[ScaleOutJob] = []

    def can_read(self, source: Source[Any]) -> bool:
        return isinstance(source, Topic)

    def create_worker(self, settings: ScaleOutSettings, job: ScaleOutJob) -> MemoryWorker:
        self.jobs.append(job)
        return MemoryWorker(job)


@pytest.fixture(autouse=True)
def backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scaleout, "load_backend", MemoryBackend)
    monkeypatch.setattr("flowactors.api.environment.load_backend", MemoryBackend)
    MemoryBackend.jobs = []


def scaled_out() -> Env:
    env = Env(parallelism=3)
    env.enable_checkpointing(100)
    env.enable_scale_out(bootstrap_servers="unused:9092", application_id="app")
    return env


def split(values: list[Any], partitions: int) -> list[list[Any]]:
    return [values[p::partitions] for p in range(partitions)]


# rides (id, ts) and fares (id, amount, ts): rides 0..29, fares for even ids only, so
# odd rides wait for a fare until their timer (ts + 100) says it never came.
RIDES = [(i, 1000 + 10 * i) for i in range(30)]
FARES = [(i, 5 * i, 1003 + 10 * i) for i in range(0, 30, 2)]


def by_event_time() -> WatermarkStrategy[Any]:
    return WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r, _: r[-1])


class Enrich(KeyedCoProcessFunction[int, Any, Any, Any]):
    """A ride and its fare in either order; a ride without a fare 100 ms later is unpaid."""

    def open(self, ctx: RuntimeContext) -> None:
        self.ride = ctx.get_state(ValueStateDescriptor[Any]("ride"))
        self.fare = ctx.get_state(ValueStateDescriptor[Any]("fare"))

    def process_element1(self, ride: Any, ctx: KeyedContext[int], out: Collector[Any]) -> None:
        fare = self.fare.value()
        if fare is None:
            self.ride.update(ride)
            ctx.timer_service().register_event_time_timer(ride[1] + 100)
        else:
            self.fare.clear()
            out.collect(("paid", ride[0], fare[1]))

    def process_element2(self, fare: Any, ctx: KeyedContext[int], out: Collector[Any]) -> None:
        ride = self.ride.value()
        if ride is None:
            self.fare.update(fare)
        else:
            self.ride.clear()
            out.collect(("paid", ride[0], fare[1]))

    def on_timer(self, timestamp: int, ctx: KeyedContext[int], out: Collector[Any]) -> None:
        ride = self.ride.value()
        if ride is not None:
            self.ride.clear()
            out.collect(("unpaid", ride[0], timestamp))


def enrichment(env: Env, rides: Any, fares: Any, out: Sink[Any]) -> None:
    (
        rides.key_by(lambda r: r[0])
        .connect(fares.key_by(lambda f: f[0]))
        .process(Enrich())
        .uid("enrich")
        .sink_to(out)
    )


ENRICHED = Counter(
    [("paid", i, 5 * i) for i in range(0, 30, 2)]
    + [("unpaid", i, 1000 + 10 * i + 100) for i in range(1, 30, 2)]
)


async def test_a_keyed_co_process_function_runs_in_one_chain_per_task() -> None:
    env = scaled_out()
    out = Collected()
    rides = env.from_source(Topic(split(RIDES, 4)), by_event_time(), "rides")
    fares = env.from_source(Topic(split(FARES, 2)), by_event_time(), "fares")
    enrichment(env, rides, fares, out)
    client = await env.execute_async("enrich")
    await client.wait()
    (job,) = MemoryBackend.jobs
    (joined,) = [s for s in job.stages if s.source is None]
    assert joined.inputs == 2 and joined.upstream_stages == ("fares-1", "rides-0")
    assert all(s.inputs == 1 for s in job.stages if s is not joined)
    assert sorted(client.assignment()) == sorted(
        [("rides-0", p) for p in range(4)]
        + [("fares-1", p) for p in range(2)]
        + [("enrich", r) for r in range(3)]
    )
    assert Counter(out.values) == ENRICHED


async def test_the_same_job_in_one_process_gives_the_same_output() -> None:
    """The reference the scaled-out test compares with (no scale-out involved)."""
    env = Env(parallelism=3)
    rides = env.from_collection(RIDES).assign_timestamps_and_watermarks(by_event_time())
    fares = env.from_collection(FARES).assign_timestamps_and_watermarks(by_event_time())
    out = Collected()
    enrichment(env, rides, fares, out)
    await env.execute("enrich-one-process")
    assert Counter(out.values) == ENRICHED


class Pair(ProcessJoinFunction[Any, Any, Any]):
    def process_element(self, left: Any, right: Any, ctx: Any, out: Collector[Any]) -> None:
        out.collect((left[0], left[1], right[1], ctx.timestamp()))


async def test_an_interval_join_runs_scaled_out() -> None:
    env = scaled_out()
    out = Collected()
    lefts = [(k % 7, t) for k, t in zip(range(200), range(0, 4000, 20))]
    rights = [(k % 7, t) for k, t in zip(range(150), range(5, 4000, 27))]
    left = env.from_source(Topic(split(lefts, 4)), by_event_time(), "left")
    right = env.from_source(Topic(split(rights, 3)), by_event_time(), "right")
    (
        left.key_by(lambda r: r[0])
        .interval_join(right.key_by(lambda r: r[0]))
        .between(-30, 50)
        .process(Pair())
        .uid("join")
        .sink_to(out)
    )
    client = await env.execute_async("join")
    await client.wait()
    want = Counter(
        (lk, lt, rt, max(lt, rt))
        for lk, lt in lefts
        for rk, rt in rights
        if lk == rk and lt - 30 <= rt <= lt + 50
    )
    assert want and Counter(out.values) == want


async def test_a_co_map_of_unkeyed_streams_runs_scaled_out() -> None:
    env = scaled_out()
    out = Collected()
    words = env.from_source(Topic(split(["a", "bb", "ccc"], 2)), name="words")
    numbers = env.from_source(Topic(split([1, 2, 3, 4], 2)), name="numbers")
    words.connect(numbers).map(len, lambda n: n * 10).uid("co-map").sink_to(out)
    client = await env.execute_async("co-map")
    await client.wait()
    assert sorted(out.values) == [1, 2, 3, 10, 20, 30, 40]
