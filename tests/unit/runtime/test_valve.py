"""The watermark valve, without a job: minimum over active inputs, forward only, idleness."""

from __future__ import annotations

from flowactors.runtime.valve import WatermarkValve
from flowactors.time import MAX_WATERMARK


def test_minimum_over_inputs_only_once_all_have_one() -> None:
    valve = WatermarkValve(range(3))
    valve.set_watermark(0, 10)
    valve.set_watermark(1, 20)
    assert valve.advance() == (None, None)  # input 2 has none yet
    valve.set_watermark(2, 15)
    assert valve.advance() == (10, None)
    valve.set_watermark(0, 30)
    assert valve.advance() == (15, None)


def test_never_goes_back() -> None:
    valve = WatermarkValve(["a", "b"])
    valve.set_watermark("a", 10)
    valve.set_watermark("b", 10)
    assert valve.advance() == (10, None)
    valve.set_watermark("a", 5)  # an input's own watermark does not go back either
    valve.set_idle("b", True)
    assert valve.advance() == (None, None)
    assert valve.watermark == 10


def test_an_idle_input_holds_nothing_back_and_all_idle_is_idle() -> None:
    valve = WatermarkValve([0, 1])
    valve.set_watermark(0, 100)
    valve.set_idle(1, True)
    assert valve.advance() == (100, None)
    valve.set_idle(0, True)
    assert valve.advance() == (None, True)
    assert valve.advance() == (None, None)  # reported once
    valve.set_watermark(1, 50)  # active again, behind what was let through
    assert valve.advance() == (None, False)
    valve.set_watermark(1, 150)
    assert valve.advance() == (150, None)  # input 0 is idle: it holds nothing back
    assert valve.idle is False


def test_inputs_added_later_start_active_at_no_watermark() -> None:
    valve = WatermarkValve()
    valve.add_input("p0")
    valve.set_watermark("p0", 7)
    assert valve.advance() == (7, None)
    valve.add_input("p1")
    valve.set_watermark("p0", 9)
    assert valve.advance() == (None, None)
    valve.set_watermark("p1", MAX_WATERMARK)
    assert valve.advance() == (9, None)
