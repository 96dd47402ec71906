"""Jobs the monitoring tests run: real sources, operators, state, sinks and checkpoints.

- :func:`counting_job`: an endless generator at a given rate, event-time timestamps
  and watermarks, a map with a user counter and gauge, ``key_by`` and ``reduce``
  (keyed state: one entry per key), into a sink that keeps what it gets.
- :class:`GatedSource`: a source whose readers "connect" (``start()``) only once a
  gate opens, then emit ``count`` records while reporting their consumer lag.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from flowactors import (
    JobClient,
    MapFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
    WatermarkStrategy,
)
from flowactors.spi import (
    Boundedness,
    InputStatus,
    ReaderOutput,
    Sink,
    SinkWriter,
    SinkWriterContext,
    Source,
    SourceReader,
    SourceReaderContext,
)

KEYS = 10


class KeepingSink(Sink[Any]):
    def __init__(self) -> None:
        self.records: list[Any] = []

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        return _KeepingWriter(self.records)


class _KeepingWriter(SinkWriter[Any]):
    def __init__(self, records: list[Any]) -> None:
        self.records = records

    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        self.records.extend(values)


class Counted(MapFunction[tuple[int, int], tuple[int, int]]):
    """Counts records in a user counter; a gauge shows the last key seen."""

    def open(self, ctx: RuntimeContext) -> None:
        self.seen = ctx.get_metric_group().counter("records_seen")
        self.last_key = 0
        ctx.get_metric_group().gauge("last_key", lambda: float(self.last_key))

    def map(self, value: tuple[int, int]) -> tuple[int, int]:
        self.seen.inc()
        self.last_key = value[0]
        return value


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return (a[0], a[1] + b[1])


def build_counting_job(
    env: StreamExecutionEnvironment,
    rate: float | None = 2000.0,
    sink: Sink[Any] | None = None,
    sink_parallelism: int | None = None,
) -> None:
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda event, ts: int(time.time() * 1000)
    )
    (
        env.from_generator(lambda i: (i % KEYS, 1), rate=rate, name="Numbers")
        .uid("numbers")
        .assign_timestamps_and_watermarks(strategy)
        .map(Counted())
        .name("Counted")
        .uid("counted")
        .key_by(lambda t: t[0])
        .reduce(_add)
        .name("Sums")
        .uid("sums")
        .sink_to(sink or KeepingSink(), name="Keep")
        .set_parallelism(sink_parallelism or env.get_parallelism())
    )


async def start_counting_job(
    tmp_path: Path,
    parallelism: int = 2,
    rate: float | None = 2000.0,
    checkpoint_interval_ms: int = 100,
) -> JobClient:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    env.enable_checkpointing(checkpoint_interval_ms, storage=tmp_path / "checkpoints")
    build_counting_job(env, rate)
    return await env.execute_async("counting")


class GatedSource(Source[int]):
    """Unbounded: emits ``count`` records per subtask after ``gate`` opens, then idles."""

    boundedness = Boundedness.CONTINUOUS_UNBOUNDED

    def __init__(self, gate: asyncio.Event, count: int = 1000) -> None:
        self.gate = gate
        self.count = count

    def create_reader(self, context: SourceReaderContext) -> SourceReader[int]:
        return _GatedReader(self, context)


class _GatedReader(SourceReader[int]):
    def __init__(self, source: GatedSource, context: SourceReaderContext) -> None:
        self.source = source
        self.context = context
        self.position = context.restored_state[0] if context.restored_state else 0

    async def start(self) -> None:
        await self.source.gate.wait()  # "connecting to the broker"
        self.context.metrics.report_lag("numbers", self.context.subtask_index, self.source.count)

    async def poll_next(self, output: ReaderOutput[int]) -> InputStatus:
        end = min(self.position + 100, self.source.count)
        if self.position < end:
            await output.collect_batch(list(range(self.position, end)))
            self.position = end
        lag = self.source.count - self.position
        self.context.metrics.report_lag("numbers", self.context.subtask_index, lag)
        return InputStatus.MORE_AVAILABLE if lag else InputStatus.NOTHING_AVAILABLE

    async def is_available(self) -> None:
        await asyncio.sleep(0.05)

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        return [self.position]

    async def close(self) -> None:
        self.context.metrics.forget_lag("numbers", self.context.subtask_index)


async def wait_until(condition: Any, timeout: float = 10.0, interval: float = 0.05) -> None:
    """Poll ``condition()`` (sync or async) until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
