"""The context of window functions, triggers and evictors: the current key and window.

One :class:`WindowContext` per window operator subtask serves as the
``context`` of ``ProcessWindowFunction.process``, as the trigger context
(timers and per-window trigger state, scoped to the window being handled) and
as the evictor context. The operator points it at a window by setting
``operator.window`` before each call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowactors.state.descriptors import StateDescriptor

_MISSING: Any = object()

if TYPE_CHECKING:
    from flowactors.runtime.window_operator import WindowOperator


class _WindowStore:
    """``window_state()`` / ``global_state()`` of a ProcessWindowFunction's context."""

    def __init__(self, operator: WindowOperator, namespaced: bool) -> None:
        self._operator = operator
        self._namespaced = namespaced

    def _get(self, descriptor: StateDescriptor[Any]) -> Any:
        handle = self._operator.backend.get_state(descriptor, namespaced=self._namespaced)
        if self._namespaced:
            handle.set_namespace(self._operator.window)
        return handle

    get_state = _get
    get_list_state = _get
    get_map_state = _get
    get_reducing_state = _get
    get_aggregating_state = _get


class WindowContext:
    """The ``context`` of ``ProcessWindowFunction.process`` and the trigger context."""

    def __init__(self, operator: WindowOperator) -> None:
        self._operator = operator
        self._window_state = _WindowStore(operator, namespaced=True)
        self._global_state = _WindowStore(operator, namespaced=False)

    # ProcessWindowFunction.Context
    @property
    def window(self) -> Any:
        return self._operator.window

    def current_watermark(self) -> int:
        return self._operator.timers.current_watermark

    def current_processing_time(self) -> int:
        return self._operator.ctx.processing_time.now()

    def window_state(self) -> _WindowStore:
        """Keyed state scoped to this key and this window (cleared with ``clear``)."""
        return self._window_state

    def global_state(self) -> _WindowStore:
        """Keyed state of this key across all its windows."""
        return self._global_state

    def output(self, tag: Any, value: Any) -> None:
        self._operator.side.add(tag, value, self._operator.window.max_timestamp())

    # Trigger context
    def _timer_key(self) -> tuple[Any, Any]:
        return (self._operator.backend.current_key, self._operator.window)

    def register_event_time_timer(self, timestamp: int) -> None:
        self._operator.timers.register_event_time_timer(self._timer_key(), timestamp)

    def delete_event_time_timer(self, timestamp: int) -> None:
        self._operator.timers.delete_event_time_timer(self._timer_key(), timestamp)

    def register_processing_time_timer(self, timestamp: int) -> None:
        self._operator.timers.register_processing_time_timer(self._timer_key(), timestamp)

    def delete_processing_time_timer(self, timestamp: int) -> None:
        self._operator.timers.delete_processing_time_timer(self._timer_key(), timestamp)

    def get_current_watermark(self) -> int:
        return self._operator.timers.current_watermark

    def get_current_processing_time(self) -> int:
        return self._operator.ctx.processing_time.now()

    def get_partitioned_state(self, descriptor: StateDescriptor[Any]) -> Any:
        handle = self._operator.backend.get_state(descriptor, namespaced=True)
        handle.set_namespace(self._operator.window)
        return handle

    def merge_partitioned_state(self, descriptor: StateDescriptor[Any]) -> None:
        """In ``Trigger.on_merge``: fold this state of the windows being merged into the
        new window's (reducing and aggregating state combine, lists concatenate)."""
        operator = self._operator
        backend = operator.backend
        backend.get_state(descriptor, namespaced=True)  # declares it
        table = backend.table("ns:" + descriptor.name, namespaced=True)
        key = backend.current_key
        target = (key, operator.window)
        for source in operator.merging:
            value = table.pop((key, source), _MISSING)
            if value is _MISSING:
                continue
            present = table.get(target, _MISSING)
            table[target] = value if present is _MISSING else _combine(descriptor, present, value)


def _combine(descriptor: StateDescriptor[Any], a: Any, b: Any) -> Any:
    reduce_fn = getattr(descriptor, "reduce_fn", None)
    if reduce_fn is not None:
        return reduce_fn(a, b)
    aggregate = getattr(descriptor, "aggregate_function", None)
    if aggregate is not None:
        return aggregate.merge(a, b)
    if descriptor.kind == "list":
        return [*a, *b]
    if descriptor.kind == "map":
        return {**a, **b}
    return b
