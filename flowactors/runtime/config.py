"""Execution settings of a job (``env.get_config()``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowactors.errors import InvalidGraphError


@dataclass
class ExecutionConfig:
    """Knobs of the runtime. The defaults suit throughput with a 100 ms latency bound.

    - ``batch_size``: records per message between actors (and per source read).
    - ``mailbox_capacity``: messages one input channel holds before its sender
      waits; records in flight per channel are at most
      ``mailbox_capacity * batch_size``.
    - ``buffer_timeout_ms``: the longest a record waits in a half-full output
      buffer while its task is busy (an idle task flushes at once).
    - ``auto_watermark_interval_ms``: how often periodic watermarks are emitted.
    """

    batch_size: int = 1024
    mailbox_capacity: int = 4
    buffer_timeout_ms: float = 100.0
    auto_watermark_interval_ms: int = 200
    chaining: bool = True
    #: Where keyed state lives: ``None`` keeps it in memory; a
    #: ``flowactors.state.RocksDBStateBackend`` keeps it on disk.
    state_backend: Any = None

    def set_batch_size(self, n: int) -> ExecutionConfig:
        _positive("batch_size", n)
        self.batch_size = n
        return self

    def set_mailbox_capacity(self, n: int) -> ExecutionConfig:
        _positive("mailbox_capacity", n)
        self.mailbox_capacity = n
        return self

    def set_buffer_timeout(self, ms: float) -> ExecutionConfig:
        if ms < 0:
            raise InvalidGraphError(f"buffer_timeout must be >= 0 ms, got {ms}")
        self.buffer_timeout_ms = ms
        return self

    def set_auto_watermark_interval(self, ms: int) -> ExecutionConfig:
        if ms < 0:
            raise InvalidGraphError(f"auto_watermark_interval must be >= 0 ms, got {ms}")
        self.auto_watermark_interval_ms = ms
        return self

    def get_auto_watermark_interval(self) -> int:
        return self.auto_watermark_interval_ms


def _positive(name: str, n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InvalidGraphError(f"{name} must be an int >= 1, got {n!r}")
