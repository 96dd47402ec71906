"""State descriptors (what a function asks for) and time-to-live settings."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from flowactors.time import to_millis

T = TypeVar("T")
ACC = TypeVar("ACC")


class UpdateType(enum.Enum):
    """When the time-to-live of a state entry starts again."""

    ON_CREATE_AND_WRITE = "OnCreateAndWrite"
    ON_READ_AND_WRITE = "OnReadAndWrite"


@dataclass(frozen=True)
class StateTtlConfig:
    """Entries expire ``ttl`` after they were last written (or read, with ``ON_READ_AND_WRITE``).

    Expired values are never returned, and their memory is reclaimed: on
    access, and by a sweep of the whole state that runs after as many accesses
    as the state has entries (amortised constant cost per access). Time is
    processing time, as in Flink.

    >>> from datetime import timedelta
    >>> builder = StateTtlConfig.new_builder(timedelta(minutes=5))
    >>> builder.update_ttl_on_read_and_write().build().ttl_ms
    300000
    """

    ttl_ms: int
    update_type: UpdateType = UpdateType.ON_CREATE_AND_WRITE

    def __post_init__(self) -> None:
        if self.ttl_ms <= 0:
            raise ValueError(f"state TTL must be positive, got {self.ttl_ms} ms")

    @staticmethod
    def new_builder(ttl: timedelta | int) -> _TtlBuilder:
        return _TtlBuilder(to_millis(ttl))


class _TtlBuilder:
    def __init__(self, ttl_ms: int) -> None:
        self._ttl_ms = ttl_ms
        self._update = UpdateType.ON_CREATE_AND_WRITE

    def update_ttl_on_create_and_write(self) -> _TtlBuilder:
        self._update = UpdateType.ON_CREATE_AND_WRITE
        return self

    def update_ttl_on_read_and_write(self) -> _TtlBuilder:
        self._update = UpdateType.ON_READ_AND_WRITE
        return self

    def set_update_type(self, update_type: UpdateType) -> _TtlBuilder:
        self._update = update_type
        return self

    def build(self) -> StateTtlConfig:
        return StateTtlConfig(self._ttl_ms, self._update)


class StateDescriptor(Generic[T]):
    """Names a piece of keyed state. Equal names on one operator mean the same state."""

    kind = "abstract"

    def __init__(self, name: str) -> None:
        if not name:
            raise ValueError("state needs a non-empty name")
        self.name = name
        self.ttl_config: StateTtlConfig | None = None

    def enable_time_to_live(self, ttl_config: StateTtlConfig) -> None:
        self.ttl_config = ttl_config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class ValueStateDescriptor(StateDescriptor[T]):
    """One value per key; ``default`` is returned while none is set."""

    kind = "value"

    def __init__(self, name: str, default: T | None = None) -> None:
        super().__init__(name)
        self.default = default


class ListStateDescriptor(StateDescriptor[T]):
    kind = "list"


class MapStateDescriptor(StateDescriptor[T]):
    kind = "map"


class ReducingStateDescriptor(StateDescriptor[T]):
    """One value per key, combined with ``reduce_fn(old, new)`` on ``add``."""

    kind = "reducing"

    def __init__(self, name: str, reduce_fn: Callable[[T, T], T] | Any) -> None:
        super().__init__(name)
        self.reduce_fn: Callable[[T, T], T] = getattr(reduce_fn, "reduce", reduce_fn)


class AggregatingStateDescriptor(StateDescriptor[T]):
    """An accumulator per key, fed by an ``AggregateFunction`` on ``add``."""

    kind = "aggregating"

    def __init__(self, name: str, aggregate_function: Any) -> None:
        super().__init__(name)
        self.aggregate_function = aggregate_function
