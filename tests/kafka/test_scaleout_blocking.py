"""A user function that blocks the event loop past the group's session timeout.

Heartbeats share the loop with the job, so a worker whose map sleeps (``time.sleep``)
for longer than the session timeout is removed from the group: its tasks move, its
transactions are fenced. The output stays exact, the worker says in its log what
happened and what to do about it, and it rejoins.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from flowactors_kafka._scaleout._stall import LoopStallWatch

from tests.kafka._kafka import create_topic, read_topic, unique
from tests.kafka._scaleout import (
    check_output,
    owned,
    rejoined,
    start_worker,
    stop_workers,
    trickle,
    worker_processes,
)

pytestmark = pytest.mark.kafka

STALL_WARNING = "the event loop was blocked for"


def test_stalls_from_half_the_session_timeout_are_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = LoopStallWatch(session_timeout_s=6.0)
    with caplog.at_level(logging.WARNING, logger="flowactors_kafka.scaleout"):
        watch.observe(0.004)
        watch.observe(2.9)
        assert not caplog.records and watch.stalls == 0
        watch.observe(3.5)
        watch.observe(7.25)
    assert watch.stalls == 2 and watch.longest_stall_s == 7.25
    close, lost = (r.getMessage() for r in caplog.records)
    assert close.startswith("the event loop was blocked for 3.5 s, more than half")
    assert "7.2 s, longer than the group's session timeout (6.0 s)" in lost
    assert "move blocking work off the loop" in lost


async def test_the_watch_measures_a_real_stall() -> None:
    watch = LoopStallWatch(session_timeout_s=0.2, interval_s=0.01)
    ticking = asyncio.create_task(watch.run(), name="flowactors:test:stall-watch")
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # noqa: ASYNC251 - the point of the test
        await asyncio.sleep(0.05)
    finally:
        ticking.cancel()
        await asyncio.gather(ticking, return_exceptions=True)
    assert watch.stalls == 1 and 0.25 < watch.longest_stall_s < 1.0


@worker_processes
async def test_a_worker_blocked_past_the_session_timeout_warns_loses_its_tasks_and_rejoins(
    bootstrap: str, tmp_path: Path
) -> None:
    src = await create_topic(bootstrap, unique("so-in"), 4)
    out = await create_topic(bootstrap, unique("so-out"), 4)
    app = unique("so-app")
    # worker0 blocks its loop for 9 s at its first record (session timeout 6 s)
    workers = [
        start_worker(bootstrap, app, src, out, tmp_path / "worker0.log", block_s=9.0),
        start_worker(bootstrap, app, src, out, tmp_path / "worker1.log"),
    ]
    try:
        deadline = time.monotonic() + 60  # both in the group, worker0 owning tasks
        while not (owned(tmp_path / "worker0.log") and owned(tmp_path / "worker1.log")):
            assert time.monotonic() < deadline, "the two workers never shared the tasks"
            await asyncio.sleep(0.1)
        total = await trickle(bootstrap, src, 16, {})
        check_output(
            await read_topic(bootstrap, out, expected=total, timeout=90, settle=3.0), total
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not rejoined(tmp_path / "worker0.log"):
            await asyncio.sleep(0.5)
    finally:
        codes, logs = await asyncio.to_thread(stop_workers, workers, tmp_path)
    assert codes == [0, 0], logs
    blocked = (tmp_path / "worker0.log").read_text()
    assert STALL_WARNING in blocked and "longer than the group's session timeout" in blocked
    assert rejoined(tmp_path / "worker0.log"), logs  # fenced, then owning tasks again
    assert STALL_WARNING not in (tmp_path / "worker1.log").read_text()
