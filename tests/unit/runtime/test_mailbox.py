from __future__ import annotations

import asyncio

from flowactors.runtime.mailbox import CONTROL, Mailbox


async def test_per_channel_order_and_arrival_order_across_channels() -> None:
    mb = Mailbox(2, capacity=10)
    await mb.put(0, "a1")
    await mb.put(1, "b1")
    await mb.put(0, "a2")
    assert [mb.poll(), mb.poll(), mb.poll(), mb.poll()] == [(0, "a1"), (1, "b1"), (0, "a2"), None]


async def test_control_lane_goes_first_and_is_never_blocked() -> None:
    mb = Mailbox(1, capacity=1)
    await mb.put(0, "data")
    mb.put_control("cancel")  # does not wait although the data lane is full
    assert mb.poll() == (CONTROL, "cancel")
    assert mb.poll() == (0, "data")


async def test_full_channel_suspends_only_its_sender() -> None:
    mb = Mailbox(2, capacity=1)
    await mb.put(0, "x", size=5)
    blocked = asyncio.create_task(mb.put(0, "y", size=5))
    await asyncio.sleep(0)
    assert not blocked.done()
    # Another channel still has room: its sender does not wait at all.
    assert await asyncio.wait_for(mb.put(1, "other"), 1) == 0.0
    assert mb.queued_records == 5
    await asyncio.sleep(0.005)  # the blocked sender's wait is what put() reports
    assert mb.poll() == (0, "x")
    waited = await asyncio.wait_for(blocked, 1)
    assert waited >= 0.004
    assert mb.queued_records == 5
    assert [mb.poll(), mb.poll(), mb.poll()] == [(1, "other"), (0, "y"), None]


async def test_cancelled_sender_leaves_no_trace() -> None:
    mb = Mailbox(1, capacity=1)
    await mb.put(0, "x")
    blocked = asyncio.create_task(mb.put(0, "y"))
    await asyncio.sleep(0)
    blocked.cancel()
    await asyncio.gather(blocked, return_exceptions=True)
    assert mb.poll() == (0, "x")
    assert mb.poll() is None
    await asyncio.wait_for(mb.put(0, "z"), 1)
    assert mb.poll() == (0, "z")


async def test_take_waits_for_a_message() -> None:
    mb = Mailbox(1, capacity=1)
    taker = asyncio.create_task(mb.take())
    await asyncio.sleep(0)
    assert not taker.done()
    await mb.put(0, "late")
    assert await asyncio.wait_for(taker, 1) == (0, "late")


async def test_blocked_channel_is_held_back_until_unblocked() -> None:
    mb = Mailbox(2, capacity=4)
    await mb.put(0, "a1")
    await mb.put(1, "b1")
    mb.block(0)
    await mb.put(0, "a2")
    await mb.put(1, "b2")
    assert [mb.poll(), mb.poll(), mb.poll()] == [(1, "b1"), (1, "b2"), None]
    mb.unblock_all()
    assert [mb.poll(), mb.poll(), mb.poll()] == [(0, "a1"), (0, "a2"), None]
