"""The time budget of a turn (``runtime/budget.py``), on a manual clock: how long a
task waits in ``pause()`` depends only on what the clock says others used."""

from __future__ import annotations

import asyncio

import pytest

from flowactors.runtime import budget as budget_module
from flowactors.runtime.budget import TurnBudget


class Clock:
    """Stands in for ``time.perf_counter`` in the budget module."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(budget_module, "time", fake)
    return fake


class Competitor:
    """Another busy coroutine: each loop iteration it uses ``work`` seconds."""

    def __init__(self, clock: Clock, work: float) -> None:
        self.clock, self.work, self.turns = clock, work, 0
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            self.clock.now += self.work
            self.turns += 1
            await asyncio.sleep(0)


async def test_a_turn_expires_after_its_slice(clock: Clock) -> None:
    turn = TurnBudget(slice_ms=5)
    turn.begin()
    clock.now += 0.004
    assert not turn.expired()
    clock.now += 0.001
    assert turn.expired()


async def test_alone_a_task_pauses_for_two_idle_iterations_and_keeps_its_slice(
    clock: Clock,
) -> None:
    turn = TurnBudget(slice_ms=5)
    turn.begin()
    clock.now += 0.005
    await turn.pause()
    assert turn.slice_s == 0.005
    assert not turn.expired()


async def test_beside_a_busy_coroutine_a_task_waits_until_it_had_as_much_time(
    clock: Clock,
) -> None:
    turn = TurnBudget(slice_ms=5)
    turn.begin()
    await turn.pause()  # alone: learns what a bare loop iteration costs (nothing, here)
    other = Competitor(clock, work=0.001)
    try:
        clock.now += 0.005  # this task used 5 ms
        before = other.turns
        await turn.pause()
        # The other one got the loop until it, too, had used 5 ms.
        assert other.turns - before == 5
        # And the next turn leaves room for what it used in the last iteration.
        assert turn.slice_s == pytest.approx(0.004)
    finally:
        other.task.cancel()


async def test_a_hold_is_reported_only_when_the_loop_did_not_run(clock: Clock) -> None:
    turn = TurnBudget(slice_ms=5, report_hold_ms=50)
    turn.begin()
    clock.now += 0.06
    turn.check_hold("operator 'x'")
    assert turn.holds == 1 and turn.longest_hold_s == pytest.approx(0.06)

    turn.begin()
    await asyncio.sleep(0)  # suspended: the loop ran meanwhile
    clock.now += 0.06
    turn.check_hold("operator 'x'")
    assert turn.holds == 1
