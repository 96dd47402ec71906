"""Every operator that calls user code per record calls it the same way.

A user method may be a plain ``def``, an ``async def``, or a plain ``def`` that
returns an awaitable (a coroutine made by a helper); whatever it is, its work is
done and its output collected — with or without event timestamps, chained or not.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from typing import Any

import pytest

from flowactors import (
    CoFlatMapFunction,
    CoProcessFunction,
    FilterFunction,
    FlatMapFunction,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    MapFunction,
    ProcessFunction,
    ProcessJoinFunction,
    ProcessWindowFunction,
    StreamExecutionEnvironment,
    WatermarkStrategy,
)
from flowactors.api.datastream import DataStream
from flowactors.windows import TumblingEventTimeWindows

N = 40


async def later(value: Any) -> Any:
    await asyncio.sleep(0)
    return value


async def collect_later(out: Any, value: Any) -> None:
    await asyncio.sleep(0)
    out.collect(value)


@pytest.fixture(params=[1, 4], ids=lambda p: f"p{p}")
def parallelism(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture(params=[False, True], ids=["no-timestamps", "timestamps"])
def timestamps(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def numbers(env: StreamExecutionEnvironment, timestamps: bool, n: int = N) -> DataStream[int]:
    stream = env.from_collection(list(range(n)))
    if timestamps:
        strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
            lambda v, _: v * 10
        )
        stream = stream.assign_timestamps_and_watermarks(strategy)
    return stream


class AwaitableProcess(ProcessFunction[int, int]):
    def process_element(self, value: int, ctx: Any, out: Any) -> Awaitable[None]:
        return collect_later(out, value * 2)


class AwaitableKeyedProcess(KeyedProcessFunction[int, int, int]):
    def process_element(self, value: int, ctx: Any, out: Any) -> Awaitable[None]:
        return collect_later(out, value * 2)


class AwaitableMap(MapFunction[int, int]):
    def map(self, value: int) -> Any:
        return later(value * 2)


class AwaitableFlatMap(FlatMapFunction[int, int]):
    def flat_map(self, value: int) -> Any:
        return later([value, value])


class AwaitableFilter(FilterFunction[int]):
    def filter(self, value: int) -> Any:
        return later(value % 2 == 0)


class AwaitableCoProcess(CoProcessFunction[int, int, int]):
    def process_element1(self, value: int, ctx: Any, out: Any) -> Awaitable[None]:
        return collect_later(out, value)

    def process_element2(self, value: int, ctx: Any, out: Any) -> Awaitable[None]:
        return collect_later(out, -value)


class AwaitableKeyedCoProcess(KeyedCoProcessFunction[int, int, int, int]):
    def process_element1(self, value: int, ctx: Any, out: Any) -> Awaitable[None]:
        return collect_later(out, value)

    def process_element2(self, value: int, ctx: Any, out: Any) -> Awaitable[None]:
        return collect_later(out, -value)


class AwaitableCoFlatMap(CoFlatMapFunction[int, int, int]):
    def flat_map1(self, value: int, out: Any) -> Awaitable[None]:
        return collect_later(out, value)

    def flat_map2(self, value: int, out: Any) -> Awaitable[None]:
        return collect_later(out, -value)


async def test_process_function(parallelism: int, timestamps: bool) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    out = await numbers(env, timestamps).process(AwaitableProcess()).execute_and_collect()
    assert sorted(out) == [2 * i for i in range(N)]


async def test_keyed_process_function(parallelism: int, timestamps: bool) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    stream = numbers(env, timestamps).key_by(lambda v: v % 5).process(AwaitableKeyedProcess())
    assert sorted(await stream.execute_and_collect()) == [2 * i for i in range(N)]


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (AwaitableMap(), [2 * i for i in range(N)]),
        (AwaitableFlatMap(), sorted(2 * list(range(N)))),
        (AwaitableFilter(), list(range(0, N, 2))),
    ],
    ids=["map", "flat_map", "filter"],
)
async def test_keyed_function_classes(
    parallelism: int, timestamps: bool, function: Any, expected: list[int]
) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    keyed = numbers(env, timestamps).key_by(lambda v: v % 5)
    if isinstance(function, MapFunction):
        stream = keyed.map(function)
    elif isinstance(function, FlatMapFunction):
        stream = keyed.flat_map(function)
    else:
        stream = keyed.filter(function)
    assert sorted(await stream.execute_and_collect()) == expected


@pytest.mark.parametrize("function", [AwaitableCoProcess(), AwaitableCoFlatMap()])
async def test_connected_streams(parallelism: int, timestamps: bool, function: Any) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    connected = numbers(env, timestamps).connect(numbers(env, timestamps, 10))
    stream = (
        connected.process(function)
        if isinstance(function, CoProcessFunction)
        else connected.flat_map(function)
    )
    out = await stream.execute_and_collect()
    assert Counter(out) == Counter([*range(N), *(-i for i in range(10))])


async def test_keyed_connected_streams(parallelism: int, timestamps: bool) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    connected = numbers(env, timestamps).connect(numbers(env, timestamps, 10))
    stream = connected.key_by(lambda v: v % 3, lambda v: v % 3).process(AwaitableKeyedCoProcess())
    out = await stream.execute_and_collect()
    assert Counter(out) == Counter([*range(N), *(-i for i in range(10))])


async def test_co_map_with_plain_functions_returning_awaitables(
    parallelism: int, timestamps: bool
) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    connected = numbers(env, timestamps).connect(numbers(env, timestamps, 10))
    out = await connected.map(lambda v: later(v), lambda v: later(-v)).execute_and_collect()
    assert Counter(out) == Counter([*range(N), *(-i for i in range(10))])


async def test_timer_callbacks_returning_awaitables(parallelism: int) -> None:
    class Echo(KeyedProcessFunction[int, int, int]):
        def process_element(self, value: int, ctx: Any, out: Any) -> None:
            ctx.timer_service().register_event_time_timer(ctx.timestamp() + 5)

        def on_timer(self, timestamp: int, ctx: Any, out: Any) -> Awaitable[None]:
            return collect_later(out, timestamp)

    env = StreamExecutionEnvironment(parallelism=parallelism)
    stream = numbers(env, True).key_by(lambda v: v).process(Echo())
    assert sorted(await stream.execute_and_collect()) == [i * 10 + 5 for i in range(N)]


async def test_join_and_window_functions_returning_awaitables(parallelism: int) -> None:
    class Join(ProcessJoinFunction[int, int, tuple[int, int]]):
        def process_element(self, left: int, right: int, ctx: Any, out: Any) -> Awaitable[None]:
            return collect_later(out, (left, right))

    class Count(ProcessWindowFunction[int, tuple[int, int], int]):
        def process(self, key: int, context: Any, elements: Any, out: Any) -> Awaitable[None]:
            return collect_later(out, (key, len(list(elements))))

    env = StreamExecutionEnvironment(parallelism=parallelism)
    left = numbers(env, True).key_by(lambda v: v)
    right = numbers(env, True).key_by(lambda v: v)
    joined = left.interval_join(right).between(0, 0).process(Join())
    assert sorted(await joined.execute_and_collect()) == [(i, i) for i in range(N)]

    env = StreamExecutionEnvironment(parallelism=parallelism)
    windowed = (
        numbers(env, True)
        .key_by(lambda v: v % 2)
        .window(TumblingEventTimeWindows.of(100))
        .process(Count())
    )
    assert sorted(await windowed.execute_and_collect()) == sorted(
        (k, 5) for k in (0, 1) for _ in range(N // 10)
    )
