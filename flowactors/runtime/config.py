"""Execution settings of a job: ``ExecutionConfig``, immutable and validated.

>>> config = ExecutionConfig(batch_size=256, buffer_timeout_ms=20)
>>> config.replace(batch_size=512).batch_size
512
>>> config.replace(batch_size=0)
Traceback (most recent call last):
    ...
flowactors.InvalidGraphError: batch_size must be an int >= 1, got 0
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from flowactors.errors import InvalidGraphError
from flowactors.time.clock import Clock

__all__ = ["ExecutionConfig"]


@dataclass(frozen=True, kw_only=True)
class ExecutionConfig:
    """Knobs of the runtime. The defaults suit throughput with a 100 ms latency bound.

    - ``batch_size``: records per message between actors (and per source read).
    - ``mailbox_capacity``: messages one input channel holds before its sender
      waits; records in flight per channel are at most
      ``mailbox_capacity * batch_size``.
    - ``buffer_timeout_ms``: the longest a record waits in a half-full output
      buffer while its task is busy (an idle task flushes at once).
    - ``auto_watermark_interval_ms``: how often periodic watermarks are emitted
      (0 turns periodic watermarks off).
    - ``chaining``: run chained operators in one actor (off only to debug).
    - ``state_backend``: where keyed state lives; ``None`` keeps it in memory, a
      ``flowactors.state.RocksDBStateBackend`` keeps it on disk.
    - ``clock``: where processing time comes from; ``None`` is the wall clock,
      ``flowactors.testing.ManualClock`` lets a test move it.
    - ``time_slice_ms``: the longest the runtime keeps the event loop before it
      lets the embedding service's coroutines (and other jobs) run: tasks,
      timer and window firing, snapshots and restores yield after this long.
    - ``report_loop_hold_ms``: a task that holds the loop longer than this in one
      go (user code the runtime cannot slice) is logged and counted
      (``loopHolds``, ``longestLoopHoldMs``).
    - ``freeze_long_lived_objects``: while the job runs, objects that survived a
      full garbage collection are frozen (``gc.freeze``), so later full
      collections do not pause the loop in proportion to the state (see
      ``flowactors/runtime/gc_policy.py``).

    Change a copy with :meth:`replace` (a misspelt setting is a ``TypeError``);
    ``env.get_config()`` offers Flink's setters over the environment's config.
    """

    batch_size: int = 1024
    mailbox_capacity: int = 4
    buffer_timeout_ms: float = 100.0
    auto_watermark_interval_ms: int = 200
    chaining: bool = True
    state_backend: Any = None
    clock: Clock | None = None
    time_slice_ms: float = 5.0
    report_loop_hold_ms: float = 50.0
    freeze_long_lived_objects: bool = True

    def __post_init__(self) -> None:
        for name in ("time_slice_ms", "report_loop_hold_ms"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise InvalidGraphError(f"{name} must be a number > 0, got {value!r}")
        _positive("batch_size", self.batch_size)
        _positive("mailbox_capacity", self.mailbox_capacity)
        if not isinstance(self.buffer_timeout_ms, int | float) or self.buffer_timeout_ms < 0:
            raise InvalidGraphError(f"buffer_timeout must be >= 0 ms, got {self.buffer_timeout_ms}")
        interval = self.auto_watermark_interval_ms
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 0:
            raise InvalidGraphError(f"auto_watermark_interval must be >= 0 ms, got {interval!r}")
        if not isinstance(self.chaining, bool):
            raise InvalidGraphError(f"chaining must be True or False, got {self.chaining!r}")

    def replace(self, **changes: Any) -> ExecutionConfig:
        """A copy with ``changes`` (validated like the constructor)."""
        return dataclasses.replace(self, **changes)

    def get_auto_watermark_interval(self) -> int:
        return self.auto_watermark_interval_ms


def _positive(name: str, n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InvalidGraphError(f"{name} must be an int >= 1, got {n!r}")
