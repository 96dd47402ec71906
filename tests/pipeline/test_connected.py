"""Connected streams (co-process, co-flat-map, co-map) and the interval join."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from flowactors import (
    CoFlatMapFunction,
    CoMapFunction,
    CoProcessFunction,
    InvalidGraphError,
    KeyedCoProcessFunction,
    OutputTag,
    ProcessJoinFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
    TimeDomain,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from flowactors.api.datastream import DataStream
from tests.support.scripted import Emit, Scripted, Sleep, Stamp, one_by_one, per_key, punctuated


def stamped(env: StreamExecutionEnvironment, records: list[Any], time: Any) -> DataStream[Any]:
    """``records`` with timestamps ``time(record)``; watermarks only at the end of input."""
    env.get_config().set_auto_watermark_interval(0)
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda r, ts: time(r)
    )
    return env.from_collection(records).assign_timestamps_and_watermarks(strategy)


# -- non-keyed ----------------------------------------------------------------------


async def test_co_process_function_with_side_outputs(env: StreamExecutionEnvironment) -> None:
    negative: OutputTag[int] = OutputTag("negative")
    long_words: OutputTag[str] = OutputTag("long")

    class Route(CoProcessFunction[int, str, str]):
        def open(self, ctx: RuntimeContext) -> None:
            self.subtasks = ctx.get_number_of_parallel_subtasks()

        def process_element1(self, value: int, ctx: Any, out: Any) -> None:
            if value < 0:
                ctx.output(negative, value)
            else:
                out.collect(f"int {value} ts {ctx.timestamp()}")

        def process_element2(self, value: str, ctx: Any, out: Any) -> None:
            if len(value) > 3:
                ctx.output(long_words, value)
            out.collect(f"str {value.upper()}")

    ints = env.from_collection([3, -1, 7, -5, 0])
    words = env.from_collection(["ab", "abcd", "xyz", "hello"])
    routed = ints.connect(words).process(Route())
    out = await routed.union(
        routed.get_side_output(negative).map(lambda v: f"negative {v}"),
        routed.get_side_output(long_words).map(lambda v: f"long {v}"),
    ).execute_and_collect()
    assert sorted(out) == sorted(
        [
            "int 3 ts None",
            "int 7 ts None",
            "int 0 ts None",
            "str AB",
            "str ABCD",
            "str XYZ",
            "str HELLO",
            "negative -1",
            "negative -5",
            "long abcd",
            "long hello",
        ]
    )


async def test_co_process_function_sees_timestamps(env: StreamExecutionEnvironment) -> None:
    class Times(CoProcessFunction[int, int, tuple[str, int, int]]):
        def process_element1(self, value: int, ctx: Any, out: Any) -> None:
            out.collect(("left", value, ctx.timestamp()))

        def process_element2(self, value: int, ctx: Any, out: Any) -> None:
            out.collect(("right", value, ctx.timestamp()))

    left = stamped(env, [1, 2], lambda x: x * 100)
    right = stamped(env, [3], lambda x: x * 1000)
    out = await left.connect(right).process(Times()).process(Stamp()).execute_and_collect()
    assert sorted(out) == [
        (("left", 1, 100), 100),
        (("left", 2, 200), 200),
        (("right", 3, 3000), 3000),
    ]


async def test_co_map_with_two_functions_and_a_class(env: StreamExecutionEnvironment) -> None:
    nums = env.from_collection(range(5))
    words = env.from_generator(lambda i: "w" * (i + 1), count=3)
    out = await nums.connect(words).map(lambda x: x * 10, len).execute_and_collect()
    assert sorted(out) == [0, 1, 2, 3, 10, 20, 30, 40]

    class Tag(CoMapFunction[int, str, str]):
        def map1(self, value: int) -> str:
            return f"n{value}"

        def map2(self, value: str) -> str:
            return f"s{value}"

    env2 = StreamExecutionEnvironment(parallelism=env.get_parallelism())
    out2 = await (
        env2.from_collection([1, 2]).connect(env2.from_collection(["x"])).map(Tag())
    ).execute_and_collect()
    assert sorted(out2) == ["n1", "n2", "sx"]


async def test_co_flat_map_without_keys(env: StreamExecutionEnvironment) -> None:
    class Split(CoFlatMapFunction[str, int, str]):
        def flat_map1(self, value: str, out: Any) -> None:
            for word in value.split():
                out.collect(word)

        def flat_map2(self, value: int, out: Any) -> None:
            for _ in range(value):
                out.collect(str(value))

    out = await (
        env.from_collection(["a b", "c"])
        .connect(env.from_collection([2, 0, 1]))
        .flat_map(Split())
        .execute_and_collect()
    )
    assert sorted(out) == ["1", "2", "2", "a", "b", "c"]


def test_connect_needs_both_or_neither_keyed() -> None:
    env = StreamExecutionEnvironment()
    a = env.from_collection([1])
    b = env.from_collection([2])
    with pytest.raises(InvalidGraphError, match="both streams are keyed or neither"):
        a.key_by(lambda x: x).connect(b)

    class Keyed(KeyedCoProcessFunction[int, int, int, int]):
        def process_element1(self, value: int, ctx: Any, out: Any) -> None:
            pass

        def process_element2(self, value: int, ctx: Any, out: Any) -> None:
            pass

    with pytest.raises(InvalidGraphError, match="needs keyed connected streams"):
        a.connect(b).process(Keyed())


# -- keyed: shared state and timers --------------------------------------------------


@dataclass(frozen=True)
class Ride:
    ride_id: int
    start: int


@dataclass(frozen=True)
class Fare:
    ride_id: int
    tip: int
    time: int


UNMATCHED_RIDES: OutputTag[Ride] = OutputTag("unmatched-rides")
UNMATCHED_FARES: OutputTag[Fare] = OutputTag("unmatched-fares")


class Enrichment(KeyedCoProcessFunction[int, Ride, Fare, tuple[Ride, Fare]]):
    """Flink's rides-and-fares exercise: one pair per ride, whichever side comes first;
    a side still waiting 1000 ms (event time) after it arrived goes to a side output."""

    def open(self, ctx: RuntimeContext) -> None:
        self.ride = ctx.get_state(ValueStateDescriptor("ride"))
        self.fare = ctx.get_state(ValueStateDescriptor("fare"))

    def process_element1(self, ride: Ride, ctx: Any, out: Any) -> None:
        assert ctx.get_current_key() == ride.ride_id
        fare = self.fare.value()
        if fare is not None:
            self.fare.clear()
            ctx.timer_service().delete_event_time_timer(fare.time + 1000)
            out.collect((ride, fare))
        else:
            self.ride.update(ride)
            ctx.timer_service().register_event_time_timer(ride.start + 1000)

    def process_element2(self, fare: Fare, ctx: Any, out: Any) -> None:
        assert ctx.get_current_key() == fare.ride_id
        ride = self.ride.value()
        if ride is not None:
            self.ride.clear()
            ctx.timer_service().delete_event_time_timer(ride.start + 1000)
            out.collect((ride, fare))
        else:
            self.fare.update(fare)
            ctx.timer_service().register_event_time_timer(fare.time + 1000)

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        assert ctx.time_domain() is TimeDomain.EVENT_TIME
        if self.ride.value() is not None:
            ctx.output(UNMATCHED_RIDES, self.ride.value())
            self.ride.clear()
        if self.fare.value() is not None:
            ctx.output(UNMATCHED_FARES, self.fare.value())
            self.fare.clear()


async def test_keyed_co_process_enrichment(env: StreamExecutionEnvironment) -> None:
    rides = [Ride(i, 10 * i) for i in range(200) if i % 7 != 3]
    fares = [Fare(i, i % 11, 10 * i + 5) for i in range(200) if i % 5 != 4]
    ride_stream = stamped(env, rides, lambda r: r.start).key_by(lambda r: r.ride_id)
    fare_stream = stamped(env, fares, lambda f: f.time).key_by(lambda f: f.ride_id)
    joined = ride_stream.connect(fare_stream).process(Enrichment())
    out = await joined.union(
        joined.get_side_output(UNMATCHED_RIDES),
        joined.get_side_output(UNMATCHED_FARES),
    ).execute_and_collect()
    pairs = [r for r in out if isinstance(r, tuple)]
    lonely_rides = [r for r in out if isinstance(r, Ride)]
    lonely_fares = [r for r in out if isinstance(r, Fare)]
    fare_ids = {f.ride_id for f in fares}
    ride_ids = {r.ride_id for r in rides}
    assert sorted(pairs, key=lambda p: p[0].ride_id) == [
        (r, Fare(r.ride_id, r.ride_id % 11, 10 * r.ride_id + 5))
        for r in rides
        if r.ride_id in fare_ids
    ]
    assert sorted(lonely_rides, key=lambda r: r.ride_id) == [
        r for r in rides if r.ride_id not in fare_ids
    ]
    assert sorted(lonely_fares, key=lambda f: f.ride_id) == [
        f for f in fares if f.ride_id not in ride_ids
    ]


async def test_keyed_co_process_with_connect_then_key_by(
    env: StreamExecutionEnvironment,
) -> None:
    rides = [Ride(i, i) for i in range(50)]
    fares = [Fare(i, 1, i) for i in range(0, 50, 2)]
    joined = (
        stamped(env, rides, lambda r: r.start)
        .connect(stamped(env, fares, lambda f: f.time))
        .key_by(lambda r: r.ride_id, lambda f: f.ride_id)
        .process(Enrichment())
    )
    lonely = joined.get_side_output(UNMATCHED_RIDES).map(lambda r: ("lonely", r.ride_id))
    out = await joined.map(lambda p: ("pair", p[0].ride_id)).union(lonely).execute_and_collect()
    assert sorted(out) == sorted(
        [("pair", i) for i in range(0, 50, 2)] + [("lonely", i) for i in range(1, 50, 2)]
    )


async def test_keyed_co_process_timers_fire_as_the_watermark_of_both_inputs_passes(
    parallelism: int,
) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)

    class Expire(KeyedCoProcessFunction[str, Any, Any, tuple[Any, ...]]):
        def open(self, ctx: RuntimeContext) -> None:
            self.seen = ctx.get_state(ValueStateDescriptor("seen", default=0))

        def process_element1(self, value: Any, ctx: Any, out: Any) -> None:
            self.seen.update(self.seen.value() + 1)
            out.collect(("left", value[1]))
            ctx.timer_service().register_event_time_timer(value[1] + 100)

        def process_element2(self, value: Any, ctx: Any, out: Any) -> None:
            self.seen.update(self.seen.value() + 1)
            out.collect(("right", value[1]))

        def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
            out.collect(("timer", timestamp, ctx.timestamp(), self.seen.value()))

    left = Scripted(one_by_one([(("k", t), t) for t in (100, 400)]))
    right = Scripted([Sleep(0.1), *one_by_one([(("k", t), t) for t in (150, 250, 500)])])
    out = await (
        env.from_source(left, punctuated())
        .connect(env.from_source(right, punctuated()))
        .key_by(lambda r: r[0], lambda r: r[0])
        .process(Expire())
        .execute_and_collect()
    )
    # the timer at 200 fires when the right input's watermark reaches 250 (the left one is
    # at 400 by then); the timer at 500 when the right input reaches 500
    assert out == [
        ("left", 100),
        ("left", 400),
        ("right", 150),
        ("right", 250),
        ("timer", 200, 200, 4),
        ("right", 500),
        ("timer", 500, 500, 5),
    ]


async def test_co_flat_map_with_shared_keyed_state(env: StreamExecutionEnvironment) -> None:
    class CountBoth(CoFlatMapFunction[tuple[str, int], tuple[str, str], tuple[Any, ...]]):
        def open(self, ctx: RuntimeContext) -> None:
            self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

        def flat_map1(self, value: tuple[str, int], out: Any) -> None:
            self.count.update(self.count.value() + 1)
            out.collect((value[0], "num", self.count.value()))

        def flat_map2(self, value: tuple[str, str], out: Any) -> None:
            self.count.update(self.count.value() + 1)
            out.collect((value[0], "str", self.count.value()))

    nums = [(f"k{i % 5}", i) for i in range(100)]
    strs = [(f"k{i % 3}", str(i)) for i in range(60)]
    out = await (
        env.from_collection(nums)
        .key_by(lambda r: r[0])
        .connect(env.from_collection(strs).key_by(lambda r: r[0]))
        .flat_map(CountBoth())
        .execute_and_collect()
    )
    # both inputs count in one state per key: each key's counts are exactly 1..n
    totals = Counter(k for k, _ in nums) + Counter(k for k, _ in strs)
    got = per_key(out)
    assert sorted(got) == sorted(totals)
    for key, rs in got.items():
        assert sorted(n for _, _, n in rs) == list(range(1, totals[key] + 1))
    assert Counter((k, kind) for k, kind, _ in out) == Counter(
        [(k, "num") for k, _ in nums] + [(k, "str") for k, _ in strs]
    )


async def test_co_flat_map_control_stream(parallelism: int) -> None:
    # Flink's training exercise: words in the control stream block that word in the data
    env = StreamExecutionEnvironment(parallelism=parallelism)

    class Block(CoFlatMapFunction[str, str, str]):
        def open(self, ctx: RuntimeContext) -> None:
            self.blocked = ctx.get_state(ValueStateDescriptor("blocked", default=False))

        def flat_map1(self, value: str, out: Any) -> None:
            self.blocked.update(True)

        def flat_map2(self, value: str, out: Any) -> None:
            if not self.blocked.value():
                out.collect(value)

    control = Scripted([Emit(["drop", "ignore"])])
    data = Scripted([Sleep(0.1), Emit(["keep", "drop", "ignore", "keep", "other", "drop"])])
    out = await (
        env.from_source(control)
        .key_by(lambda w: w)
        .connect(env.from_source(data).key_by(lambda w: w))
        .flat_map(Block())
        .execute_and_collect()
    )
    assert sorted(out) == ["keep", "keep", "other"]


# -- interval join ------------------------------------------------------------------


class Pair(ProcessJoinFunction[tuple[str, int], tuple[str, int], tuple[Any, ...]]):
    def process_element(
        self, left: tuple[str, int], right: tuple[str, int], ctx: Any, out: Any
    ) -> None:
        out.collect((left, right, ctx.left_timestamp(), ctx.right_timestamp(), ctx.timestamp()))


def join_data() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    left = [(f"k{i % 4}", (i * 37) % 1000) for i in range(120)]
    right = [(f"k{i % 3}", (i * 53) % 1000) for i in range(150)]
    return left, right


def brute_force_join(
    left: list[tuple[str, int]],
    right: list[tuple[str, int]],
    lo: int,
    hi: int,
    lo_inclusive: bool = True,
    hi_inclusive: bool = True,
) -> Counter[tuple[Any, ...]]:
    pairs: Counter[tuple[Any, ...]] = Counter()
    for lv in left:
        for rv in right:
            if lv[0] != rv[0]:
                continue
            d = rv[1] - lv[1]
            if (d > lo or (lo_inclusive and d == lo)) and (d < hi or (hi_inclusive and d == hi)):
                pairs[(lv, rv, lv[1], rv[1], max(lv[1], rv[1]))] += 1
    return pairs


@pytest.mark.parametrize(
    ("lo", "hi", "lo_inclusive", "hi_inclusive"),
    [
        (-50, 50, True, True),
        (-50, 50, False, False),
        (0, 100, True, False),
        (-100, 0, False, True),
        (20, 20, True, True),  # exactly 20 ms later
        (-300, -100, True, True),  # right before left
    ],
)
async def test_interval_join_bounds(
    env: StreamExecutionEnvironment, lo: int, hi: int, lo_inclusive: bool, hi_inclusive: bool
) -> None:
    left, right = join_data()
    joined = (
        stamped(env, left, lambda r: r[1])
        .key_by(lambda r: r[0])
        .interval_join(stamped(env, right, lambda r: r[1]).key_by(lambda r: r[0]))
        .between(lo, hi)
    )
    if not lo_inclusive:
        joined = joined.lower_bound_exclusive()
    if not hi_inclusive:
        joined = joined.upper_bound_exclusive()
    out = await joined.process(Pair()).execute_and_collect()
    expected = brute_force_join(left, right, lo, hi, lo_inclusive, hi_inclusive)
    assert Counter(out) == expected
    assert len(out) > 0


async def test_interval_join_output_timestamp_and_timedelta_bounds(
    env: StreamExecutionEnvironment,
) -> None:
    left = [("a", 1000), ("b", 1000), ("a", 5000)]
    right = [("a", 800), ("a", 1000), ("a", 1300), ("a", 1301), ("b", 699), ("c", 1000)]
    out = await (
        stamped(env, left, lambda r: r[1])
        .key_by(lambda r: r[0])
        .interval_join(stamped(env, right, lambda r: r[1]).key_by(lambda r: r[0]))
        .between(timedelta(milliseconds=-300), timedelta(milliseconds=300))
        .process(Pair())
        .map(lambda p: (p[0], p[1]))
        .process(Stamp())
        .execute_and_collect()
    )
    # the pair's timestamp is the larger of the two
    assert sorted(out) == [
        ((("a", 1000), ("a", 800)), 1000),
        ((("a", 1000), ("a", 1000)), 1000),
        ((("a", 1000), ("a", 1300)), 1300),
    ]


async def test_interval_join_with_watermarks_on_the_way(parallelism: int) -> None:
    # Watermarks advance while records arrive: buffered elements stay as long as a partner
    # may still come, late ones (behind the watermark) are dropped.
    env = StreamExecutionEnvironment(parallelism=parallelism)
    left = Scripted(
        [
            *one_by_one([(("k", 1000), 1000), (("k", 2000), 2000)]),
            Sleep(0.15),
            *one_by_one([(("k", 3000), 3000)]),
        ]
    )
    right = Scripted(
        [
            Sleep(0.05),
            # watermark of the right input 1250: the join's watermark is min(2000, 1250)
            *one_by_one([(("k", 1250), 1250)]),
            Sleep(0.15),
            # left is at 3000, right now at 2100: 1000 + 300 < 2100, the left 1000 is gone
            *one_by_one([(("k", 2100), 2100), (("k", 1300), 1300), (("k", 2900), 2900)]),
        ]
    )
    out = await (
        env.from_source(left, punctuated())
        .key_by(lambda r: r[0])
        .interval_join(env.from_source(right, punctuated()).key_by(lambda r: r[0]))
        .between(-200, 300)
        .process(Pair())
        .map(lambda p: (p[2], p[3]))
        .execute_and_collect()
    )
    # 1300 is behind the watermark (2100) when it arrives: dropped, though 1000 would match
    assert sorted(out) == [(1000, 1250), (2000, 2100), (3000, 2900)]


def test_interval_join_validation() -> None:
    env = StreamExecutionEnvironment()
    a = env.from_collection([("a", 1)]).key_by(lambda r: r[0])
    b = env.from_collection([("a", 1)]).key_by(lambda r: r[0])
    with pytest.raises(InvalidGraphError, match="lower bound"):
        a.interval_join(b).between(10, 5)
    with pytest.raises(InvalidGraphError, match="empty"):
        a.interval_join(b).between(5, 5).lower_bound_exclusive().process(Pair())
    with pytest.raises(InvalidGraphError, match="keyed stream"):
        a.interval_join(env.from_collection([1]))  # type: ignore[arg-type]
