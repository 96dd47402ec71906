"""Static checks of the public API's types: ``mypy --strict`` runs over this module in
``make lint`` (``assert_type`` fails the check when an inferred type changes).

Nothing here runs a job; the functions are never called.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import assert_type

from flowactors import (
    AggregateFunction,
    Collector,
    ConnectedStreams,
    Context,
    DataStream,
    FilterFunction,
    FlatMapFunction,
    KeyedContext,
    KeyedProcessFunction,
    KeyedStream,
    MapFunction,
    OnTimerContext,
    OutputTag,
    ProcessFunction,
    ProcessWindowContext,
    ProcessWindowFunction,
    StreamExecutionEnvironment,
    TimeDomain,
    WindowedStream,
)
from flowactors.windows import TimeWindow, TumblingEventTimeWindows


class Lengths(MapFunction[str, int]):
    def map(self, value: str) -> int:
        return len(value)


class Words(FlatMapFunction[str, str]):
    def flat_map(self, value: str) -> Iterable[str]:
        return value.split()


class Short(FilterFunction[str]):
    def filter(self, value: str) -> bool:
        return len(value) < 5


class Tag(ProcessFunction[int, str]):
    def process_element(self, value: int, ctx: Context, out: Collector[str]) -> None:
        assert_type(ctx.timestamp(), int | None)
        ctx.output(OutputTag[int]("odd"), value)
        out.collect(str(value))


class Alarm(KeyedProcessFunction[str, int, str]):
    def process_element(self, value: int, ctx: KeyedContext[str], out: Collector[str]) -> None:
        assert_type(ctx.get_current_key(), str)
        ctx.timer_service().register_event_time_timer(value + 1000)

    async def on_timer(self, timestamp: int, ctx: OnTimerContext[str], out: Collector[str]) -> None:
        assert_type(ctx.time_domain(), TimeDomain | None)
        out.collect(ctx.get_current_key())


class Average(AggregateFunction[int, tuple[int, int], float]):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: int, accumulator: tuple[int, int]) -> tuple[int, int]:
        return (accumulator[0] + value, accumulator[1] + 1)

    def get_result(self, accumulator: tuple[int, int]) -> float:
        return accumulator[0] / accumulator[1]


class Labelled(ProcessWindowFunction[float, str, str]):
    def process(
        self,
        key: str,
        context: ProcessWindowContext[TimeWindow],
        elements: Iterable[float],
        out: Collector[str],
    ) -> None:
        out.collect(f"{key}@{context.window.end}: {list(elements)}")


async def halve(x: int) -> float:
    return x / 2


async def explode(x: int) -> AsyncIterator[int]:
    yield x


def streams(env: StreamExecutionEnvironment) -> None:
    numbers = env.from_collection([1, 2, 3])
    assert_type(numbers, DataStream[int])
    assert_type(numbers.map(lambda x: x * 2), DataStream[int])
    assert_type(numbers.map(lambda x: str(x)), DataStream[str])
    assert_type(numbers.map(halve), DataStream[float])
    assert_type(numbers.filter(lambda x: x > 1), DataStream[int])
    assert_type(numbers.flat_map(lambda x: [x, x]), DataStream[int])
    assert_type(numbers.flat_map(explode), DataStream[int])
    assert_type(numbers.process(Tag()), DataStream[str])
    assert_type(numbers.map_async(halve), DataStream[float])
    assert_type(numbers.union(numbers), DataStream[int])
    assert_type(numbers.get_side_output(OutputTag[str]("s")), DataStream[str])
    assert_type(numbers.name("n").uid("u").set_parallelism(2), DataStream[int])

    words = env.from_collection(["a b", "c"])
    assert_type(words.map(Lengths()), DataStream[int])
    assert_type(words.flat_map(Words()), DataStream[str])
    assert_type(words.filter(Short()), DataStream[str])

    keyed = numbers.key_by(lambda x: str(x))
    assert_type(keyed, KeyedStream[str, int])
    assert_type(keyed.reduce(lambda a, b: a + b), DataStream[int])
    assert_type(keyed.sum(0), DataStream[int])
    assert_type(keyed.process(Alarm()), DataStream[str])
    assert_type(keyed.map(lambda x: x * 1.5), DataStream[float])

    windowed = keyed.window(TumblingEventTimeWindows.of(1000))
    assert_type(windowed, WindowedStream[str, int])
    assert_type(windowed.reduce(lambda a, b: a + b), DataStream[int])
    assert_type(windowed.aggregate(Average()), DataStream[float])
    assert_type(windowed.aggregate(Average(), Labelled()), DataStream[str])
    assert_type(windowed.sum(0), DataStream[int])

    connected = numbers.connect(words)
    assert_type(connected, ConnectedStreams[int, str])
    assert_type(connected.map(lambda i: str(i), lambda s: s), DataStream[str])


async def results(env: StreamExecutionEnvironment) -> None:
    assert_type(await env.from_collection(["x"]).execute_and_collect(), list[str])
