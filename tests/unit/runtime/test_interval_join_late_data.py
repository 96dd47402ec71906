"""Late elements of an interval join: to a side output per input, or counted and dropped."""

from __future__ import annotations

from typing import Any

from flowactors import OutputTag, ProcessJoinFunction
from flowactors.runtime.two_input import IntervalJoinOperator
from flowactors.testing import KeyedTwoInputStreamOperatorTestHarness, StreamRecord

Click = tuple[str, int]


class Pair(ProcessJoinFunction[Click, Click, tuple[int, int]]):
    def process_element(self, left: Click, right: Click, ctx: Any, out: Any) -> None:
        out.collect((left[1], right[1]))


JoinHarness = KeyedTwoInputStreamOperatorTestHarness


LEFT_LATE: OutputTag[Click] = OutputTag("left-late")
RIGHT_LATE: OutputTag[Click] = OutputTag("right-late")


def join(late_tags: tuple[Any, Any] = (None, None)) -> IntervalJoinOperator:
    key = (lambda c: c[0], lambda c: c[0])
    return IntervalJoinOperator(Pair(), key, -10, 10, True, True, late_tags)


def feed(h: JoinHarness) -> None:
    h.process_element1(("k", 100), 100)
    h.process_element2(("k", 105), 105)
    h.process_watermark(200)
    h.process_element1(("k", 150), 150)  # behind the watermark: late
    h.process_element2(("k", 199), 199)  # late
    h.process_element1(("k", 200), 200)  # at the watermark: not late
    h.process_element2(("k", 205), 205)


def test_late_elements_go_to_their_sides_output() -> None:
    operator = join((LEFT_LATE, RIGHT_LATE))
    with JoinHarness(operator) as h:
        feed(h)
        assert h.extract_output_values() == [(100, 105), (200, 205)]
        assert h.get_side_output(LEFT_LATE) == [("k", 150)]
        assert h.get_side_output(RIGHT_LATE) == [("k", 199)]
        assert h.get_side_output_records(LEFT_LATE) == [
            StreamRecord(("k", 150), 150)  # with its own timestamp
        ]
        assert operator.late_records_dropped == 0


def test_one_side_tagged_the_other_counted() -> None:
    operator = join((None, RIGHT_LATE))
    with JoinHarness(operator) as h:
        feed(h)
        assert h.get_side_output(RIGHT_LATE) == [("k", 199)]
        assert h.get_side_output(LEFT_LATE) == []
        assert operator.late_records_dropped == 1


def test_without_tags_late_elements_are_counted_and_dropped() -> None:
    operator = join()
    with JoinHarness(operator) as h:
        feed(h)
        assert h.extract_output_values() == [(100, 105), (200, 205)]
        assert operator.late_records_dropped == 2
