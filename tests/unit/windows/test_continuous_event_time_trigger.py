"""ContinuousEventTimeTrigger, with the cases of Flink's ContinuousEventTimeTriggerTest.

Flink's test drives the trigger alone; these drive it inside the window operator,
so timer and state counts include the operator's own: the window contents, the
cleanup timer (the same timer as the window's end when there is no allowed
lateness) and, for sessions, the list of a key's windows.
"""

from __future__ import annotations

from flowactors.testing import StreamRecord, Watermark, WindowOperatorTestHarness
from flowactors.windows import (
    ContinuousEventTimeTrigger,
    EventTimeSessionWindows,
    TimeWindow,
    TumblingEventTimeWindows,
)

Pair = tuple[str, int]


def add(a: Pair, b: Pair) -> Pair:
    return (a[0], a[1] + b[1])


def harness(
    assigner: TumblingEventTimeWindows | EventTimeSessionWindows,
    interval: int,
    allowed_lateness: int = 0,
) -> WindowOperatorTestHarness:
    return WindowOperatorTestHarness(
        assigner,
        lambda v: v[0],
        reduce=add,
        trigger=ContinuousEventTimeTrigger.of(interval),
        allowed_lateness=allowed_lateness,
    )


def test_fires_at_window_aligned_multiples_of_the_interval() -> None:
    with harness(TumblingEventTimeWindows.of(10), interval=4) as h:
        h.process_element(("a", 1), 5)
        h.process_watermark(7)
        assert h.extract_output_values() == []  # not at 2 * 4 - 1
        h.process_watermark(8)
        assert h.get_output() == [Watermark(7), StreamRecord(("a", 1), 9), Watermark(8)]


def test_one_fire_time_per_window_not_a_timer_per_element() -> None:
    """Flink: testWindowSeparationAndFiring."""
    first, second = TimeWindow(0, 10), TimeWindow(10, 20)
    with harness(TumblingEventTimeWindows.of(10), interval=4) as h:
        for ts in (1, 2, 3):
            h.process_element(("a", 1), ts)
        for ts in (12, 13):
            h.process_element(("a", 10), ts)
        # per window: its end (also its cleanup) and the next fire time (4 and 16)
        assert h.num_event_time_timers(first) == 2
        assert h.num_event_time_timers(second) == 2
        assert h.num_keyed_state_entries() == 4  # contents and fire time, per window

        h.process_watermark(4)
        assert h.extract_output_values() == [("a", 3)]
        assert h.num_event_time_timers(first) == 2  # 8 replaced 4
        assert h.num_event_time_timers(second) == 2

        h.process_watermark(9)  # fires at 8, then at the end (9), then cleans up
        assert h.extract_output_records()[1:] == [
            StreamRecord(("a", 3), 9),
            StreamRecord(("a", 3), 9),
        ]
        assert h.num_event_time_timers(first) == 0
        assert h.num_event_time_timers() == 2
        assert h.num_keyed_state_entries() == 2  # the second window's, untouched

        h.clear_output()
        h.process_watermark(19)  # 16, then the end (its next fire time is the end too)
        assert h.extract_output_values() == [("a", 20), ("a", 20)]
        assert h.num_event_time_timers() == 0
        assert h.num_keyed_state_entries() == 0


def test_timer_without_trigger_state_is_harmless_and_cleanup_does_not_fire() -> None:
    """Flink: testTriggerHandlesAllOnTimerCalls and testLateElementTriggersImmediately."""
    with harness(TumblingEventTimeWindows.of(2), interval=5, allowed_lateness=10) as h:
        h.process_watermark(10)
        h.process_element(("a", 1), 0)  # late within the allowed lateness: fires at once
        assert h.extract_output_records() == [StreamRecord(("a", 1), 1)]
        assert h.num_event_time_timers() == 1  # only the cleanup timer (1 + 10)
        assert h.num_keyed_state_entries() == 1  # the contents: no fire time
        h.process_watermark(20)  # the cleanup timer (1 + 10) reaches the trigger
        assert h.extract_output_values() == [("a", 1)]
        assert h.num_event_time_timers() == 0
        assert h.num_keyed_state_entries() == 0


def test_no_extra_firing_on_the_cleanup_timer_with_allowed_lateness() -> None:
    with harness(TumblingEventTimeWindows.of(10), interval=4, allowed_lateness=5) as h:
        h.process_element(("a", 1), 1)
        h.process_watermark(30)
        # 4, 8, the end (9); nothing at the cleanup time (14)
        assert h.extract_output_records() == [StreamRecord(("a", 1), 9)] * 3
        assert h.num_event_time_timers() == 0
        assert h.num_keyed_state_entries() == 0


def test_clear_does_not_leak_across_windows() -> None:
    """Flink: testClear."""
    with harness(TumblingEventTimeWindows.of(10), interval=4) as h:
        h.process_element(("a", 1), 1)
        h.process_element(("b", 1), 1)
        h.process_element(("a", 1), 11)
        assert h.num_event_time_timers() == 6
        assert h.num_keyed_state_entries() == 6
        h.process_watermark(9)  # clears both keys' first window
        assert h.num_event_time_timers() == 2
        assert h.num_event_time_timers(TimeWindow(10, 20)) == 2
        assert h.num_keyed_state_entries() == 2


def test_session_windows_merge_fire_times() -> None:
    """Flink: testMergingWindows (the earliest fire time survives the merge)."""
    with harness(EventTimeSessionWindows.with_gap(10), interval=4) as h:
        h.process_element(("a", 1), 1)  # [1, 11): fires at 4
        h.process_element(("a", 2), 13)  # [13, 23): fires at 16
        assert h.num_event_time_timers() == 4
        assert h.num_keyed_state_entries() == 5  # 2 contents, 2 fire times, the sessions
        h.process_element(("a", 4), 9)  # bridges both: [1, 23)
        merged = TimeWindow(1, 23)
        assert h.num_event_time_timers(merged) == 2  # fire time 4 and the end
        assert h.num_keyed_state_entries() == 3
        # as in Flink, the fire timers of the merged-away windows stay, and are ignored
        assert h.num_event_time_timers() == 4

        h.process_watermark(4)
        assert h.extract_output_records() == [StreamRecord(("a", 7), 22)]
        h.process_watermark(22)  # 8, 12, 16, 20 and the end
        assert h.extract_output_values() == [("a", 7)] * 6
        assert h.num_event_time_timers() == 0
        assert h.num_keyed_state_entries() == 0


def test_session_windows_are_accepted() -> None:
    assert ContinuousEventTimeTrigger.of(1_000).can_merge()
