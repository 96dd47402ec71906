"""The checkpoint barrier: the in-band marker that cuts a stream into before and after a snapshot.

A source emits barrier *n* on every output channel after the records that belong to
checkpoint *n*; a task that has seen it on all its input channels snapshots its
operators and passes it on (Chandy-Lamport, aligned).
"""

from __future__ import annotations

__all__ = ["CheckpointBarrier"]


class CheckpointBarrier:
    """Everything before this on every channel belongs to checkpoint ``checkpoint_id``."""

    __slots__ = ("checkpoint_id", "is_savepoint", "stop")

    def __init__(self, checkpoint_id: int, is_savepoint: bool = False, stop: bool = False) -> None:
        self.checkpoint_id = checkpoint_id
        self.is_savepoint = is_savepoint
        #: Stop-with-savepoint: sources end after emitting this barrier.
        self.stop = stop

    def __repr__(self) -> str:
        return f"CheckpointBarrier({self.checkpoint_id})"
