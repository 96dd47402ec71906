"""Barrier alignment, without a job: blocked channels, ended channels, overtaking barriers."""

from __future__ import annotations

from flowactors.checkpoint.barrier import CheckpointBarrier
from flowactors.runtime.alignment import BarrierAligner
from flowactors.runtime.elements import Batch
from flowactors.runtime.mailbox import Mailbox


async def drain(mailbox: Mailbox) -> list[tuple[int, object]]:
    taken = []
    while (item := mailbox.poll()) is not None:
        taken.append(item)
    return taken


async def test_aligned_once_every_channel_delivered_the_barrier() -> None:
    mailbox = Mailbox(3, capacity=8)
    aligner = BarrierAligner(mailbox)
    one = CheckpointBarrier(1)
    assert aligner.on_barrier(0, one) is None
    assert aligner.aligning == 1
    # Data behind the barrier on channel 0 waits; the other channels go on.
    await mailbox.put(0, Batch(["after"], None), 1)
    await mailbox.put(1, Batch(["before"], None), 1)
    assert [c for c, _ in await drain(mailbox)] == [1]
    assert aligner.on_barrier(2, one) is None
    assert aligner.on_barrier(1, one) is one
    assert aligner.aligning is None
    assert [c for c, _ in await drain(mailbox)] == [0]  # unblocked


async def test_an_ended_channel_counts_as_aligned() -> None:
    mailbox = Mailbox(2, capacity=8)
    aligner = BarrierAligner(mailbox)
    barrier = CheckpointBarrier(4)
    assert aligner.on_barrier(1, barrier) is None
    assert aligner.on_end_of_input(0) is barrier
    later = CheckpointBarrier(5)
    assert aligner.on_barrier(1, later) is later  # channel 0 stays ended
    assert aligner.on_end_of_input(1) is None  # nothing being aligned


async def test_a_newer_barrier_abandons_an_alignment_that_cannot_finish() -> None:
    mailbox = Mailbox(2, capacity=8)
    aligner = BarrierAligner(mailbox)
    assert aligner.on_barrier(0, CheckpointBarrier(1)) is None
    newer = CheckpointBarrier(2)
    assert aligner.on_barrier(0, newer) is None
    assert aligner.on_barrier(1, CheckpointBarrier(1)) is None  # late: ignored
    assert aligner.aligning == 2
    assert aligner.on_barrier(1, newer) is newer


async def test_a_single_channel_is_never_blocked() -> None:
    mailbox = Mailbox(1, capacity=8)
    aligner = BarrierAligner(mailbox)
    barrier = CheckpointBarrier(1)
    assert aligner.on_barrier(0, barrier) is barrier
    await mailbox.put(0, Batch([1], None), 1)
    assert len(await drain(mailbox)) == 1
