"""Windows: assigners, triggers, window functions, lateness; exact results at every parallelism."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, ClassVar, NamedTuple

import pytest

from flowactors import (
    AggregateFunction,
    ExecutionConfig,
    InvalidGraphError,
    OutputTag,
    ProcessAllWindowFunction,
    ProcessWindowFunction,
    ReducingStateDescriptor,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from flowactors.api.datastream import DataStream
from flowactors.testing import ManualClock
from flowactors.time import MAX_WATERMARK
from flowactors.windows import (
    CountTrigger,
    EventTimeSessionWindows,
    GlobalWindows,
    PurgingTrigger,
    SlidingEventTimeWindows,
    TimeWindow,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
)
from tests.support.controlled import Controlled, collecting, settle
from tests.support.scripted import Emit, Scripted, Stamp, one_by_one, per_key, punctuated


class Event(NamedTuple):
    key: str
    value: int
    time: int


def timed(env: StreamExecutionEnvironment, events: list[Event]) -> DataStream[Event]:
    """``events`` with their ``time`` as timestamp; watermarks only at the end of input."""
    env.get_config().set_auto_watermark_interval(0)
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda e, ts: e.time
    )
    return env.from_collection(events).assign_timestamps_and_watermarks(strategy)


def in_order(env: StreamExecutionEnvironment, events: list[Event]) -> DataStream[Event]:
    """As ``timed``, but each key's events reach the window operator in list order."""
    env.get_config().set_auto_watermark_interval(0)
    source = Scripted([Emit(list(events), [e.time for e in events])])
    return env.from_source(source, WatermarkStrategy.for_monotonous_timestamps())


def scripted(env: StreamExecutionEnvironment, events: list[Event]) -> DataStream[Event]:
    """``events`` one by one, each followed by a watermark at its own time."""
    return env.from_source(Scripted(one_by_one([(e, e.time) for e in events])), punctuated())


def add_values(a: Event, b: Event) -> Event:
    return Event(a.key, a.value + b.value, max(a.time, b.time))


def many_events(n: int = 3_000) -> list[Event]:
    return [Event(f"k{i % 13}", i % 17, (i * 7_919) % 60_000) for i in range(n)]


def expected_tumbling_sums(events: list[Event], size: int) -> Counter[tuple[str, int, int]]:
    sums: dict[tuple[str, int], int] = {}
    for e in events:
        start = e.time - e.time % size
        sums[(e.key, start)] = sums.get((e.key, start), 0) + e.value
    return Counter((k, start, v) for (k, start), v in sums.items())


class Describe(ProcessWindowFunction[Event, tuple[Any, ...], str]):
    """``(key, start, end, sorted values)`` of each firing."""

    def process(self, key: str, context: Any, elements: Iterable[Event], out: Any) -> None:
        w = context.window
        out.collect((key, w.start, w.end, sorted(e.value for e in elements)))


class Values(ProcessWindowFunction[Event, tuple[str, list[int]], str]):
    """``(key, values in arrival order)`` of each firing."""

    def process(self, key: str, context: Any, elements: Iterable[Event], out: Any) -> None:
        out.collect((key, [e.value for e in elements]))


# -- tumbling ---------------------------------------------------------------------


async def test_tumbling_event_time_reduce(env: StreamExecutionEnvironment) -> None:
    events = many_events()
    out = await (
        timed(env, events)
        .key_by(lambda e: e.key)
        .window(TumblingEventTimeWindows.of(5_000))
        .reduce(add_values)
        .execute_and_collect()
    )
    got = Counter((e.key, e.time - e.time % 5_000, e.value) for e in out)
    assert got == expected_tumbling_sums(events, 5_000)


async def test_results_are_identical_at_every_parallelism() -> None:
    # (fewer events for sessions: all stay open until the end, and each new element is
    # compared with the open sessions of its key)
    kinds = {
        "tumbling": (TumblingEventTimeWindows.of(4_000), many_events(), 1),
        "sliding": (SlidingEventTimeWindows.of(6_000, 2_000), many_events(), 3),
        "session": (EventTimeSessionWindows.with_gap(800), many_events(1_000), 1),
    }

    async def run(p: int) -> Counter[Any]:
        env = StreamExecutionEnvironment(parallelism=p)
        streams = [
            timed(env, events)
            .key_by(lambda e: e.key)
            .window(assigner)
            .process(Describe())
            .map(lambda r, name=name: (name, r[0], r[1], r[2], tuple(r[3])))
            for name, (assigner, events, _) in kinds.items()
        ]
        return Counter(await streams[0].union(*streams[1:]).execute_and_collect())

    r1, r2, r4 = [await run(p) for p in (1, 2, 4)]
    assert r1 == r2 == r4
    for name, (_, events, copies) in kinds.items():
        # every element is in exactly ``copies`` windows of each kind
        assert sum(len(r[4]) * n for r, n in r1.items() if r[0] == name) == len(events) * copies
    sessions = [r for r in r1 if r[0] == "session"]
    assert len(sessions) == 101  # sessions of many elements (by a brute-force count)


async def test_result_timestamp_is_the_window_max_timestamp(
    env: StreamExecutionEnvironment,
) -> None:
    events = [Event("a", 1, 10), Event("a", 2, 999), Event("b", 3, 1000), Event("a", 4, 2500)]
    out = await (
        timed(env, events)
        .key_by(lambda e: e.key)
        .window(TumblingEventTimeWindows.of(1_000))
        .reduce(lambda a, b: Event(a.key, a.value + b.value, 0))
        .map(lambda e: (e.key, e.value))
        .process(Stamp())
        .execute_and_collect()
    )
    assert sorted(out) == [(("a", 3), 999), (("a", 4), 2999), (("b", 3), 1999)]


async def test_window_boundaries(env: StreamExecutionEnvironment) -> None:
    # [start, end): end - 1 is the last instant of a window, end the first of the next
    events = [
        Event("a", 1, 0),
        Event("a", 2, 999),
        Event("a", 4, 1000),
        Event("a", 8, 1999),
        Event("a", 16, -1),
        Event("a", 32, -1000),
        Event("a", 64, -1001),
    ]
    out = await (
        timed(env, events)
        .key_by(lambda e: e.key)
        .window(TumblingEventTimeWindows.of(1_000))
        .process(Describe())
        .execute_and_collect()
    )
    assert sorted(out) == [
        ("a", -2000, -1000, [64]),
        ("a", -1000, 0, [16, 32]),
        ("a", 0, 1000, [1, 2]),
        ("a", 1000, 2000, [4, 8]),
    ]


async def test_tumbling_windows_with_offset(env: StreamExecutionEnvironment) -> None:
    events = [Event("a", 1, 249), Event("a", 2, 250), Event("a", 4, 1249), Event("a", 8, 1250)]
    out = await (
        timed(env, events)
        .key_by(lambda e: e.key)
        .window(TumblingEventTimeWindows.of(1_000, 250))
        .process(Describe())
        .execute_and_collect()
    )
    assert sorted(out) == [
        ("a", -750, 250, [1]),
        ("a", 250, 1250, [2, 4]),
        ("a", 1250, 2250, [8]),
    ]


# -- sliding ----------------------------------------------------------------------


async def test_sliding_windows_assign_every_overlapping_window(
    env: StreamExecutionEnvironment,
) -> None:
    events = [Event("a", 1, 700), Event("a", 2, 1000), Event("a", 4, 1499), Event("b", 8, 0)]
    out = await (
        timed(env, events)
        .key_by(lambda e: e.key)
        .window(SlidingEventTimeWindows.of(1_000, 500))
        .process(Describe())
        .execute_and_collect()
    )
    assert sorted(out) == [
        ("a", 0, 1000, [1]),
        ("a", 500, 1500, [1, 2, 4]),
        ("a", 1000, 2000, [2, 4]),
        ("b", -500, 500, [8]),
        ("b", 0, 1000, [8]),
    ]


async def test_sliding_window_sum_matches_brute_force(env: StreamExecutionEnvironment) -> None:
    events = many_events()
    size, slide = 3_000, 1_000
    out = await (
        timed(env, events)
        .key_by(lambda e: e.key)
        .window(SlidingEventTimeWindows.of(size, slide))
        .aggregate(SumValues(), window_fn=WithWindow())
        .execute_and_collect()
    )
    expected: Counter[tuple[str, int, int]] = Counter()
    sums: dict[tuple[str, int], int] = {}
    for e in events:
        last = e.time - e.time % slide
        for start in range(last, e.time - size, -slide):
            sums[(e.key, start)] = sums.get((e.key, start), 0) + e.value
    expected = Counter((k, s, v) for (k, s), v in sums.items())
    assert Counter(out) == expected


# -- sessions ---------------------------------------------------------------------


async def test_session_windows_merge_out_of_order_arrivals(
    env: StreamExecutionEnvironment,
) -> None:
    events = [
        # a: 0, 300 are separate sessions until 100 and 200 bridge them into one
        Event("a", 1, 0),
        Event("a", 2, 300),
        Event("a", 4, 150),
        Event("a", 8, 100),
        Event("a", 16, 200),
        # b: 1000 and 1500 stay apart; 1450 joins 1500 from the left
        Event("b", 1, 1000),
        Event("b", 2, 1500),
        Event("b", 4, 1450),
        # c: a session of one
        Event("c", 7, 5),
    ]
    out = await (
        timed(env, events)
        .key_by(lambda e: e.key)
        .window(EventTimeSessionWindows.with_gap(100))
        .process(Describe())
        .execute_and_collect()
    )
    assert sorted(out) == [
        ("a", 0, 400, [1, 2, 4, 8, 16]),
        ("b", 1000, 1100, [1]),
        ("b", 1450, 1600, [2, 4]),
        ("c", 5, 105, [7]),
    ]


class SumValues(AggregateFunction[Event, int, int]):
    def create_accumulator(self) -> int:
        return 0

    def add(self, value: Event, accumulator: int) -> int:
        return accumulator + value.value

    def get_result(self, accumulator: int) -> int:
        return accumulator

    def merge(self, a: int, b: int) -> int:
        return a + b


class WithWindow(ProcessWindowFunction[int, tuple[str, int, int], str]):
    def process(self, key: str, context: Any, elements: Iterable[int], out: Any) -> None:
        (total,) = list(elements)
        out.collect((key, context.window.start, total))


async def test_session_windows_with_reduce_and_aggregate(env: StreamExecutionEnvironment) -> None:
    events = [Event("a", 1, 0), Event("a", 2, 300), Event("a", 4, 150), Event("a", 8, 100)]
    events += [Event("b", 1, 10), Event("b", 2, 50), Event("a", 32, 2000)]
    reduced = (
        timed(env, events)
        .key_by(lambda e: e.key)
        .window(EventTimeSessionWindows.with_gap(100))
        .reduce(add_values)
        .map(lambda e: ("reduce", e.key, e.value))
    )
    aggregated = (
        timed(env, events)
        .key_by(lambda e: e.key)
        .window(EventTimeSessionWindows.with_gap(100))
        .aggregate(SumValues(), window_fn=WithWindow())
    )
    out = await reduced.union(aggregated).execute_and_collect()
    assert sorted(out, key=str) == sorted(
        [
            ("reduce", "a", 4 + 8 + 1),  # 0, 100, 150
            ("reduce", "a", 2),  # 300 (150 + 100 = 250 < 300)
            ("reduce", "a", 32),
            ("reduce", "b", 3),
            ("a", 0, 13),
            ("a", 300, 2),
            ("a", 2000, 32),
            ("b", 10, 3),
        ],
        key=str,
    )


async def test_session_windows_with_count_trigger_merge_counts(
    env: StreamExecutionEnvironment,
) -> None:
    # Two sessions of two elements each; 150 bridges them. CountTrigger(3) counts over the
    # merged window: the merged count is 2 + 2, and the bridging element makes 5 (>= 3).
    events = [Event("a", 1, 0), Event("a", 2, 50), Event("a", 4, 250), Event("a", 8, 300)]
    events += [Event("a", 16, 150), Event("a", 32, 350)]
    out = await (
        in_order(env, events)
        .key_by(lambda e: e.key)
        .window(EventTimeSessionWindows.with_gap(100))
        .trigger(CountTrigger.of(3))
        .process(Describe())
        .execute_and_collect()
    )
    # 350 extends the session to [0, 450) and is the first element after the firing:
    # the count is 1, and a count trigger does not fire at the end of event time
    assert out == [("a", 0, 400, [1, 2, 4, 8, 16])]


# -- global windows and count triggers ------------------------------------------------


async def test_global_windows_with_count_trigger_keep_contents(
    env: StreamExecutionEnvironment,
) -> None:
    events = [Event("a" if i % 3 else "b", i, 0) for i in range(1, 20)]
    out = await (
        env.from_collection(events)
        .key_by(lambda e: e.key)
        .window(GlobalWindows.create())
        .trigger(CountTrigger.of(3))
        .reduce(add_values)
        .map(lambda e: (e.key, e.value))
        .execute_and_collect()
    )
    a = [i for i in range(1, 20) if i % 3]  # 13 elements: fires after 3, 6, 9, 12
    b = [i for i in range(1, 20) if not i % 3]  # 6 elements: fires after 3, 6
    assert per_key(out) == {
        "a": [("a", sum(a[:n])) for n in (3, 6, 9, 12)],
        "b": [("b", sum(b[:n])) for n in (3, 6)],
    }


async def test_global_windows_with_purging_count_trigger(env: StreamExecutionEnvironment) -> None:
    events = [Event("a" if i % 3 else "b", i, 0) for i in range(1, 21)]
    out = await (
        env.from_collection(events)
        .key_by(lambda e: e.key)
        .window(GlobalWindows.create())
        .trigger(PurgingTrigger.of(CountTrigger.of(3)))
        .process(Values())
        .execute_and_collect()
    )
    a = [i for i in range(1, 21) if i % 3]  # 14 elements: 4 full groups, 2 never fire
    b = [i for i in range(1, 21) if not i % 3]  # 6 elements: 2 groups
    assert per_key(out) == {
        "a": [("a", a[i : i + 3]) for i in range(0, 12, 3)],
        "b": [("b", b[i : i + 3]) for i in range(0, 6, 3)],
    }


async def test_global_windows_without_trigger_never_fire(env: StreamExecutionEnvironment) -> None:
    out = await (
        env.from_collection([Event("a", 1, 0)] * 10)
        .key_by(lambda e: e.key)
        .window(GlobalWindows.create())
        .reduce(add_values)
        .execute_and_collect()
    )
    assert out == []


# -- window_all -------------------------------------------------------------------


async def test_window_all(env: StreamExecutionEnvironment) -> None:
    events = many_events()
    summed = (
        timed(env, events)
        .window_all(TumblingEventTimeWindows.of(10_000))
        .reduce(add_values)
        .map(lambda e: ("sum", e.time - e.time % 10_000, e.value))
    )

    class Count(ProcessAllWindowFunction[Event, tuple[str, int, int]]):
        def process(self, context: Any, elements: Iterable[Event], out: Any) -> None:
            out.collect(("count", context.window.start, len(list(elements))))

    counted = timed(env, events).window_all(TumblingEventTimeWindows.of(10_000)).process(Count())
    out = await summed.union(counted).execute_and_collect()
    sums: Counter[int] = Counter()
    counts: Counter[int] = Counter()
    for e in events:
        sums[e.time - e.time % 10_000] += e.value
        counts[e.time - e.time % 10_000] += 1
    assert sorted(out) == sorted(
        [("sum", s, v) for s, v in sums.items()] + [("count", s, n) for s, n in counts.items()]
    )


async def test_window_all_with_count_trigger(env: StreamExecutionEnvironment) -> None:
    out = await (
        env.from_collection(range(10))
        .window_all(GlobalWindows.create())
        .trigger(PurgingTrigger.of(CountTrigger.of(4)))
        .reduce(lambda a, b: a + b)
        .execute_and_collect()
    )
    assert out == [0 + 1 + 2 + 3, 4 + 5 + 6 + 7]


# -- window functions -------------------------------------------------------------


async def test_reduce_with_process_window_function(env: StreamExecutionEnvironment) -> None:
    class Label(ProcessWindowFunction[Event, tuple[Any, ...], str]):
        def process(self, key: str, context: Any, elements: Iterable[Event], out: Any) -> None:
            items = list(elements)
            out.collect((key, context.window.start, len(items), items[0].value))

    events = [Event("a", 1, 10), Event("a", 2, 20), Event("b", 5, 30), Event("a", 4, 1500)]
    out = await (
        timed(env, events)
        .key_by(lambda e: e.key)
        .window(TumblingEventTimeWindows.of(1_000))
        .reduce(add_values, window_fn=Label())
        .execute_and_collect()
    )
    # the window function sees the one pre-reduced element
    assert sorted(out) == [("a", 0, 1, 3), ("a", 1000, 1, 4), ("b", 0, 1, 5)]


async def test_aggregate_with_and_without_window_function(
    env: StreamExecutionEnvironment,
) -> None:
    class Mean(AggregateFunction[Event, tuple[int, int], float]):
        def create_accumulator(self) -> tuple[int, int]:
            return (0, 0)

        def add(self, value: Event, accumulator: tuple[int, int]) -> tuple[int, int]:
            return (accumulator[0] + value.value, accumulator[1] + 1)

        def get_result(self, accumulator: tuple[int, int]) -> float:
            return accumulator[0] / accumulator[1]

    class KeyAndMean(ProcessWindowFunction[float, tuple[str, int, float], str]):
        def process(self, key: str, context: Any, elements: Iterable[float], out: Any) -> None:
            for mean in elements:
                out.collect((key, context.window.end, mean))

    events = [Event("a", 1, 10), Event("a", 2, 20), Event("b", 5, 30), Event("a", 6, 1500)]
    plain = (
        timed(env, events)
        .key_by(lambda e: e.key)
        .window(TumblingEventTimeWindows.of(1_000))
        .aggregate(Mean())
    )
    assert sorted(await plain.execute_and_collect()) == [1.5, 5.0, 6.0]
    env2 = StreamExecutionEnvironment(parallelism=env.get_parallelism())
    with_fn = (
        timed(env2, events)
        .key_by(lambda e: e.key)
        .window(SlidingEventTimeWindows.of(2_000, 1_000))
        .aggregate(Mean(), window_fn=KeyAndMean())
    )
    assert sorted(await with_fn.execute_and_collect()) == [
        ("a", 1000, 1.5),
        ("a", 2000, 3.0),
        ("a", 3000, 6.0),
        ("b", 1000, 5.0),
        ("b", 2000, 5.0),
    ]


async def test_process_window_function_state_and_context(
    env: StreamExecutionEnvironment,
) -> None:
    class Tally(ProcessWindowFunction[Event, tuple[Any, ...], str]):
        def process(self, key: str, context: Any, elements: Iterable[Event], out: Any) -> None:
            fired = context.window_state().get_state(ValueStateDescriptor("fired", default=0))
            fired.update(fired.value() + 1)
            windows = context.global_state().get_reducing_state(
                ReducingStateDescriptor("windows", lambda a, b: a + b)
            )
            windows.add(1)
            w = context.window
            assert isinstance(w, TimeWindow)
            out.collect(
                (
                    key,
                    w.start,
                    w.end,
                    w.max_timestamp(),
                    fired.value(),
                    windows.get(),
                    context.current_watermark() >= w.max_timestamp(),
                    len(list(elements)),
                )
            )

    events = [Event("a", 1, 10), Event("a", 1, 1010), Event("a", 1, 2010), Event("b", 1, 10)]
    out = await (
        timed(env, events)
        .key_by(lambda e: e.key)
        .window(TumblingEventTimeWindows.of(1_000))
        .process(Tally())
        .execute_and_collect()
    )
    # windows of a key fire in time order: the global count goes 1, 2, 3
    assert per_key(out) == {
        "a": [
            ("a", 0, 1000, 999, 1, 1, True, 1),
            ("a", 1000, 2000, 1999, 1, 2, True, 1),
            ("a", 2000, 3000, 2999, 1, 3, True, 1),
        ],
        "b": [("b", 0, 1000, 999, 1, 1, True, 1)],
    }


async def test_process_window_function_side_output(env: StreamExecutionEnvironment) -> None:
    big: OutputTag[tuple[str, int]] = OutputTag("big")

    class Split(ProcessWindowFunction[Event, tuple[str, int], str]):
        def process(self, key: str, context: Any, elements: Iterable[Event], out: Any) -> None:
            total = sum(e.value for e in elements)
            if total > 5:
                context.output(big, (key, total))
            else:
                out.collect((key, total))

    events = [Event("a", 1, 10), Event("a", 2, 20), Event("b", 6, 30), Event("a", 9, 1500)]
    main = (
        timed(env, events)
        .key_by(lambda e: e.key)
        .window(TumblingEventTimeWindows.of(1_000))
        .process(Split())
    )
    side = main.get_side_output(big).map(lambda r: ("big", *r))
    out = await main.union(side).process(Stamp()).execute_and_collect()
    # side outputs of a window carry the window's max timestamp as well
    assert sorted(out) == [(("a", 3), 999), (("big", "a", 9), 1999), (("big", "b", 6), 999)]


async def test_window_aggregations_by_field(env: StreamExecutionEnvironment) -> None:
    events = [
        Event("a", 5, 0),
        Event("a", 3, 100),
        Event("a", 9, 200),
        Event("a", 3, 300),
        Event("b", 1, 10),
        Event("a", 7, 1000),
    ]

    async def run(op: str) -> list[Any]:
        e = StreamExecutionEnvironment(parallelism=env.get_parallelism())
        windowed = (
            timed(e, events).key_by(lambda x: x.key).window(TumblingEventTimeWindows.of(1_000))
        )
        return sorted(await getattr(windowed, op)(1).execute_and_collect())

    # other fields come from the window's first element; min_by/max_by keep the first on ties
    assert await run("sum") == [Event("a", 7, 1000), Event("a", 20, 0), Event("b", 1, 10)]
    assert await run("min") == [Event("a", 3, 0), Event("a", 7, 1000), Event("b", 1, 10)]
    assert await run("max") == [Event("a", 7, 1000), Event("a", 9, 0), Event("b", 1, 10)]
    assert await run("min_by") == [Event("a", 3, 100), Event("a", 7, 1000), Event("b", 1, 10)]
    assert await run("max_by") == [Event("a", 7, 1000), Event("a", 9, 200), Event("b", 1, 10)]


# -- lateness ---------------------------------------------------------------------


LATE_EVENTS = [
    Event("a", 1, 100),
    Event("a", 2, 500),
    Event("a", 4, 1200),  # watermark 1200: [0, 1000) fires with 1 + 2
    Event("a", 8, 300),  # late, within the lateness of 500: fires again with 11
    Event("a", 16, 1400),
    Event("a", 32, 999),  # still within: fires again with 43
    Event("a", 64, 1600),  # watermark 1600 >= 999 + 500: [0, 1000) is dropped
    Event("a", 128, 400),  # too late: side output
    Event("a", 256, 2000),  # watermark 2000: [1000, 2000) fires with 4 + 16 + 64
]


@pytest.mark.parametrize("kind", ["reduce", "aggregate", "process"])
async def test_allowed_lateness_fires_again_and_late_data_goes_to_side_output(
    parallelism: int, kind: str
) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    late: OutputTag[Event] = OutputTag("late")
    windowed = (
        scripted(env, LATE_EVENTS)
        .key_by(lambda e: e.key)
        .window(TumblingEventTimeWindows.of(1_000))
        .allowed_lateness(500)
        .side_output_late_data(late)
    )

    class Sum(ProcessWindowFunction[Event, tuple[str, int, int], str]):
        def process(self, key: str, context: Any, elements: Iterable[Event], out: Any) -> None:
            out.collect((key, context.window.start, sum(e.value for e in elements)))

    if kind == "reduce":
        fired = windowed.reduce(add_values)
    elif kind == "aggregate":
        fired = windowed.aggregate(SumValues(), window_fn=WithWindow())
    else:
        fired = windowed.process(Sum())
    too_late = fired.get_side_output(late).map(lambda e: ("late", e.value, e.time))
    if kind == "reduce":
        fired = fired.map(lambda e: (e.key, e.time - e.time % 1000, e.value))
    out = await fired.union(too_late).process(Stamp()).execute_and_collect()
    assert sorted(out) == sorted(
        [
            (("a", 0, 3), 999),
            (("a", 0, 11), 999),
            (("a", 0, 43), 999),
            (("a", 1000, 84), 1999),
            (("a", 2000, 256), 2999),
            (("late", 128, 400), 400),  # keeps its own timestamp
        ]
    )
    firings = [r for r, _ in out if r[0] == "a" and r[1] == 0]
    assert firings == [("a", 0, 3), ("a", 0, 11), ("a", 0, 43)]  # in arrival order


async def test_window_state_lives_until_the_window_is_cleaned_up(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    cleared: list[tuple[str, int]] = []

    class Firings(ProcessWindowFunction[Event, tuple[Any, ...], str]):
        log: ClassVar[list[tuple[str, int]]]

        def process(self, key: str, context: Any, elements: Iterable[Event], out: Any) -> None:
            fired = context.window_state().get_state(ValueStateDescriptor("fired", default=0))
            fired.update(fired.value() + 1)
            out.collect((key, context.window.start, fired.value(), len(list(elements))))

        def clear(self, context: Any) -> None:
            Firings.log.append((context.window.start, context.current_watermark()))
            context.window_state().get_state(ValueStateDescriptor("fired", default=0)).clear()

    Firings.log = cleared  # type: ignore[assignment]
    out = await (
        scripted(env, LATE_EVENTS)
        .key_by(lambda e: e.key)
        .window(TumblingEventTimeWindows.of(1_000))
        .allowed_lateness(500)
        .process(Firings())
        .execute_and_collect()
    )
    assert out == [
        ("a", 0, 1, 2),
        ("a", 0, 2, 3),
        ("a", 0, 3, 4),
        ("a", 1000, 1, 3),
        ("a", 2000, 1, 1),
    ]
    # clear() runs when the watermark passes end - 1 + lateness (and at the end of time)
    assert cleared == [(0, 1600), (1000, MAX_WATERMARK), (2000, MAX_WATERMARK)]


async def test_count_trigger_replaces_the_event_time_trigger(
    env: StreamExecutionEnvironment,
) -> None:
    events = [Event("a", 1, 10), Event("a", 2, 20), Event("a", 4, 30), Event("a", 8, 1010)]
    out = await (
        in_order(env, events)
        .key_by(lambda e: e.key)
        .window(TumblingEventTimeWindows.of(1_000))
        .trigger(CountTrigger.of(2))
        .process(Describe())
        .execute_and_collect()
    )
    # fires (without purging) at the second element only; the end of a window does not fire
    assert out == [("a", 0, 1000, [1, 2])]


async def test_session_window_late_element_within_lateness_merges_and_fires(
    parallelism: int,
) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    late: OutputTag[Event] = OutputTag("late")
    events = [
        Event("a", 1, 100),
        Event("a", 2, 1000),  # watermark 1000: session [100, 200) fires with 1
        Event("a", 4, 150),  # extends it to [100, 250) (within lateness 1000): fires again
        Event("a", 8, 2500),  # watermark 2500: [1000, 1100) fires; [100, 250) is dropped
        Event("a", 16, 180),  # its session would be [180, 280): too late
    ]
    main = (
        scripted(env, events)
        .key_by(lambda e: e.key)
        .window(EventTimeSessionWindows.with_gap(100))
        .allowed_lateness(1_000)
        .side_output_late_data(late)
        .process(Describe())
    )
    side = main.get_side_output(late).map(lambda e: ("late", e.value))
    out = await main.union(side).execute_and_collect()
    assert sorted(out, key=str) == sorted(
        [
            ("a", 100, 200, [1]),
            ("a", 100, 250, [1, 4]),
            ("a", 1000, 1100, [2]),
            ("a", 2500, 2600, [8]),
            ("late", 16),
        ],
        key=str,
    )


def test_session_windows_need_a_mergeable_aggregate() -> None:
    class NoMerge(AggregateFunction[Event, int, int]):
        def create_accumulator(self) -> int:
            return 0

        def add(self, value: Event, accumulator: int) -> int:
            return accumulator + 1

        def get_result(self, accumulator: int) -> int:
            return accumulator

    env = StreamExecutionEnvironment()
    windowed = (
        env.from_collection([Event("a", 1, 0)])
        .key_by(lambda e: e.key)
        .window(EventTimeSessionWindows.with_gap(10))
    )
    with pytest.raises(InvalidGraphError, match="merge"):
        windowed.aggregate(NoMerge())


async def test_late_elements_are_dropped_without_lateness(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    late: OutputTag[Event] = OutputTag("late")
    events = [
        Event("a", 1, 100),
        Event("a", 2, 998),  # watermark 998: [0, 1000) still open
        Event("a", 4, 999),  # end - 1 belongs to [0, 1000); the watermark 999 fires it
        Event("a", 8, 999),  # late now: the window is gone
        Event("a", 16, 1000),  # the next window
    ]
    main = (
        scripted(env, events)
        .key_by(lambda e: e.key)
        .window(TumblingEventTimeWindows.of(1_000))
        .side_output_late_data(late)
        .process(Describe())
    )
    side = main.get_side_output(late).map(lambda e: ("late", e.value))
    results = await main.union(side).execute_and_collect()
    assert sorted(results, key=str) == sorted(
        [("a", 0, 1000, [1, 2, 4]), ("a", 1000, 2000, [16]), ("late", 8)], key=str
    )


async def test_sliding_windows_with_lateness(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    late: OutputTag[Event] = OutputTag("late")
    events = [
        Event("a", 1, 100),
        Event("a", 2, 1100),  # watermark 1100: [-500, 500) and [0, 1000) fire with 1
        Event("a", 4, 450),  # both within the lateness of 700: both fire again
        Event("a", 8, 1300),  # watermark 1300: [-500, 500) is dropped (499 + 700 < 1300)
        Event("a", 16, 1600),  # watermark 1600: [500, 1500) fires
        Event("a", 32, 200),  # too late for [-500, 500), not for [0, 1000): fires that one
        Event("a", 64, 2600),  # watermark 2600: [0, 1000) is dropped as well
        Event("a", 128, 300),  # too late for both windows: side output
    ]
    main = (
        scripted(env, events)
        .key_by(lambda e: e.key)
        .window(SlidingEventTimeWindows.of(1_000, 500))
        .allowed_lateness(700)
        .side_output_late_data(late)
        .process(Describe())
    )
    side = main.get_side_output(late).map(lambda e: ("late", e.value))
    out = await main.union(side).execute_and_collect()
    assert sorted(out, key=str) == sorted(
        [
            ("a", -500, 500, [1]),
            ("a", 0, 1000, [1]),
            ("a", -500, 500, [1, 4]),
            ("a", 0, 1000, [1, 4]),
            ("a", 500, 1500, [2, 8]),
            ("a", 0, 1000, [1, 4, 32]),
            ("a", 1000, 2000, [2, 8, 16]),
            ("a", 1500, 2500, [16]),
            ("a", 2000, 3000, [64]),
            ("a", 2500, 3500, [64]),
            ("late", 128),
        ],
        key=str,
    )


# -- processing time --------------------------------------------------------------


async def test_tumbling_processing_time_windows_fire(parallelism: int) -> None:
    clock = ManualClock()
    env = StreamExecutionEnvironment(parallelism=parallelism, config=ExecutionConfig(clock=clock))
    source = Controlled()
    client, out = await collecting(
        env.from_source(source)
        .key_by(lambda r: r[0])
        .window(TumblingProcessingTimeWindows.of(100))
        .reduce(lambda x, y: (x[0], x[1] + y[1]))
    )
    source.feed([("a", 1), ("a", 2), ("b", 4)])  # at 0: into [0, 100)
    await settle(client, source)
    await clock.advance_to(100)  # the first windows fire
    await settle(client, source)
    assert per_key(out) == {"a": [("a", 3)], "b": [("b", 4)]}
    source.feed([("a", 8), ("b", 16), ("b", 32)])  # at 100: into [100, 200)
    await settle(client, source)
    await clock.advance_to(200)
    source.end()
    await client.wait()
    assert per_key(out) == {"a": [("a", 3), ("a", 8)], "b": [("b", 4), ("b", 48)]}


async def test_window_aggregations_by_name_on_named_tuples() -> None:
    # A named tuple's fields have names: by name works as well as by position
    events = [Event("a", 5, 0), Event("a", 3, 100), Event("a", 9, 200)]
    out: dict[str, list[Any]] = {}
    for op in ("sum", "min", "max", "min_by", "max_by"):
        env = StreamExecutionEnvironment()
        windowed = (
            timed(env, events).key_by(lambda x: x.key).window(TumblingEventTimeWindows.of(1_000))
        )
        out[op] = await getattr(windowed, op)("value").execute_and_collect()
    assert out == {
        "sum": [Event("a", 17, 0)],
        "min": [Event("a", 3, 0)],
        "max": [Event("a", 9, 0)],
        "min_by": [Event("a", 3, 100)],
        "max_by": [Event("a", 9, 200)],
    }
