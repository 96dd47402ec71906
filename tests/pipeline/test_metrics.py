"""What client.metrics() and client.checkpoint_stats() report about a job."""

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
from flowactors.api.sources import CollectionSource
from flowactors.spi import Sink, SinkWriter, SinkWriterContext


class Seen(MapFunction[int, int]):
    def open(self, ctx: RuntimeContext) -> None:
        self.seen = ctx.get_metric_group().counter("seen")
        self.step = 1 if ctx.get_task_name() == "first" else 2

    def map(self, value: int) -> int:
        self.seen.inc(self.step)
        return value


async def test_metrics_are_scoped_per_operator_and_sinks_count_their_output() -> None:
    env = StreamExecutionEnvironment()
    env.from_collection(list(range(100))).map(Seen()).name("first").map(Seen()).name(
        "second"
    ).filter(lambda v: v % 2 == 0).print()
    result = await env.execute("scoped")
    (task,) = result.metrics.tasks  # one chain: source -> first -> second -> filter -> sink
    assert task.user_metrics["first.seen"] == 100
    assert task.user_metrics["second.seen"] == 200
    assert task.records_out == 50  # what the sink at the end of the chain wrote


async def test_a_source_task_reports_the_watermark_its_chain_emitted() -> None:
    env = StreamExecutionEnvironment()
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda v, _: v)
    env.from_source(CollectionSource([1_000, 2_000, 3_000]), strategy).print()
    result = await env.execute("watermarks")
    (task,) = result.metrics.tasks
    assert task.watermark == 2**63 - 1  # ended: the final watermark passed


class FirstSnapshotFails(Sink[Any]):
    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        return _FailOnce()


class _FailOnce(SinkWriter[Any]):
    def __init__(self) -> None:
        self.snapshots = 0

    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        pass

    def snapshot_state(self, checkpoint_id: int) -> list[Any]:
        self.snapshots += 1
        if self.snapshots == 1:
            raise OSError("disk full")
        return []


async def until_stats(client: JobClient) -> Any:
    while (stats := client.checkpoint_stats()) is None:
        await asyncio.sleep(0.01)
    return stats


async def test_checkpoint_stats_say_when_one_last_completed_and_failed(tmp_path: Path) -> None:
    env = StreamExecutionEnvironment()
    env.enable_checkpointing(20, storage=tmp_path, resume="none", tolerable_failures=5)
    env.from_generator(lambda i: i, rate=2_000).sink_to(FirstSnapshotFails())
    before = int(time.time() * 1000)
    client = await env.execute_async("stats")
    try:
        stats = await until_stats(client)
    finally:
        await client.cancel()
    now = int(time.time() * 1000)
    assert before <= stats.completed_at_ms <= now
    assert stats.last_failed_at_ms is not None and before <= stats.last_failed_at_ms <= now
    assert "checkpoint 1:" in stats.last_failure and "OSError: disk full" in stats.last_failure
