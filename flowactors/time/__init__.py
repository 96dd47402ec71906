"""Event time and processing time: watermark strategies and clocks."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

#: Timestamp of the watermark that ends event time (Flink's ``Long.MAX_VALUE``).
MAX_WATERMARK: Final = 2**63 - 1
#: Watermark before any has been seen (Flink's ``Long.MIN_VALUE``).
MIN_WATERMARK: Final = -(2**63)


def to_millis(duration: timedelta | int | float) -> int:
    """Milliseconds of a ``timedelta`` (or a number that already is milliseconds)."""
    if isinstance(duration, timedelta):
        return int(duration.total_seconds() * 1000)
    return int(duration)
