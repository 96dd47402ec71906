"""What travels between actors: record batches and in-band control elements.

A data message is a :class:`Batch`: a list of values with their event
timestamps in a parallel list (or ``None`` when the records carry none) and,
on hash-partitioned edges, the keys the sender already computed. There is no
wrapper object per record.

Watermarks, end-of-input and checkpoint barriers
(:class:`flowactors.checkpoint.barrier.CheckpointBarrier`) travel in-band on the
same channels, after the records sent before them.
"""

from __future__ import annotations

from typing import Any, Final

from flowactors.time import MAX_WATERMARK, MIN_WATERMARK

__all__ = [
    "END_OF_INPUT",
    "MAX_WATERMARK",
    "MIN_WATERMARK",
    "STOP",
    "Batch",
    "EndOfInput",
    "Watermark",
    "WatermarkStatus",
]


class Batch:
    """Records sent together: ``values[i]`` has event time ``timestamps[i]``."""

    __slots__ = ("keys", "timestamps", "values")

    def __init__(
        self,
        values: list[Any],
        timestamps: list[int | None] | None,
        keys: list[Any] | None = None,
    ) -> None:
        self.values = values
        self.timestamps = timestamps
        self.keys = keys

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"Batch({len(self.values)} records)"


class Watermark:
    """Event time has reached ``timestamp``: no record with a smaller one should follow."""

    __slots__ = ("timestamp",)

    def __init__(self, timestamp: int) -> None:
        self.timestamp = timestamp

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Watermark) and other.timestamp == self.timestamp

    def __hash__(self) -> int:
        return hash(self.timestamp)

    def __repr__(self) -> str:
        return f"Watermark({self.timestamp})"


class WatermarkStatus:
    """A channel became idle (``idle=True``) or active again; idle channels hold no time back."""

    __slots__ = ("idle",)

    def __init__(self, idle: bool) -> None:
        self.idle = idle

    def __repr__(self) -> str:
        return f"WatermarkStatus(idle={self.idle})"


class EndOfInput:
    """The sender on this channel will send nothing more.

    ``drain=False`` marks a stop (stop-with-savepoint): the receivers end too,
    without advancing event time or finishing their operators, so that what
    is pending stays in the savepoint instead of being emitted.
    """

    __slots__ = ("drain",)

    def __init__(self, drain: bool = True) -> None:
        self.drain = drain

    def __repr__(self) -> str:
        return "EndOfInput" if self.drain else "EndOfInput(stop)"


END_OF_INPUT: Final = EndOfInput()
STOP: Final = EndOfInput(drain=False)
