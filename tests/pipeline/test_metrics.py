"""What client.metrics() and client.checkpoint_stats() report about a job."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from flowactors import (
    Collector,
    Context,
    JobClient,
    MapFunction,
    OutputTag,
    ProcessFunction,
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
    assert [(op.name, op.counters) for op in task.operators if op.counters] == [
        ("first", {"seen": 100}),
        ("second", {"seen": 200}),
    ]
    assert task.records_out == 50  # what the sink at the end of the chain wrote


class Discard(Sink[Any]):
    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        return _Discarding()


class _Discarding(SinkWriter[Any]):
    async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
        pass


class Odd(ProcessFunction[int, int]):
    """Even values to the main output, odd ones to the side output ``odd``."""

    def process_element(self, value: int, ctx: Context, out: Collector[int]) -> None:
        if value % 2:
            ctx.output(ODD, value)
        else:
            out.collect(value)


ODD: OutputTag[int] = OutputTag("odd")


def counts(metrics: Any) -> dict[str, list[tuple[int, int]]]:
    """``operator uid -> [(records in, records out) per subtask]``."""
    found: dict[str, list[tuple[int, int]]] = {}
    for task in sorted(metrics.tasks, key=lambda t: t.subtask):
        for op in task.operators:
            found.setdefault(op.uid, []).append((op.records_in, op.records_out))
    return found


async def test_records_are_counted_per_operator_inside_a_chain() -> None:
    env = StreamExecutionEnvironment()
    split = (
        env.from_collection(list(range(100)))
        .uid("numbers")
        .flat_map(lambda v: [v, v + 1000])
        .uid("twice")
        .filter(lambda v: v % 5 != 0)
        .uid("no-fives")
        .process(Odd())
        .uid("split")
    )
    split.sink_to(Discard()).uid("evens")
    split.get_side_output(ODD).map(lambda v: -v).uid("negate").sink_to(Discard()).uid("odds")
    result = await env.execute("chained")
    (task,) = result.metrics.tasks  # everything runs in one chain
    # 200 values, 40 of them multiples of 5; of the 160 left, 80 are even
    assert counts(result.metrics) == {
        "numbers": [(100, 100)],
        "twice": [(100, 200)],
        "no-fives": [(200, 160)],
        "split": [(160, 160)],  # 80 to the main output, 80 to the side output
        "evens": [(80, 80)],  # a sink's out: what it wrote
        "negate": [(80, 80)],
        "odds": [(80, 80)],
    }
    assert (task.records_in, task.records_out) == (100, 160)


async def test_operator_counts_add_up_across_subtasks_and_chains() -> None:
    env = StreamExecutionEnvironment(parallelism=2)
    (
        env.from_collection([f"k{i % 7}" for i in range(1_000)])
        .uid("keys")
        .map(lambda k: (k, 1))
        .uid("ones")
        .key_by(lambda kv: kv[0])
        .reduce(lambda a, b: (a[0], a[1] + b[1]))
        .uid("sums")
        .filter(lambda kv: kv[1] % 10 == 0)
        .uid("tens")
        .sink_to(Discard())
        .uid("out")
    )
    result = await env.execute("two chains")
    found = counts(result.metrics)
    totals = {uid: tuple(map(sum, zip(*per_subtask))) for uid, per_subtask in found.items()}
    # 1,000 records over 7 keys: 143 of k0..k5 and 142 of k6; every key's running sum
    # is emitted, and hits a multiple of ten 14 times
    assert totals == {
        "keys": (1_000, 1_000),
        "ones": (1_000, 1_000),
        "sums": (1_000, 1_000),
        "tens": (1_000, 7 * 14),
        "out": (7 * 14, 7 * 14),
    }
    assert len(found["sums"]) == 2 and min(found["sums"])[0] > 0  # both subtasks got keys


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
