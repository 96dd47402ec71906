"""Barrier alignment: when a task with several input channels may snapshot.

After barrier *n* arrives on a channel, that channel's later messages belong to
the next checkpoint: the channel is blocked (its messages stay queued in the
mailbox and keep counting against its capacity, so backpressure holds) until
barrier *n* has arrived on every channel that has not ended. Then all channels
are unblocked and the task snapshots. A newer barrier overtaking an alignment
that can no longer finish (its checkpoint was aborted upstream) abandons the
old alignment; an older barrier arriving late is ignored.
"""

from __future__ import annotations

from typing import Protocol

from flowactors.checkpoint.barrier import CheckpointBarrier

__all__ = ["BarrierAligner", "Channels"]


class Channels(Protocol):
    """What alignment needs of a mailbox."""

    @property
    def num_channels(self) -> int: ...

    def block(self, channel: int) -> None: ...

    def unblock_all(self) -> None: ...


class BarrierAligner:
    """Tracks which channels delivered the barrier being aligned, and which have ended."""

    def __init__(self, channels: Channels) -> None:
        self._channels = channels
        self._ended = [False] * channels.num_channels
        self._barrier: CheckpointBarrier | None = None
        self._arrived: set[int] = set()

    @property
    def aligning(self) -> int | None:
        """The checkpoint being aligned, if any."""
        return None if self._barrier is None else self._barrier.checkpoint_id

    def on_barrier(self, channel: int, barrier: CheckpointBarrier) -> CheckpointBarrier | None:
        """``barrier`` arrived on ``channel``; returns it once every open channel has one."""
        current = self._barrier
        if current is None or barrier.checkpoint_id > current.checkpoint_id:
            if current is not None:
                self._channels.unblock_all()  # give up an alignment that cannot finish
            self._barrier = barrier
            self._arrived = set()
        elif barrier.checkpoint_id < current.checkpoint_id:
            return None
        self._arrived.add(channel)
        if self._channels.num_channels > 1:
            self._channels.block(channel)
        return self._complete()

    def on_end_of_input(self, channel: int) -> CheckpointBarrier | None:
        """``channel`` ended; an ended channel counts as aligned."""
        self._ended[channel] = True
        return None if self._barrier is None else self._complete()

    def _complete(self) -> CheckpointBarrier | None:
        ended, arrived = self._ended, self._arrived
        if any(not ended[c] and c not in arrived for c in range(len(ended))):
            return None
        barrier, self._barrier = self._barrier, None
        self._channels.unblock_all()
        return barrier
