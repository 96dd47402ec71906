"""The time budget of a turn: firing, snapshots and restores yield to the embedding
service's coroutines without changing what the job computes, and a user function
that holds the loop is reported."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from flowactors import ExecutionConfig, StreamExecutionEnvironment, WatermarkStrategy
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
from flowactors.windows import TumblingEventTimeWindows

#: A slice so short that every check finds it spent: the most yielding there can be.
TINY = ExecutionConfig(time_slice_ms=0.000_001)
KEYS = 3000


class Host:
    """A coroutine of the embedding service: counts its turns while the job runs."""

    def __init__(self) -> None:
        self.turns = 0
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            self.turns += 1
            await asyncio.sleep(0)

    def stop(self) -> None:
        self.task.cancel()


class Recording(Sink[Any]):
    """Keeps every record with the host's turn count when it arrived."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.records: list[Any] = []
        self.turns: list[int] = []

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        sink = self

        class Writer(SinkWriter[Any]):
            async def write(self, values: list[Any], timestamps: Any) -> None:
                sink.records.extend(values)
                sink.turns.extend([sink.host.turns] * len(values))

        return Writer()


class Discard(Sink[Any]):
    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        class Writer(SinkWriter[Any]):
            async def write(self, values: list[Any], timestamps: Any) -> None:
                pass

        return Writer()


def window_job(env: StreamExecutionEnvironment, sink: Sink[Any]) -> None:
    events = [(f"k{i % KEYS}", i) for i in range(2 * KEYS)]
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda e, _: 1000
    )
    (
        env.from_collection(events)
        .assign_timestamps_and_watermarks(strategy)
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(60_000))
        .reduce(lambda a, b: (a[0], a[1] + b[1]))
        .sink_to(sink)
    )


async def test_windows_that_one_watermark_makes_due_fire_in_slices() -> None:
    host = Host()
    try:
        sink = Recording(host)
        env = StreamExecutionEnvironment(config=TINY)
        window_job(env, sink)
        await env.execute("sliced")
    finally:
        host.stop()
    expected = {(f"k{k}", k + (k + KEYS)) for k in range(KEYS)}
    assert sorted(sink.records) == sorted(expected)
    # All windows fired at the final watermark, and the host ran in between.
    assert len(set(sink.turns)) > 1


async def test_a_user_function_that_holds_the_loop_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def slow(x: int) -> int:
        if x == 3:
            deadline = time.perf_counter() + 0.02
            while time.perf_counter() < deadline:  # holds the loop, as blocking code does
                pass
        return x

    env = StreamExecutionEnvironment(config=ExecutionConfig(report_loop_hold_ms=10))
    numbers = env.from_collection(range(5)).map(slow).name("Blocking Map")
    with caplog.at_level(logging.WARNING, logger="flowactors.runtime"):
        result = await numbers.execute_and_collect()
    assert result == [0, 1, 2, 3, 4]
    holds = [r.getMessage() for r in caplog.records if "held the event loop" in r.getMessage()]
    assert holds and "Blocking Map" in holds[0]


async def test_the_hold_metric_counts_turns_that_held_the_loop() -> None:
    def slow(x: int) -> int:
        deadline = time.perf_counter() + 0.02
        while time.perf_counter() < deadline:
            pass
        return x

    env = StreamExecutionEnvironment(config=ExecutionConfig(report_loop_hold_ms=10))
    env.from_collection([1]).map(slow).sink_to(Discard())
    result = await env.execute("holds")
    metrics = result.metrics.tasks[0].user_metrics  # the head operator's: the source's
    assert metrics["Collection Source.loopHolds"] >= 1
    assert metrics["Collection Source.longestLoopHoldMs"] >= 10


class HeldOpen(Source[tuple[int, int]]):
    """``(i, i)`` for ``i`` in ``range(n)``, then nothing until cancelled."""

    max_parallelism = 1

    def __init__(self, n: int) -> None:
        self.n = n

    def create_reader(self, context: SourceReaderContext) -> SourceReader[tuple[int, int]]:
        n = self.n

        class Reader(SourceReader[tuple[int, int]]):
            sent = False

            async def poll_next(self, output: ReaderOutput[tuple[int, int]]) -> InputStatus:
                if not self.sent:
                    self.sent = True
                    await output.collect_batch([(i, i) for i in range(n)])
                return InputStatus.NOTHING_AVAILABLE

            async def is_available(self) -> None:
                await asyncio.Event().wait()

        return Reader()


async def test_a_snapshot_taken_in_slices_restores_exactly(tmp_path: Path) -> None:
    n = 40_000  # more than one chunk of the sliced copy

    def job(count: int) -> StreamExecutionEnvironment:
        env = StreamExecutionEnvironment(config=TINY)
        env.enable_checkpointing(60_000, storage=tmp_path / "checkpoints")
        env.from_source(HeldOpen(count)).key_by(lambda r: r[0]).sum(1).uid("sums").sink_to(
            Discard()
        )
        return env

    first = await job(n).execute_async("sliced")
    try:
        view = first.keyed_state("sums", "value")
        for _ in range(2000):
            if len(view) == n:
                break
            await asyncio.sleep(0.005)
        savepoint = await first.trigger_savepoint(tmp_path / "savepoint")
    finally:
        await first.cancel()
    second = await job(0).execute_async("sliced", savepoint_path=savepoint)
    try:
        assert dict(second.keyed_state("sums", "value").items()) == {i: (i, i) for i in range(n)}
    finally:
        await second.cancel()
