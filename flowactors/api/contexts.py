"""What user functions are handed: the contexts (``ctx``) and the collector (``out``).

These are Protocols: the runtime's own objects satisfy them, and a test may pass
any object that does. Annotate with them and mypy checks what a function does
with its context::

    class Alert(KeyedProcessFunction[str, Ride, str]):
        def process_element(self, ride: Ride, ctx: KeyedContext[str], out: Collector[str]) -> None:
            ctx.timer_service().register_event_time_timer(ride.time + 60_000)

        def on_timer(self, timestamp: int, ctx: OnTimerContext[str], out: Collector[str]) -> None:
            out.collect(ctx.get_current_key())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from flowactors.runtime.timers import TimeDomain

if TYPE_CHECKING:
    from flowactors.api.output_tag import OutputTag
    from flowactors.state import (
        AggregatingState,
        AggregatingStateDescriptor,
        ListState,
        ListStateDescriptor,
        MapState,
        MapStateDescriptor,
        ReducingState,
        ReducingStateDescriptor,
        ValueState,
        ValueStateDescriptor,
    )

__all__ = [
    "Collector",
    "Context",
    "JoinContext",
    "KeyedContext",
    "KeyedStateStore",
    "OnTimerContext",
    "ProcessWindowContext",
    "TimerService",
]

T = TypeVar("T")
V = TypeVar("V")
T_contra = TypeVar("T_contra", contravariant=True)
K_co = TypeVar("K_co", covariant=True)
W_co = TypeVar("W_co", covariant=True)


class Collector(Protocol[T_contra]):
    """``out``: emits records; each carries the timestamp of the record (or timer) that
    produced it."""

    def collect(self, value: T_contra) -> None: ...


class TimerService(Protocol):
    """``ctx.timer_service()``: the time, and timers of the current key.

    Registering a timer needs a keyed stream; on other streams it raises ``TypeError``.
    """

    def current_processing_time(self) -> int: ...

    def current_watermark(self) -> int: ...

    def register_event_time_timer(self, timestamp: int) -> None: ...

    def register_processing_time_timer(self, timestamp: int) -> None: ...

    def delete_event_time_timer(self, timestamp: int) -> None: ...

    def delete_processing_time_timer(self, timestamp: int) -> None: ...


class Context(Protocol):
    """``ctx`` of ``ProcessFunction.process_element`` and of the co-process functions."""

    def timestamp(self) -> int | None:
        """Event time of the current record, or ``None`` if it has none."""
        ...

    def output(self, tag: OutputTag[V], value: V) -> None:
        """Send ``value`` to the side output ``tag``."""
        ...

    def current_watermark(self) -> int: ...

    def timer_service(self) -> TimerService: ...


class KeyedContext(Context, Protocol[K_co]):
    """``ctx`` of keyed process functions: the current key, and timers for it."""

    def get_current_key(self) -> K_co: ...


class OnTimerContext(KeyedContext[K_co], Protocol[K_co]):
    """``ctx`` of ``on_timer``: also which kind of timer fired."""

    def time_domain(self) -> TimeDomain | None: ...


class JoinContext(Protocol):
    """``ctx`` of ``ProcessJoinFunction.process_element``."""

    def left_timestamp(self) -> int: ...

    def right_timestamp(self) -> int: ...

    def timestamp(self) -> int:
        """The pair's timestamp: the larger of the two."""
        ...

    def output(self, tag: OutputTag[V], value: V) -> None: ...


class KeyedStateStore(Protocol):
    """Keyed state by descriptor (``context.window_state()``, ``context.global_state()``)."""

    def get_state(self, descriptor: ValueStateDescriptor[T]) -> ValueState[T]: ...

    def get_list_state(self, descriptor: ListStateDescriptor[T]) -> ListState[T]: ...

    def get_map_state(self, descriptor: MapStateDescriptor[Any]) -> MapState[Any, Any]: ...

    def get_reducing_state(self, descriptor: ReducingStateDescriptor[T]) -> ReducingState[T]: ...

    def get_aggregating_state(
        self, descriptor: AggregatingStateDescriptor[Any]
    ) -> AggregatingState[Any]: ...


class ProcessWindowContext(Protocol[W_co]):
    """``context`` of ``ProcessWindowFunction.process``."""

    @property
    def window(self) -> W_co:
        """The window that fired (``.start``, ``.end``, ``.max_timestamp()``)."""
        ...

    def current_watermark(self) -> int: ...

    def current_processing_time(self) -> int: ...

    def window_state(self) -> KeyedStateStore:
        """State of this key and this window (cleared with the window)."""
        ...

    def global_state(self) -> KeyedStateStore:
        """State of this key across its windows."""
        ...

    def output(self, tag: OutputTag[V], value: V) -> None: ...
