"""Keyed state on disk (RocksDB): same results as in memory, larger than its memory
budget, incremental checkpoints, restore at another parallelism."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import psutil
import pytest

from flowactors import (
    KeyedProcessFunction,
    ListStateDescriptor,
    MapStateDescriptor,
    RuntimeContext,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from flowactors.checkpoint.storage import CompletedCheckpoint
from flowactors.spi import (
    InputStatus,
    ReaderOutput,
    Sink,
    SinkWriter,
    SinkWriterContext,
    Source,
    SourceReader,
    SourceReaderContext,
)
from flowactors.state import RocksDBStateBackend
from flowactors.windows import EventTimeSessionWindows, TumblingEventTimeWindows


class Everything(KeyedProcessFunction[str, tuple[str, int], tuple[str, int, int, int]]):
    """Uses value, list and map state; emits what it sees of them."""

    def open(self, ctx: RuntimeContext) -> None:
        self.total = ctx.get_state(ValueStateDescriptor[int]("total", default=0))
        self.recent = ctx.get_list_state(ListStateDescriptor[int]("recent"))
        self.seen = ctx.get_map_state(MapStateDescriptor[int]("seen"))

    def process_element(self, value: tuple[str, int], ctx: Any, out: Any) -> None:
        key, v = value
        self.total.update(self.total.value() + v)
        self.recent.add(v)
        if len(self.recent.get()) > 3:
            self.recent.update(self.recent.get()[-3:])
        self.seen.put(v % 5, self.seen.get(v % 5) or 0 + 1)
        out.collect((key, self.total.value(), sum(self.recent.get()), len(list(self.seen.keys()))))


def _leftovers(local_dir: Path) -> list[Path]:
    return [p for p in local_dir.rglob("*") if p.is_file()]


async def _run(backend: Any, parallelism: int) -> list[Any]:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    if backend is not None:
        env.set_state_backend(backend)
    data = [(f"k{i % 13}", i) for i in range(3000)]
    return (
        await env.from_collection(data)
        .key_by(lambda t: t[0])
        .process(Everything())
        .execute_and_collect()
    )


@pytest.mark.parametrize("parallelism", [1, 3])
async def test_same_results_as_in_memory(parallelism: int, tmp_path: Path) -> None:
    in_memory = await _run(None, parallelism)
    on_disk = await _run(RocksDBStateBackend(local_dir=tmp_path, memory_budget_mb=8), parallelism)
    assert sorted(on_disk) == sorted(in_memory)
    assert len(in_memory) == 3000
    assert _leftovers(tmp_path) == []  # the working databases are removed when the job ends


async def test_windows_on_disk_match_memory(tmp_path: Path) -> None:
    async def run(backend: Any) -> list[Any]:
        env = StreamExecutionEnvironment(parallelism=2)
        if backend is not None:
            env.set_state_backend(backend)
        strategy = WatermarkStrategy.for_bounded_out_of_orderness(50).with_timestamp_assigner(
            lambda e, ts: e[1]
        )
        events = env.from_collection([(f"u{i % 7}", i * 37 % 5000) for i in range(2000)])
        events = events.assign_timestamps_and_watermarks(strategy)
        tumbling = (
            events.key_by(lambda e: e[0])
            .window(TumblingEventTimeWindows.of(500))
            .process(
                lambda key, ctx, elements, out: out.collect(
                    ("t", key, ctx.window.start, len(list(elements)))
                )
            )
        )
        sessions = (
            events.key_by(lambda e: e[0])
            .window(EventTimeSessionWindows.with_gap(40))
            .reduce(lambda a, b: (a[0], max(a[1], b[1])))
        )
        return await tumbling.union(sessions.map(lambda r: ("s", *r))).execute_and_collect()

    assert sorted(await run(RocksDBStateBackend(local_dir=tmp_path))) == sorted(await run(None))


class Collect(Sink[Any]):
    def __init__(self, out: list[Any]) -> None:
        self.out = out

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        out = self.out

        class Writer(SinkWriter[Any]):
            async def write(self, values: list[Any], timestamps: Any) -> None:
                out.extend(values)

        return Writer()


class Fed(Source[tuple[int, bytes]]):
    """Emits what the test puts into its queue, and stays open."""

    max_parallelism = 1

    def __init__(self, queue: asyncio.Queue[list[tuple[int, bytes]]]) -> None:
        self.queue = queue

    def create_reader(self, context: SourceReaderContext) -> SourceReader[tuple[int, bytes]]:
        queue = self.queue

        class Reader(SourceReader[tuple[int, bytes]]):
            async def poll_next(self, output: ReaderOutput[tuple[int, bytes]]) -> InputStatus:
                try:
                    batch = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return InputStatus.NOTHING_AVAILABLE
                await output.collect_batch(batch)
                return InputStatus.MORE_AVAILABLE

            async def is_available(self) -> None:
                await asyncio.sleep(0.005)

        return Reader()


class Store(KeyedProcessFunction[int, tuple[int, bytes], None]):
    def open(self, ctx: RuntimeContext) -> None:
        self.value = ctx.get_state(ValueStateDescriptor[bytes]("blob"))

    def process_element(self, value: tuple[int, bytes], ctx: Any, out: Any) -> None:
        self.value.update(value[1])


async def _drain(queue: asyncio.Queue[Any]) -> None:
    while not queue.empty():
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)


async def _checkpoint(client: Any) -> Any:
    coordinator = client._execution.coordinator
    return await coordinator.trigger(is_savepoint=False)


async def test_state_larger_than_the_memory_budget_with_incremental_checkpoints(
    tmp_path: Path,
) -> None:
    budget_mb = 8
    keys, blob = 40_000, 2048  # ~80 MB of values: ten times the budget
    queue: asyncio.Queue[list[tuple[int, bytes]]] = asyncio.Queue()
    env = StreamExecutionEnvironment()
    env.set_state_backend(
        RocksDBStateBackend(local_dir=tmp_path / "local", memory_budget_mb=budget_mb)
    )
    env.enable_checkpointing(3_600_000, storage=tmp_path / "checkpoints", resume="none")
    env.from_source(Fed(queue), name="blobs").uid("blobs").key_by(lambda t: t[0]).process(
        Store()
    ).uid("store").print()
    process = psutil.Process(os.getpid())
    rss_before = process.memory_info().rss
    client = await env.execute_async("big-state")
    for lo in range(0, keys, 1000):
        queue.put_nowait([(k, os.urandom(blob)) for k in range(lo, lo + 1000)])
        # The job gets a fair share of the loop, not all of it: wait until it took the
        # batch, so that what grows is the job's state and not this producer's queue.
        while not queue.empty():
            await asyncio.sleep(0.001)
    await _drain(queue)
    rss_growth = process.memory_info().rss - rss_before
    full = await _checkpoint(client)
    full_size = sum(info.size for info in full.files())
    assert full_size > 10 * budget_mb * 2**20  # the state is ten times the budget ...
    assert rss_growth < keys * blob / 2  # ... and far less than it stayed in memory

    # Background compaction of the load may still rewrite files: wait until a checkpoint
    # without changes writes next to nothing (only then is "what changed" measurable).
    for _ in range(20):
        await asyncio.sleep(0.2)
        await _checkpoint(client)
        if client.checkpoint_stats().written_bytes < full_size * 0.01:
            break
    else:
        pytest.fail("RocksDB files never settled after loading")

    # change 1% of the keys: the next checkpoint writes about 1% of the state
    queue.put_nowait([(k, os.urandom(blob)) for k in range(0, keys, 100)])
    await _drain(queue)
    second = await _checkpoint(client)
    stats = client.checkpoint_stats()
    assert stats.checkpoint_id == second.checkpoint_id
    assert stats.written_bytes < full_size * 0.05
    assert stats.size_bytes >= full_size
    shared = [i for i in second.files() if i.path.startswith("..")]
    assert shared, "the checkpoint refers to files earlier ones uploaded"
    await client.cancel()


async def test_restore_rocksdb_checkpoint_at_another_parallelism(tmp_path: Path) -> None:
    async def load(parallelism: int, savepoint_in: Path | None, savepoint_out: Path) -> None:
        queue: asyncio.Queue[list[tuple[int, bytes]]] = asyncio.Queue()
        env = StreamExecutionEnvironment(parallelism=parallelism)
        env.set_state_backend(RocksDBStateBackend(local_dir=tmp_path / "local"))
        env.from_source(Fed(queue), name="blobs").uid("blobs").key_by(lambda t: t[0]).process(
            Store()
        ).uid("store").print()
        client = await env.execute_async("rescale", savepoint_path=savepoint_in)
        if savepoint_in is None:
            queue.put_nowait([(k, str(k).encode()) for k in range(500)])
        else:
            queue.put_nowait([(k, b"again") for k in range(500, 520)])
        await _drain(queue)
        await client.stop_with_savepoint(savepoint_out)

    await load(2, None, tmp_path / "sp1")
    await load(3, tmp_path / "sp1", tmp_path / "sp2")
    await load(1, tmp_path / "sp2", tmp_path / "sp3")
    # read the last savepoint back through a job that reports its whole state
    checkpoint = CompletedCheckpoint.load(tmp_path / "sp3")
    parts = checkpoint.operators()["store"]["rocksdb"]
    assert [p["key_groups"] for p in parts] == [[0, 128]]

    class Report(KeyedProcessFunction[int, tuple[int, bytes], tuple[int, bytes]]):
        def open(self, ctx: RuntimeContext) -> None:
            self.value = ctx.get_state(ValueStateDescriptor[bytes]("blob"))

        def process_element(self, value: tuple[int, bytes], ctx: Any, out: Any) -> None:
            out.collect((value[0], self.value.value()))

    env = StreamExecutionEnvironment(parallelism=2)
    env.set_state_backend(RocksDBStateBackend(local_dir=tmp_path / "local"))
    probe = env.from_collection([(k, b"") for k in range(525)]).uid("blobs")
    out: list[Any] = []
    probe.key_by(lambda t: t[0]).process(Report()).uid("store").sink_to(Collect(out))
    await env.execute("rescale", savepoint_path=tmp_path / "sp3")
    expected = {k: str(k).encode() for k in range(500)} | {k: b"again" for k in range(500, 520)}
    assert dict(out) == {k: expected.get(k) for k in range(525)}
