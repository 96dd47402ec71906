"""The time budget of a turn: how long a task may keep the event loop before it yields.

flowactors shares its event loop with the service that embeds it (and with
other jobs). Every long piece of work of the runtime — a task's message loop,
firing the timers and windows a watermark made due, capturing a snapshot,
restoring state — checks its task's :class:`TurnBudget` every so many items
and, once the slice (``ExecutionConfig.time_slice_ms``) is spent, yields one
loop iteration (``await asyncio.sleep(0)``) and goes on where it stopped. The
task is suspended inside the message it handles while it yields, so nothing
else of the task runs in between: the work's semantics do not change (a
watermark is forwarded only once everything it made due has fired).

**Fair sharing.** Each pause measures how long the loop took to come back
(``away``): beyond the bare cost of an iteration (the smallest ``away`` seen),
that is time other coroutines used — the service, other jobs, other tasks.
A task keeps account of its own busy time and of the others'; when it has
used more than 1.5x what the others used, it yields again (and again) until
the others caught up, so a busy job beside another busy one takes at most
about 60 % of the loop, however the other one's work is spread over loop
iterations (an ``async def`` enrichment needs several iterations per record).
Two idle iterations in a row mean nobody else wants the loop: the account is
reset and the task runs on. A turn is also shortened by what others used in
the last iteration, so that one iteration stays within the slice even when
several tasks are busy. The accounts decay (halved every 50 ms of busy time),
so the share follows changes in load.

A task that still held the loop longer than ``report_loop_hold_ms`` without
yielding (only user code can do that once the runtime slices its own work) is
reported by :meth:`TurnBudget.check_hold`: a warning naming the operators and
the duration, and the metrics ``loopHolds`` / ``longestLoopHoldMs``. Only a
turn in which the task really never let the loop run counts: :meth:`begin`
schedules a marker callback, which runs at the loop's next iteration, so a
check that finds it run knows the task was suspended meanwhile (an ``await``
on I/O, on backpressure) and reports nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("flowactors.runtime")

__all__ = ["TurnBudget"]

#: What others used, below which a task counts as alone (a loop iteration with
#: nothing else to run costs 1-2 µs on asyncio's loop and on uvloop).
_ALONE_S = 5e-6
#: A task's turn against what others used in the last iteration.
_SHARE = 1.0
#: The shortest turn a busy task takes.
_MIN_SLICE_S = 0.5e-3
#: Busy time (own and others') after which the accounts are halved.
_ACCOUNT_S = 0.05


class TurnBudget:
    """One task's turn: started when it last got the loop back, spent after ``slice_ms``."""

    __slots__ = (
        "_floor",
        "_mine",
        "_ran",
        "_theirs",
        "_turn",
        "deadline",
        "hold_limit_s",
        "holds",
        "longest_hold_s",
        "max_slice_s",
        "slice_s",
        "started",
    )

    def __init__(self, slice_ms: float = 5.0, report_hold_ms: float = 50.0) -> None:
        self.max_slice_s = self.slice_s = slice_ms / 1000.0
        #: The shortest time the loop took to come back after a pause: its bare cost.
        self._floor = 1.0
        #: Busy time of this task and of the others, while both want the loop.
        self._mine = 0.0
        self._theirs = 0.0
        self.hold_limit_s = report_hold_ms / 1000.0
        self.started = time.perf_counter()
        self.deadline = self.started + self.slice_s
        #: Turns that held the loop longer than the limit, and the longest one.
        self.holds = 0
        self.longest_hold_s = 0.0
        self._turn = 0
        self._ran = 0

    def begin(self) -> None:
        """A new turn starts now (the task just got the loop back)."""
        now = self.started = time.perf_counter()
        self.deadline = now + self.slice_s
        self._turn += 1
        try:
            asyncio.get_running_loop().call_soon(self._mark, self._turn)
        except RuntimeError:  # no loop (built outside of one): nothing to watch
            self._ran = self._turn

    def _mark(self, turn: int) -> None:
        self._ran = turn

    def expired(self) -> bool:
        return time.perf_counter() >= self.deadline

    async def pause(self) -> None:
        """Let others run (as long as the sharing rule above says), then start a turn."""
        self._mine += time.perf_counter() - self.started
        last = 0.0
        idle = 0
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0)
            away = time.perf_counter() - before
            if away < self._floor:
                self._floor = away
            others = away - self._floor
            if others < _ALONE_S:
                idle += 1
                if idle >= 2:  # nobody else wants the loop
                    self._mine = self._theirs = 0.0
                    last = 0.0
                    break
                continue
            idle = 0
            last = others
            self._theirs += others
            if self._mine <= _SHARE * self._theirs:
                break
        if self._mine + self._theirs > _ACCOUNT_S:
            self._mine *= 0.5
            self._theirs *= 0.5
        self.slice_s = min(self.max_slice_s, max(_MIN_SLICE_S, self.max_slice_s - last))
        self.begin()

    async def pause_if_expired(self) -> None:
        if time.perf_counter() >= self.deadline:
            await self.pause()

    def check_hold(self, who: str) -> None:
        """Report the current turn if it held the loop longer than the limit."""
        if self._ran == self._turn:
            self.begin()  # the loop ran since this turn began: the task was suspended
            return
        held = time.perf_counter() - self.started
        if held < self.hold_limit_s:
            return
        self.holds += 1
        self.longest_hold_s = max(self.longest_hold_s, held)
        log.warning(
            "%s held the event loop for %.0f ms without yielding: work the runtime "
            "cannot split (a user function, a source's poll) made every other coroutine "
            "of the service wait that long",
            who,
            held * 1000.0,
        )
        self.begin()  # report each hold once
