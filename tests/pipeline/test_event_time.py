"""Event time: timestamps, watermarks (per split, per channel, idle), and timers."""

from __future__ import annotations

from collections import Counter
from contextlib import aclosing
from typing import Any, ClassVar

from flowactors import (
    ExecutionConfig,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    OutputTag,
    ProcessFunction,
    ProcessWindowFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
    TimeDomain,
    ValueStateDescriptor,
    WatermarkGenerator,
    WatermarkOutput,
    WatermarkStrategy,
)
from flowactors.testing import ManualClock
from flowactors.time import MAX_WATERMARK, MIN_WATERMARK
from flowactors.windows import TumblingEventTimeWindows
from tests.support.controlled import Controlled, collecting, settle
from tests.support.scripted import (
    Emit,
    EveryEvent,
    Mark,
    Scripted,
    Sleep,
    Stamp,
    one_by_one,
    per_key,
    punctuated,
)

# -- timestamps -------------------------------------------------------------------


async def test_timestamps_from_assign_timestamps_and_watermarks(
    env: StreamExecutionEnvironment,
) -> None:
    events = [{"id": i, "time": 1_000 * i + 7} for i in range(50)]
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(500).with_timestamp_assigner(
        lambda e, ts: e["time"]
    )
    out = await (
        env.from_collection(events)
        .assign_timestamps_and_watermarks(strategy)
        .rebalance()
        .map(lambda e: e["id"])
        .process(Stamp())
        .execute_and_collect()
    )
    assert sorted(out) == [(i, 1_000 * i + 7) for i in range(50)]


async def test_records_without_timestamps_have_none(env: StreamExecutionEnvironment) -> None:
    out = await env.from_collection([1, 2, 3]).process(Stamp()).execute_and_collect()
    assert sorted(out) == [(1, None), (2, None), (3, None)]


async def test_timestamps_from_a_source_with_a_watermark_strategy(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    source = Scripted([Emit(["a", "bb"]), Emit(["ccc"])])
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda e, ts: 100 * len(e)
    )
    out = await (
        env.from_source(source, strategy, "letters").rebalance().process(Stamp())
    ).execute_and_collect()
    assert sorted(out) == [("a", 100), ("bb", 200), ("ccc", 300)]


async def test_source_timestamps_pass_to_the_assigner(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    source = Scripted([Emit(["x", "y"], [10, 20]), Emit(["z"], [30])])
    # without an assigner the source's own timestamps are kept
    kept = await (
        env.from_source(source, WatermarkStrategy.for_monotonous_timestamps())
        .rebalance()
        .process(Stamp())
        .execute_and_collect()
    )
    assert sorted(kept) == [("x", 10), ("y", 20), ("z", 30)]
    env2 = StreamExecutionEnvironment(parallelism=parallelism)
    shifted = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda e, ts: ts + 5
    )
    out = await (
        env2.from_source(Scripted(source.steps), shifted).rebalance().process(Stamp())
    ).execute_and_collect()
    assert sorted(out) == [("x", 15), ("y", 25), ("z", 35)]


# -- event-time timers --------------------------------------------------------------


class TimerEcho(KeyedProcessFunction[str, tuple[str, int], tuple[Any, ...]]):
    """Echoes each element and registers a timer ``delay`` after it; timers report."""

    def __init__(self, delay: int) -> None:
        self.delay = delay

    def process_element(self, value: tuple[str, int], ctx: Any, out: Any) -> None:
        out.collect((value[0], "element", ctx.timestamp()))
        ctx.timer_service().register_event_time_timer(ctx.timestamp() + self.delay)

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        out.collect(
            (
                ctx.get_current_key(),
                "timer",
                timestamp,
                ctx.timestamp(),
                ctx.time_domain(),
                ctx.timer_service().current_watermark(),
            )
        )


async def test_event_time_timers_fire_when_the_watermark_passes(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    records = [("a", 1000), ("b", 1100), ("a", 1200), ("a", 1600), ("b", 1650), ("a", 2000)]
    source = Scripted(one_by_one([(r, r[1]) for r in records]))
    out = await (
        env.from_source(source, punctuated())
        .key_by(lambda r: r[0])
        .process(TimerEcho(500))
        .execute_and_collect()
    )
    ev = TimeDomain.EVENT_TIME
    expected_a = [
        ("a", "element", 1000),
        ("a", "element", 1200),
        ("a", "element", 1600),
        ("a", "timer", 1500, 1500, ev, 1600),  # the watermark 1600 follows the element
        ("a", "element", 2000),
        ("a", "timer", 1700, 1700, ev, 2000),
        # the rest at the end of input (final watermark: end of time)
        ("a", "timer", 2100, 2100, ev, MAX_WATERMARK),
        ("a", "timer", 2500, 2500, ev, MAX_WATERMARK),
    ]
    expected_b = [
        ("b", "element", 1100),
        ("b", "timer", 1600, 1600, ev, 1600),
        ("b", "element", 1650),
        ("b", "timer", 2150, 2150, ev, MAX_WATERMARK),
    ]
    assert per_key(out) == {"a": expected_a, "b": expected_b}
    if parallelism == 1:  # one subtask: timers of both keys interleave by timestamp
        timers = [r[2] for r in out if r[1] == "timer"]
        assert timers == [1500, 1600, 1700, 2100, 2150, 2500]


async def test_all_pending_timers_fire_in_timestamp_order_at_end_of_input(
    env: StreamExecutionEnvironment,
) -> None:
    env.get_config().set_auto_watermark_interval(0)  # only the final watermark

    class Report(KeyedProcessFunction[int, tuple[int, int], tuple[int, int, int]]):
        def open(self, ctx: RuntimeContext) -> None:
            self.subtask = ctx.get_index_of_this_subtask()

        def process_element(self, value: tuple[int, int], ctx: Any, out: Any) -> None:
            ctx.timer_service().register_event_time_timer(value[1])

        def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
            out.collect((self.subtask, ctx.get_current_key(), timestamp))

    data = [(i % 7, (i * 7919) % 1000) for i in range(300)]
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(
        lambda r, ts: r[1]
    )
    out = await (
        env.from_collection(data)
        .assign_timestamps_and_watermarks(strategy)
        .key_by(lambda r: r[0])
        .process(Report())
        .execute_and_collect()
    )
    assert Counter((k, t) for _, k, t in out) == Counter(set(data))  # one per key and time
    by_subtask: dict[int, list[int]] = {}
    for subtask, _, t in out:
        by_subtask.setdefault(subtask, []).append(t)
    for times in by_subtask.values():
        assert times == sorted(times)


async def test_timers_registered_by_timers_at_the_end_of_input_fire_too(
    env: StreamExecutionEnvironment,
) -> None:
    class Chain(KeyedProcessFunction[str, str, tuple[str, int]]):
        def process_element(self, value: str, ctx: Any, out: Any) -> None:
            ctx.timer_service().register_event_time_timer(1_000)

        def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
            out.collect((ctx.get_current_key(), timestamp))
            if timestamp < 5_000:
                ctx.timer_service().register_event_time_timer(timestamp + 1_000)

    out = await (
        env.from_collection(["a", "b"])
        .assign_timestamps_and_watermarks(
            WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda x, ts: 0)
        )
        .key_by(lambda x: x)
        .process(Chain())
        .execute_and_collect()
    )
    # the final watermark (end of time) fires the timers on_timer registers as well
    assert per_key(out) == {k: [(k, t) for t in range(1_000, 6_000, 1_000)] for k in "ab"}


async def test_timers_are_deduplicated_per_key_and_timestamp(
    env: StreamExecutionEnvironment,
) -> None:
    class Register(KeyedProcessFunction[str, tuple[str, int], tuple[str, int]]):
        def process_element(self, value: tuple[str, int], ctx: Any, out: Any) -> None:
            ctx.timer_service().register_event_time_timer(value[1])
            ctx.timer_service().register_event_time_timer(value[1])

        def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
            out.collect((ctx.get_current_key(), timestamp))

    data = [("a", 100), ("b", 100), ("a", 100), ("a", 200), ("b", 100), ("a", 100)]
    out = await (
        env.from_collection(data)
        .assign_timestamps_and_watermarks(WatermarkStrategy.for_monotonous_timestamps())
        .key_by(lambda r: r[0])
        .process(Register())
        .execute_and_collect()
    )
    assert per_key(out) == {"a": [("a", 100), ("a", 200)], "b": [("b", 100)]}


async def test_deleted_timers_do_not_fire(env: StreamExecutionEnvironment) -> None:
    class Reminder(KeyedProcessFunction[str, tuple[str, str, int], tuple[str, int]]):
        def process_element(self, value: tuple[str, str, int], ctx: Any, out: Any) -> None:
            _, op, t = value
            if op == "set":
                ctx.timer_service().register_event_time_timer(t)
            else:
                ctx.timer_service().delete_event_time_timer(t)

        def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
            out.collect((ctx.get_current_key(), timestamp))

    data = [
        ("a", "set", 100),
        ("a", "set", 200),
        ("b", "set", 100),
        ("a", "delete", 100),
        ("b", "delete", 300),  # never set: nothing happens
        ("c", "set", 50),
        ("c", "delete", 50),
        ("c", "set", 50),  # set again after delete: fires
    ]
    out = await (
        env.from_collection(data).key_by(lambda r: r[0]).process(Reminder()).execute_and_collect()
    )
    assert sorted(out) == [("a", 200), ("b", 100), ("c", 50)]


async def test_timer_registered_behind_the_watermark_fires_with_the_next_one() -> None:
    env = StreamExecutionEnvironment()

    class Behind(KeyedProcessFunction[str, tuple[str, int], tuple[Any, ...]]):
        def process_element(self, value: tuple[str, int], ctx: Any, out: Any) -> None:
            out.collect(("element", value[1], ctx.timer_service().current_watermark()))
            if value[1] == 900:
                ctx.timer_service().register_event_time_timer(10)  # long past

        def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
            out.collect(("timer", timestamp, ctx.timer_service().current_watermark()))

    records = [("k", 500), ("k", 900), ("k", 950)]
    out = await (
        env.from_source(Scripted(one_by_one([(r, r[1]) for r in records])), punctuated())
        .key_by(lambda r: r[0])
        .process(Behind())
        .execute_and_collect()
    )
    assert out == [
        ("element", 500, MIN_WATERMARK),
        ("element", 900, 500),
        ("timer", 10, 900),  # the watermark 900 after the element that registered it
        ("element", 950, 900),
    ]


async def test_timer_output_carries_the_timer_timestamp(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    side: OutputTag[str] = OutputTag("side")

    class Fire(KeyedProcessFunction[int, int, str]):
        def process_element(self, value: int, ctx: Any, out: Any) -> None:
            ctx.timer_service().register_event_time_timer(value * 10 + 3)

        def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
            out.collect(f"main {ctx.get_current_key()}")
            ctx.output(side, f"side {ctx.get_current_key()}")

    fired = (
        env.from_collection([1, 2, 3])
        .assign_timestamps_and_watermarks(
            WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda x, ts: x)
        )
        .key_by(lambda x: x)
        .process(Fire())
    )
    out = await fired.union(fired.get_side_output(side)).process(Stamp()).execute_and_collect()
    assert sorted(out) == sorted(
        [(f"{kind} {k}", k * 10 + 3) for k in (1, 2, 3) for kind in ("main", "side")]
    )


# -- processing-time timers ---------------------------------------------------------


class Delay(KeyedProcessFunction[str, str, tuple[Any, ...]]):
    """On a key's first record: a processing-time timer 50 ms later."""

    def open(self, ctx: RuntimeContext) -> None:
        self.due = ctx.get_state(ValueStateDescriptor("due"))

    def process_element(self, value: str, ctx: Any, out: Any) -> None:
        if self.due.value() is None:
            due = ctx.timer_service().current_processing_time() + 50
            self.due.update(due)
            ctx.timer_service().register_processing_time_timer(due)

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        out.collect(
            (
                ctx.get_current_key(),
                ctx.time_domain(),
                timestamp == self.due.value(),
                ctx.timer_service().current_processing_time() >= timestamp,
                ctx.timestamp(),
                timestamp,
            )
        )


async def run_delay(parallelism: int) -> list[Any]:
    """Delay's timers on a manual clock: a and b at 1000 (due 1050), c at 1050 (due 1100)."""
    clock = ManualClock(start=1_000)
    env = StreamExecutionEnvironment(parallelism=parallelism, config=ExecutionConfig(clock=clock))
    source = Controlled()
    client, out = await collecting(env.from_source(source).key_by(lambda x: x).process(Delay()))
    source.feed(["a", "b", "a"])
    await settle(client, source)
    await clock.advance_to(1_050)
    source.feed(["c"])
    await settle(client, source)
    await clock.advance_to(1_100)
    source.end()
    await client.wait()
    return out


async def test_processing_time_timers_fire_while_the_job_runs(parallelism: int) -> None:
    out = await run_delay(parallelism)
    pt = TimeDomain.PROCESSING_TIME
    assert sorted(out) == [
        ("a", pt, True, True, 1050, 1050),
        ("b", pt, True, True, 1050, 1050),
        ("c", pt, True, True, 1100, 1100),
    ]


async def test_records_a_processing_time_timer_makes_carry_no_timestamp() -> None:
    # Flink's OnTimerContext.timestamp() is the timer's time in both domains (above);
    # only the timestamp of the records emitted is erased for processing-time timers.
    clock = ManualClock(start=1_000)
    env = StreamExecutionEnvironment(config=ExecutionConfig(clock=clock))
    source = Controlled()
    stream = env.from_source(source).key_by(lambda x: x).process(Delay()).process(Stamp())
    client, out = await collecting(stream)
    source.feed(["a"])
    await settle(client, source)
    await clock.advance_to(2_000)
    source.end()
    await client.wait()
    assert [stamp for _, stamp in out] == [None]


async def test_deleted_processing_time_timer_does_not_fire() -> None:
    clock = ManualClock()
    env = StreamExecutionEnvironment(config=ExecutionConfig(clock=clock))

    class SetAndCancel(KeyedProcessFunction[str, str, str]):
        def open(self, ctx: RuntimeContext) -> None:
            self.due = ctx.get_state(ValueStateDescriptor("due"))

        def process_element(self, value: str, ctx: Any, out: Any) -> None:
            timers = ctx.timer_service()
            if value.startswith("set"):
                due = timers.current_processing_time() + 50
                self.due.update(due)
                timers.register_processing_time_timer(due)
            else:
                timers.delete_processing_time_timer(self.due.value())

        def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
            out.collect(ctx.get_current_key())

    source = Controlled()
    stream = env.from_source(source).key_by(lambda x: x[-1]).process(SetAndCancel())
    client, out = await collecting(stream)
    source.feed(["set-a", "set-b"])
    source.feed(["cancel-a"])
    await settle(client, source)
    await clock.advance_to(50)
    source.end()
    await client.wait()
    assert out == ["b"]


# -- watermark generators ----------------------------------------------------------


class SeeWatermark(KeyedProcessFunction[Any, Any, tuple[Any, int]]):
    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        out.collect((value, ctx.timer_service().current_watermark()))


async def test_punctuated_generator_and_watermarks_never_go_back(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)

    class FromEvent(WatermarkGenerator[tuple[str, int]]):
        def on_event(self, event: tuple[str, int], timestamp: int, output: WatermarkOutput) -> None:
            output.emit_watermark(event[1])

        def on_periodic_emit(self, output: WatermarkOutput) -> None:
            pass

    # the events carry the watermark their generator emits; it goes back twice
    records = [("e1", 100), ("e2", 300), ("e3", 200), ("e4", 250), ("e5", 400), ("e6", 0)]
    source = Scripted(one_by_one([(r, 1000 + i) for i, r in enumerate(records)]))
    out = await (
        env.from_source(source, WatermarkStrategy.for_generator(lambda ctx: FromEvent()))
        .key_by(lambda r: "one key")
        .process(SeeWatermark())
        .execute_and_collect()
    )
    assert [(r[0], wm) for r, wm in out] == [
        ("e1", MIN_WATERMARK),
        ("e2", 100),
        ("e3", 300),
        ("e4", 300),
        ("e5", 300),
        ("e6", 400),
    ]


async def test_punctuated_watermark_takes_effect_right_after_its_event() -> None:
    # In Flink a watermark a generator emits in on_event follows that event downstream at
    # once, before the next event: it applies between events that share a batch here.
    env = StreamExecutionEnvironment()
    late: OutputTag[tuple[str, int]] = OutputTag("late")
    events = [("a", 100), ("a", 1500), ("a", 200), ("a", 1600)]
    strategy = WatermarkStrategy.for_generator(lambda ctx: EveryEvent()).with_timestamp_assigner(
        lambda e, ts: e[1]
    )
    windows = (
        env.from_collection(events)  # one batch
        .assign_timestamps_and_watermarks(strategy)
        .key_by(lambda e: e[0])
        .window(TumblingEventTimeWindows.of(1000))
        .side_output_late_data(late)
        .reduce(lambda x, y: (x[0], x[1] + y[1]))
    )
    late_records = windows.get_side_output(late).map(lambda e: ("late", e[1]))
    results = await windows.union(late_records).execute_and_collect()
    # 200 arrives after the watermark 1500 passed the window [0, 1000): it is late
    assert sorted(results) == [("a", 100), ("a", 3100), ("late", 200)]


async def test_bounded_out_of_orderness_watermark_is_max_minus_bound_minus_one() -> None:
    env = StreamExecutionEnvironment()
    env.get_config().set_auto_watermark_interval(10)
    records = [("k", 1000), ("k", 3000), ("k", 2000)]
    steps: list[Emit | Sleep | Mark] = []
    for r in records:
        steps += [Emit([r], [r[1]]), Sleep(0.08)]  # several periodic emissions in between
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(500)
    out = await (
        env.from_source(Scripted(steps), strategy)
        .key_by(lambda r: r[0])
        .process(SeeWatermark())
        .execute_and_collect()
    )
    assert out == [(("k", 1000), MIN_WATERMARK), (("k", 3000), 499), (("k", 2000), 2499)]


# -- combining watermarks: minimum over splits and channels, idleness ----------------


class TimerAt(KeyedProcessFunction[Any, Any, tuple[str, int, int]]):
    """Registers one event-time timer at ``at``; logs when it fires."""

    log: ClassVar[list[str]] = []

    def __init__(self, at: int) -> None:
        self.at = at

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        ctx.timer_service().register_event_time_timer(self.at)

    def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
        TimerAt.log.append(f"timer {timestamp}")
        out.collect(("timer", timestamp, ctx.timer_service().current_watermark()))


async def test_minimum_over_union_inputs_holds_timers_back(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    log: list[str] = []
    TimerAt.log = log
    fast = Scripted(one_by_one([(("fast", t), t) for t in (100, 2000, 5000)]), log)
    slow = Scripted(
        [
            Emit([("slow", 150)], [150]),
            Sleep(0.2),
            Mark("slow passes 1000"),
            Emit([("slow", 3000)], [3000]),
            Sleep(0.05),
        ],
        log,
    )
    out = await (
        env.from_source(fast, punctuated(), "fast")
        .union(env.from_source(slow, punctuated(), "slow"))
        .key_by(lambda r: "k")
        .process(TimerAt(1000))
        .execute_and_collect()
    )
    assert out == [("timer", 1000, 3000)]  # fired by the slow input's watermark
    assert log == ["slow passes 1000", "timer 1000"]


async def test_minimum_over_two_inputs_holds_timers_back(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    log: list[str] = []

    class Both(KeyedCoProcessFunction[str, Any, Any, tuple[str, int, int]]):
        def process_element1(self, value: Any, ctx: Any, out: Any) -> None:
            ctx.timer_service().register_event_time_timer(1000)

        def process_element2(self, value: Any, ctx: Any, out: Any) -> None:
            ctx.timer_service().register_event_time_timer(1000)

        def on_timer(self, timestamp: int, ctx: Any, out: Any) -> None:
            Both.log.append(f"timer {timestamp}")
            out.collect(("timer", timestamp, ctx.timer_service().current_watermark()))

    Both.log = log  # type: ignore[attr-defined]
    fast = Scripted(one_by_one([(("fast", t), t) for t in (100, 2000, 5000)]), log)
    slow = Scripted(
        [
            Emit([("slow", 150)], [150]),
            Sleep(0.2),
            Mark("slow passes 1000"),
            Emit([("slow", 1200)], [1200]),
            Sleep(0.05),
        ],
        log,
    )
    out = await (
        env.from_source(slow, punctuated(), "slow")
        .key_by(lambda r: "k")
        .connect(env.from_source(fast, punctuated(), "fast").key_by(lambda r: "k"))
        .process(Both())
        .execute_and_collect()
    )
    assert out == [("timer", 1000, 1200)]
    assert log == ["slow passes 1000", "timer 1000"]


async def test_minimum_over_splits_of_one_source_holds_timers_back(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    log: list[str] = []
    TimerAt.log = log
    steps: list[Emit | Sleep | Mark] = [
        Emit([("p0", 100)], [100], "p0"),
        Emit([("p1", 120)], [120], "p1"),
        Emit([("p0", 2000), ("p0", 5000)], [2000, 5000], "p0"),
        Sleep(0.2),
        Mark("p1 passes 1000"),
        Emit([("p1", 1100)], [1100], "p1"),
        Sleep(0.05),
    ]
    out = await (
        env.from_source(Scripted(steps, log), punctuated())
        .key_by(lambda r: "k")
        .process(TimerAt(1000))
        .execute_and_collect()
    )
    assert out == [("timer", 1000, 1100)]
    assert log == ["p1 passes 1000", "timer 1000"]


async def test_minimum_over_union_inputs_holds_windows_back(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    log: list[str] = []

    class Log(ProcessWindowFunction[Any, tuple[str, int, list[int]], str]):
        log: ClassVar[list[str]]

        def process(self, key: str, context: Any, elements: Any, out: Any) -> None:
            Log.log.append(f"window {context.window.start}")
            out.collect((key, context.window.start, sorted(e[1] for e in elements)))

    Log.log = log
    fast = Scripted(one_by_one([(("k", t), t) for t in (100, 2000, 5000)]), log)
    slow = Scripted(
        [
            Emit([("k", 150)], [150]),
            Sleep(0.2),
            Mark("slow passes 999"),
            Emit([("k", 1000)], [1000]),
            Sleep(0.05),
        ],
        log,
    )
    out = await (
        env.from_source(fast, punctuated(), "fast")
        .union(env.from_source(slow, punctuated(), "slow"))
        .key_by(lambda r: r[0])
        .window(TumblingEventTimeWindows.of(1000))
        .process(Log())
        .execute_and_collect()
    )
    assert out == [
        ("k", 0, [100, 150]),
        ("k", 1000, [1000]),
        ("k", 2000, [2000]),
        ("k", 5000, [5000]),
    ]
    assert log[:2] == ["slow passes 999", "window 0"]


def idle_split_source(log: list[str]) -> Scripted:
    """Split ``p1`` sends one record and goes quiet; ``p0`` keeps going for about 0.6 s."""
    steps: list[Emit | Sleep | Mark] = [
        Emit([("p1", 100)], [100], "p1"),
        Emit([("p0", 200)], [200], "p0"),
    ]
    for t in range(1100, 7100, 500):  # twelve records, 50 ms apart
        steps += [Sleep(0.05), Emit([("p0", t)], [t], "p0")]
    steps += [Sleep(0.05), Mark("source ends")]
    return Scripted(steps, log)


async def first_window(env: StreamExecutionEnvironment, strategy: WatermarkStrategy[Any]) -> Any:
    log: list[str] = []
    windows = (
        env.from_source(idle_split_source(log), strategy)
        .key_by(lambda r: r[0])
        .window(TumblingEventTimeWindows.of(1000))
        .reduce(lambda a, b: (a[0], a[1] + b[1]))
    )
    async with aclosing(windows.execute_and_stream()) as results:
        async for result in results:
            return result, list(log)
    raise AssertionError("no window fired")


async def test_idle_split_does_not_stall_windows(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    env.get_config().set_auto_watermark_interval(10)
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(0).with_idleness(100)
    result, log = await first_window(env, strategy)
    # p1 is idle after 100 ms without records; p0's watermark alone fires [0, 1000)
    # (p1's only window) while the source still runs
    assert result in (("p1", 100), ("p0", 200))
    assert log == []


async def test_idle_split_that_resumes_does_not_move_the_watermark_back() -> None:
    env = StreamExecutionEnvironment()
    env.get_config().set_auto_watermark_interval(10)
    steps: list[Emit | Sleep | Mark] = [
        Emit([("p1", 100)], [100], "p1"),
        Emit([("p0", 200)], [200], "p0"),
        Sleep(0.05),
        Emit([("p0", 5000)], [5000], "p0"),
        Sleep(0.2),  # p1 idle: the watermark follows p0 to 4999
        Emit([("p1", 300)], [300], "p1"),  # p1 is back, far behind
        Sleep(0.05),
        Emit([("p0", 5100)], [5100], "p0"),
        Sleep(0.05),
    ]
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(0).with_idleness(100)
    out = await (
        env.from_source(Scripted(steps), strategy)
        .key_by(lambda r: "k")
        .process(SeeWatermark())
        .execute_and_collect()
    )
    watermarks = [wm for _, wm in out]
    assert watermarks == sorted(watermarks)
    assert [r for r, _ in out] == [
        ("p1", 100),
        ("p0", 200),
        ("p0", 5000),
        ("p1", 300),
        ("p0", 5100),
    ]
    assert watermarks[3] == 4999  # p1 resuming at 300 did not pull the watermark back
    assert watermarks[4] == 4999


async def test_non_keyed_process_function_reads_time_through_the_timer_service() -> None:
    # As in Flink: a non-keyed ProcessFunction's ctx.timer_service() gives the current
    # watermark and processing time; only registering timers needs a keyed stream.
    env = StreamExecutionEnvironment()

    class Clock(ProcessFunction[Any, tuple[Any, int, bool]]):
        def process_element(self, value: Any, ctx: Any, out: Any) -> None:
            timers = ctx.timer_service()
            out.collect((value, timers.current_watermark(), timers.current_processing_time() > 0))

    records = [(("x", 100), 100), (("x", 300), 300)]
    out = await (
        env.from_source(Scripted(one_by_one(records)), punctuated()).process(Clock())
    ).execute_and_collect()
    assert out == [(("x", 100), MIN_WATERMARK, True), (("x", 300), 100, True)]


async def test_without_idleness_a_quiet_split_stalls_windows() -> None:
    env = StreamExecutionEnvironment()
    env.get_config().set_auto_watermark_interval(10)
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(0)
    result, log = await first_window(env, strategy)
    assert result in (("p1", 100), ("p0", 200))
    assert log == ["source ends"]  # only the end of input fired it
