"""Dynamic-gap session windows and staggered tumbling processing-time windows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from flowactors.testing import StreamRecord, WindowOperatorTestHarness
from flowactors.windows import (
    DynamicEventTimeSessionWindows,
    DynamicProcessingTimeSessionWindows,
    EventTimeSessionWindows,
    ProcessingTimeSessionWindows,
    TimeWindow,
    TumblingProcessingTimeWindows,
    WindowStagger,
)

#: ``(key, gap in ms)``
Visit = tuple[str, int]


class Describe:
    def process(self, key: str, ctx: Any, elements: list[Visit], out: Any) -> None:
        out.collect((key, ctx.window.start, ctx.window.end, [gap for _, gap in elements]))


def gap_of(v: Visit) -> int:
    return v[1]


# -- dynamic gaps -------------------------------------------------------------------------


def test_dynamic_event_time_sessions_take_the_gap_from_each_element() -> None:
    assigner = EventTimeSessionWindows.with_dynamic_gap(gap_of)
    assert isinstance(assigner, DynamicEventTimeSessionWindows)
    with WindowOperatorTestHarness(assigner, lambda v: v[0], process=Describe()) as h:
        h.process_element(("a", 3), 0)  # [0, 3)
        h.process_element(("a", 10), 5)  # [5, 15): apart
        h.process_element(("a", 1), 2)  # [2, 3): inside [0, 3)
        h.process_watermark(2)
        assert h.extract_output_records() == [StreamRecord(("a", 0, 3, [3, 1]), 2)]
        h.process_element(("a", 2), 14)  # [14, 16): extends [5, 15) to [5, 16)
        h.process_watermark(14)
        assert len(h.extract_output_values()) == 1
        h.process_watermark(15)
        assert h.extract_output_values()[1:] == [("a", 5, 16, [10, 2])]
        assert h.num_keyed_state_entries() == 0


def test_dynamic_gap_extractor_object_and_timedelta() -> None:
    class Extractor:
        def extract(self, element: Visit) -> timedelta:
            return timedelta(seconds=element[1])

    assigner = EventTimeSessionWindows.with_dynamic_gap(Extractor())
    assert assigner.assign_windows(("a", 2), 1_000, 0) == [TimeWindow(1_000, 3_000)]


@pytest.mark.parametrize("gap", [0, -5])
def test_dynamic_gap_must_be_positive(gap: int) -> None:
    assigner = EventTimeSessionWindows.with_dynamic_gap(gap_of)
    with pytest.raises(ValueError, match="positive"):
        assigner.assign_windows(("a", gap), 10, 0)


def test_dynamic_processing_time_sessions() -> None:
    assigner = ProcessingTimeSessionWindows.with_dynamic_gap(gap_of)
    assert isinstance(assigner, DynamicProcessingTimeSessionWindows)
    with WindowOperatorTestHarness(assigner, lambda v: v[0], process=Describe()) as h:
        h.process_element(("a", 5))  # [0, 5)
        h.set_processing_time(3)
        h.process_element(("a", 10))  # [3, 13): merged into [0, 13)
        h.set_processing_time(11)
        assert h.extract_output_values() == []
        h.set_processing_time(12)
        assert h.extract_output_values() == [("a", 0, 13, [5, 10])]
        assert h.num_processing_time_timers() == 0


# -- stagger ------------------------------------------------------------------------------


def first_window(assigner: TumblingProcessingTimeWindows, now: int) -> TimeWindow:
    with WindowOperatorTestHarness(
        assigner, lambda v: v[0], process=Describe(), processing_time=now
    ) as h:
        h.process_element(("a", 0))
        h.set_processing_time(now + 120_000)
        (out,) = h.extract_output_values()
        return TimeWindow(out[1], out[2])


def test_aligned_stagger_starts_windows_at_multiples_of_the_size() -> None:
    assigner = TumblingProcessingTimeWindows.of(60_000, stagger=WindowStagger.ALIGNED)
    assert first_window(assigner, 130_000) == TimeWindow(120_000, 180_000)


def test_natural_stagger_starts_windows_at_each_subtasks_first_element() -> None:
    assigner = TumblingProcessingTimeWindows.of(60_000, stagger=WindowStagger.NATURAL)
    # one assigner, two subtasks (each operator has its own copy): two different shifts
    assert first_window(assigner, 130_000) == TimeWindow(130_000, 190_000)
    assert first_window(assigner, 145_000) == TimeWindow(145_000, 205_000)


def test_stagger_adds_to_the_offset() -> None:
    assigner = TumblingProcessingTimeWindows.of(
        60_000, offset=timedelta(seconds=5), stagger=WindowStagger.NATURAL
    )
    assert first_window(assigner, 130_000) == TimeWindow(75_000, 135_000)


def test_random_stagger_shifts_by_a_fraction_of_the_size(monkeypatch: pytest.MonkeyPatch) -> None:
    import flowactors.windows.assigners as assigners

    monkeypatch.setattr(assigners.random, "random", lambda: 0.25)
    assigner = TumblingProcessingTimeWindows.of(60_000, stagger=WindowStagger.RANDOM)
    assert first_window(assigner, 140_000) == TimeWindow(135_000, 195_000)
    assert WindowStagger.RANDOM.stagger_offset(0, 60_000) == 15_000
