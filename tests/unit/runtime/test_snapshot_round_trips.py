"""Every stateful operator survives a snapshot and restore through the harness.

Each test feeds an operator, snapshots it (a real checkpoint on disk), then
feeds the same continuation to the original and to a restored copy: both must
produce the same output, with the same timers and state entries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flowactors import (
    Collector,
    KeyedContext,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    MapFunction,
    OnTimerContext,
    ProcessJoinFunction,
    ProcessWindowFunction,
    RuntimeContext,
    ValueStateDescriptor,
)
from flowactors.runtime.keyed import KeyedFunctionOperator, KeyedReduceOperator
from flowactors.runtime.two_input import IntervalJoinOperator
from flowactors.testing import (
    KeyedOneInputStreamOperatorTestHarness,
    KeyedTwoInputStreamOperatorTestHarness,
    StreamRecord,
    WindowOperatorTestHarness,
)
from flowactors.windows import CountTrigger, EventTimeSessionWindows, TumblingEventTimeWindows
from tests.support.functions import Average

Harness = Any


def key(v: tuple[str, int]) -> str:
    return v[0]


def round_trip(
    make: Callable[[], Harness],
    before: Callable[[Harness], None],
    after: Callable[[Harness], None],
) -> tuple[Harness, Harness]:
    """The original harness and a restored one, both fed ``after``; outputs from ``after`` on."""
    original = make()
    before(original)
    snapshot = original.snapshot()
    original.clear_output()
    restored = make()
    restored.restore(snapshot)
    for h in (original, restored):
        after(h)
    snapshot.discard()
    return original, restored


def canonical(output: list[Any]) -> list[Any]:
    """Records between two watermarks in a fixed order: timers of one timestamp fire in
    the order they were registered, which a restore (by key group) does not keep."""
    out: list[Any] = []
    run: list[StreamRecord] = []
    for element in [*output, None]:
        if isinstance(element, StreamRecord):
            run.append(element)
            continue
        out.extend(sorted(run, key=lambda r: (r.timestamp or 0, repr(r.value))))
        run = []
        if element is not None:
            out.append(element)
    return out


def assert_same(original: Harness, restored: Harness) -> None:
    assert canonical(restored.get_output()) == canonical(original.get_output())
    assert restored.num_keyed_state_entries() == original.num_keyed_state_entries()
    assert restored.num_event_time_timers() == original.num_event_time_timers()
    assert restored.num_processing_time_timers() == original.num_processing_time_timers()
    original.close()
    restored.close()


class CountAndRemind(KeyedProcessFunction[str, tuple[str, int], tuple[str, int, str]]):
    def open(self, ctx: RuntimeContext) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    def process_element(
        self, value: tuple[str, int], ctx: KeyedContext[str], out: Collector[Any]
    ) -> None:
        self.count.update(self.count.value() + value[1])
        ctx.timer_service().register_event_time_timer(value[1] * 10)
        ctx.timer_service().register_processing_time_timer(1_000 + value[1])

    def on_timer(self, timestamp: int, ctx: OnTimerContext[str], out: Collector[Any]) -> None:
        out.collect((ctx.get_current_key(), self.count.value(), str(ctx.time_domain())))


def test_keyed_process_function_state_and_both_timer_kinds() -> None:
    def make() -> Harness:
        return KeyedOneInputStreamOperatorTestHarness(CountAndRemind(), key_selector=key)

    def before(h: Harness) -> None:
        for v in [("a", 1), ("b", 2), ("a", 3)]:
            h.process_element(v, v[1])
        h.process_watermark(10)  # a's first timer fires before the snapshot

    def after(h: Harness) -> None:
        h.process_element(("b", 4), 4)
        h.process_watermark(100)
        h.set_processing_time(2_000)

    original, restored = round_trip(make, before, after)
    # b@20, a@30, b@40 in event time; all four in processing time
    assert len(original.extract_output_values()) == 7
    assert_same(original, restored)


class Running(MapFunction[tuple[str, int], tuple[str, int]]):
    def open(self, ctx: RuntimeContext) -> None:
        self.total = ctx.get_state(ValueStateDescriptor("total", default=0))

    def map(self, value: tuple[str, int]) -> tuple[str, int]:
        self.total.update(self.total.value() + value[1])
        return (value[0], self.total.value())


@pytest.mark.parametrize("kind", ["function", "reduce"])
def test_keyed_map_function_and_running_reduce(kind: str) -> None:
    def make() -> Harness:
        op = (
            KeyedFunctionOperator("map", Running(), key)
            if kind == "function"
            else KeyedReduceOperator(lambda a, b: (a[0], a[1] + b[1]), key)
        )
        return KeyedOneInputStreamOperatorTestHarness(op, key_selector=key)

    def before(h: Harness) -> None:
        h.process_elements([("a", 1), ("b", 2), ("a", 3)])

    def after(h: Harness) -> None:
        h.process_elements([("a", 10), ("b", 20)])

    original, restored = round_trip(make, before, after)
    assert original.extract_output_values() == [("a", 14), ("b", 22)]
    assert_same(original, restored)


class Match(KeyedCoProcessFunction[str, tuple[str, int], tuple[str, int], str]):
    def open(self, ctx: RuntimeContext) -> None:
        self.left = ctx.get_state(ValueStateDescriptor[int]("left"))

    def process_element1(
        self, value: tuple[str, int], ctx: KeyedContext[str], out: Collector[str]
    ) -> None:
        self.left.update(value[1])
        ctx.timer_service().register_event_time_timer(value[1] + 100)

    def process_element2(
        self, value: tuple[str, int], ctx: KeyedContext[str], out: Collector[str]
    ) -> None:
        out.collect(f"{value[0]}: {self.left.value()} + {value[1]}")

    def on_timer(self, timestamp: int, ctx: OnTimerContext[str], out: Collector[str]) -> None:
        out.collect(f"{ctx.get_current_key()} expired at {timestamp}")
        self.left.clear()


def test_keyed_co_process_function_with_per_input_watermarks() -> None:
    def make() -> Harness:
        return KeyedTwoInputStreamOperatorTestHarness(Match(), key, key)

    def before(h: Harness) -> None:
        h.process_element1(("a", 1), 1)
        h.process_element1(("b", 5), 5)
        h.process_watermark1(200)  # the second input holds event time back

    def after(h: Harness) -> None:
        h.process_watermark1(200)  # input watermarks are not state: inputs send them again
        h.process_element2(("a", 7), 7)
        h.process_watermark2(102)
        h.process_element2(("b", 9), 9)
        h.process_watermark_status2(True)  # idle: only the first input's 200 counts

    original, restored = round_trip(make, before, after)
    assert original.extract_output_values() == [
        "a: 1 + 7",
        "a expired at 101",
        "b: 5 + 9",
        "b expired at 105",
    ]
    assert_same(original, restored)


class Pair(ProcessJoinFunction[tuple[str, int], tuple[str, int], tuple[int, int]]):
    def process_element(self, left: Any, right: Any, ctx: Any, out: Collector[Any]) -> None:
        out.collect((left[1], right[1]))


def test_interval_join_buffers() -> None:
    def make() -> Harness:
        op = IntervalJoinOperator(Pair(), (key, key), -5, 5, True, True)
        return KeyedTwoInputStreamOperatorTestHarness(op)

    def before(h: Harness) -> None:
        h.process_element1(("a", 10), 10)
        h.process_element2(("a", 12), 12)

    def after(h: Harness) -> None:
        h.process_element2(("a", 14), 14)
        h.process_element1(("a", 13), 13)
        h.process_watermark1(30)
        h.process_watermark2(30)

    original, restored = round_trip(make, before, after)
    assert sorted(original.extract_output_values()) == [(10, 14), (13, 12), (13, 14)]
    assert_same(original, restored)


class Listing(ProcessWindowFunction[tuple[str, int], tuple[str, list[int]], str]):
    def process(self, k: str, context: Any, elements: Any, out: Collector[Any]) -> None:
        out.collect((k, [v for _, v in elements]))


WINDOW_CASES: dict[str, Callable[[], Harness]] = {
    "tumbling-reduce": lambda: WindowOperatorTestHarness(
        TumblingEventTimeWindows.of(100), key, reduce=lambda a, b: (a[0], a[1] + b[1])
    ),
    "session-aggregate": lambda: WindowOperatorTestHarness(
        EventTimeSessionWindows.with_gap(30), key, aggregate=Average()
    ),
    "count-trigger-process": lambda: WindowOperatorTestHarness(
        TumblingEventTimeWindows.of(100), key, process=Listing(), trigger=CountTrigger.of(2)
    ),
}


@pytest.mark.parametrize("case", sorted(WINDOW_CASES))
def test_window_contents_and_timers(case: str) -> None:
    def before(h: Harness) -> None:
        for v in [("a", 10), ("b", 20), ("a", 35)]:
            h.process_element(v, v[1])

    def after(h: Harness) -> None:
        # b's count (1 before the snapshot) reaches 2 only if it was restored
        for v in [("b", 30), ("a", 50), ("a", 60), ("b", 140), ("a", 160)]:
            h.process_element(v, v[1])
        h.process_watermark(1_000)

    original, restored = round_trip(WINDOW_CASES[case], before, after)
    assert original.extract_output_values()
    assert_same(original, restored)


def test_restore_at_another_parallelism_takes_the_key_groups_a_subtask_owns() -> None:
    def at(parallelism: int, subtask: int) -> Harness:
        return KeyedOneInputStreamOperatorTestHarness(
            CountAndRemind(), key_selector=key, parallelism=parallelism, subtask_index=subtask
        )

    whole = at(1, 0)
    keys = [f"k{i}" for i in range(20)]
    for i, k in enumerate(keys):
        whole.process_element((k, i), i)
    snapshot = whole.snapshot()
    halves = [at(2, s) for s in range(2)]
    for half in halves:
        half.restore(snapshot)
    counts = [half.num_keyed_state_entries() for half in halves]
    assert sum(counts) == whole.num_keyed_state_entries() == 20
    assert all(counts)  # the keys spread over both subtasks
    timers = [half.num_event_time_timers() for half in halves]
    assert sum(timers) == whole.num_event_time_timers()
    for h in (whole, *halves):
        h.close()
    snapshot.discard()
