"""Windows with trigger state, merging and evictors give the same results on disk (RocksDB)
as in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowactors import StreamExecutionEnvironment, WatermarkStrategy
from flowactors.state import RocksDBStateBackend
from flowactors.windows import (
    ContinuousEventTimeTrigger,
    CountEvictor,
    EventTimeSessionWindows,
    TimeEvictor,
    TumblingEventTimeWindows,
)
from tests.support.scripted import Emit, Scripted, one_by_one, punctuated


async def run(backend: Any) -> list[Any]:
    env = StreamExecutionEnvironment(parallelism=2)
    if backend is not None:
        env.set_state_backend(backend)
    # one reader and a watermark after every event (50 ms behind): the same run every time
    data = [(f"u{i % 7}", i * 37 % 5000) for i in range(2000)]
    source = Scripted(one_by_one([(e, e[1]) for e in data]))
    events = env.from_source(source, punctuated(50))
    continuous = (
        events.key_by(lambda e: e[0])
        .window(EventTimeSessionWindows.with_gap(40))
        .trigger(ContinuousEventTimeTrigger.of(25))
        .reduce(lambda a, b: (a[0], max(a[1], b[1])))
        .map(lambda r: ("c", *r))
    )
    evicted = (
        events.key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(500))
        .evictor(TimeEvictor.of(100))
        .process(
            lambda key, ctx, elements, out: out.collect(
                ("e", key, ctx.window.start, sorted(v for _, v in elements))
            )
        )
    )
    return await continuous.union(evicted).execute_and_collect()


async def test_same_results_on_disk_and_in_memory(tmp_path: Path) -> None:
    in_memory = await run(None)
    assert len(in_memory) > 100
    assert sorted(await run(RocksDBStateBackend(local_dir=tmp_path)), key=str) == sorted(
        in_memory, key=str
    )


async def test_count_evictor_on_disk_keeps_the_newest(tmp_path: Path) -> None:
    env = StreamExecutionEnvironment(parallelism=2)
    env.set_state_backend(RocksDBStateBackend(local_dir=tmp_path))
    # one reader, so each key's elements arrive in order
    source = Scripted([Emit([(f"u{i % 3}", i) for i in range(30)], list(range(30)))])
    last = (
        env.from_source(source, WatermarkStrategy.for_monotonous_timestamps())
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(1_000))
        .evictor(CountEvictor.of(2))
        .process(lambda key, ctx, elements, out: out.collect((key, [v for _, v in elements])))
    )
    assert sorted(await last.execute_and_collect()) == [
        ("u0", [24, 27]),
        ("u1", [25, 28]),
        ("u2", [26, 29]),
    ]
