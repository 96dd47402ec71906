"""The watermark valve: one watermark out of several inputs.

A task combines the watermarks of its input channels, a source the watermarks
of its splits (Kafka partitions). Both follow the same rules, kept here once:

- the combined watermark is the minimum over the inputs that are not idle;
- it only moves forward (an input that falls behind holds nothing back that
  was already let through);
- when every input is idle the output is idle, and it becomes active again
  as soon as one input is.

>>> valve = WatermarkValve([0, 1])
>>> valve.set_watermark(0, 10)
>>> valve.advance()
(None, None)
>>> valve.set_watermark(1, 5)
>>> valve.advance()
(5, None)
>>> valve.set_idle(1, True)
>>> valve.advance()
(10, None)
>>> valve.set_idle(0, True)
>>> valve.advance()
(None, True)
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from flowactors.time import MIN_WATERMARK

__all__ = ["WatermarkValve"]


class WatermarkValve:
    """Per input: its newest watermark and whether it is idle; see the module docstring."""

    __slots__ = ("_idle", "_watermarks", "idle", "watermark")

    def __init__(self, inputs: Iterable[Hashable] = ()) -> None:
        self._watermarks: dict[Hashable, int] = dict.fromkeys(inputs, MIN_WATERMARK)
        self._idle: dict[Hashable, bool] = dict.fromkeys(self._watermarks, False)
        #: The combined watermark let through so far.
        self.watermark = MIN_WATERMARK
        #: Whether the output is idle (every input is).
        self.idle = False

    def add_input(self, key: Hashable) -> None:
        """A new input (a split discovered later); it starts active, at no watermark."""
        if key not in self._watermarks:
            self._watermarks[key] = MIN_WATERMARK
            self._idle[key] = False

    def set_watermark(self, key: Hashable, timestamp: int) -> None:
        """Input ``key`` reached ``timestamp`` (and is active)."""
        if timestamp > self._watermarks[key]:
            self._watermarks[key] = timestamp
        self._idle[key] = False

    def set_idle(self, key: Hashable, idle: bool) -> None:
        self._idle[key] = idle

    def advance(self) -> tuple[int | None, bool | None]:
        """``(new combined watermark or None, new idle status or None)``: what to emit
        (the status first) after inputs changed."""
        active = [w for key, w in self._watermarks.items() if not self._idle[key]]
        if not active:
            if self.idle:
                return None, None
            self.idle = True
            return None, True
        status: bool | None = None
        if self.idle:
            self.idle = False
            status = False
        low = min(active)
        if low > self.watermark:
            self.watermark = low
            return low, status
        return None, status
