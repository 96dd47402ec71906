"""Flink's setters over an environment's immutable configuration.

``ExecutionConfig`` and ``CheckpointConfig`` are frozen and validated; a program
chooses them with keyword arguments (``StreamExecutionEnvironment(config=...)``,
``env.enable_checkpointing(interval, storage=..., timeout=...)``). Programs
written in Flink's style call ``env.get_config().set_batch_size(n)`` and
``env.get_checkpoint_config().set_checkpoint_timeout(t)``: those return the
views below, whose setters validate and replace the environment's config.

>>> from flowactors import StreamExecutionEnvironment
>>> env = StreamExecutionEnvironment()
>>> env.get_config().set_batch_size(64).set_auto_watermark_interval(0).batch_size
64
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Generic, Self, TypeVar

from flowactors.checkpoint.config import CheckpointConfig
from flowactors.runtime.config import ExecutionConfig
from flowactors.time import to_millis

__all__ = ["CheckpointConfigView", "ExecutionConfigView"]

C = TypeVar("C")


class _View(Generic[C]):
    def __init__(self, get: Callable[[], C], put: Callable[[C], None]) -> None:
        self._get = get
        self._put = put

    @property
    def config(self) -> C:
        """The configuration as it is now (immutable)."""
        return self._get()

    def _set(self, **changes: Any) -> Self:
        self._put(dataclasses.replace(self._get(), **changes))  # type: ignore[type-var]
        return self

    def __repr__(self) -> str:
        return repr(self._get())


class ExecutionConfigView(_View[ExecutionConfig]):
    """``env.get_config()``: reads and sets the environment's :class:`ExecutionConfig`."""

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    @property
    def mailbox_capacity(self) -> int:
        return self.config.mailbox_capacity

    @property
    def buffer_timeout_ms(self) -> float:
        return self.config.buffer_timeout_ms

    @property
    def auto_watermark_interval_ms(self) -> int:
        return self.config.auto_watermark_interval_ms

    def set_batch_size(self, n: int) -> Self:
        return self._set(batch_size=n)

    def set_mailbox_capacity(self, n: int) -> Self:
        return self._set(mailbox_capacity=n)

    def set_buffer_timeout(self, timeout: timedelta | float) -> Self:
        ms = timeout.total_seconds() * 1000 if isinstance(timeout, timedelta) else timeout
        return self._set(buffer_timeout_ms=ms)

    def set_auto_watermark_interval(self, interval: timedelta | int) -> Self:
        return self._set(auto_watermark_interval_ms=to_millis(interval))

    def get_auto_watermark_interval(self) -> int:
        return self.config.auto_watermark_interval_ms


class CheckpointConfigView(_View[CheckpointConfig]):
    """``env.get_checkpoint_config()``: Flink's setters over :class:`CheckpointConfig`."""

    def set_checkpoint_interval(self, interval: timedelta | int) -> Self:
        return self._set(interval_ms=to_millis(interval))

    def set_checkpoint_timeout(self, timeout: timedelta | int) -> Self:
        return self._set(timeout_ms=to_millis(timeout))

    def set_min_pause_between_checkpoints(self, pause: timedelta | int) -> Self:
        return self._set(min_pause_ms=to_millis(pause))

    def set_max_concurrent_checkpoints(self, n: int) -> Self:
        return self._set(max_concurrent=n)

    def set_tolerable_checkpoint_failure_number(self, n: int) -> Self:
        return self._set(tolerable_failures=n)

    def set_num_retained_checkpoints(self, n: int) -> Self:
        return self._set(retained=n)

    def get_checkpoint_interval(self) -> int:
        return self.config.interval_ms

    def get_checkpoint_timeout(self) -> int:
        return self.config.timeout_ms
