"""Keyed state kept in memory: one dict per state, keyed by the current key.

The operator sets :attr:`HeapKeyedStateBackend.current_key` before it calls
user code; every state handle reads and writes the entry of that key, so a
state access is one dict lookup. State that belongs to a *namespace* (a window)
is keyed by ``(key, namespace)``.

With a TTL, entries are stored as ``(value, last_update_ms)``; an expired entry
is never returned and is deleted on access, and a sweep of the whole table runs
after as many accesses as the table has entries (amortised O(1) per access),
so memory of keys that are never touched again is reclaimed as well.

List and map state expire as a whole (from their last update); Flink expires
their elements one by one.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterator
from itertools import islice
from typing import Any, Generic, TypeVar

from flowactors.errors import StateError
from flowactors.state.changes import TrackedTable
from flowactors.state.descriptors import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateDescriptor,
    StateTtlConfig,
    UpdateType,
    ValueStateDescriptor,
)

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

_MISSING: Any = object()
#: Entries copied between two checks of the caller's time budget (about 1 ms).
_COPY_CHUNK = 16384
#: The namespace of state that is not scoped to a window.
VOID: Any = None


class StateRegistry:
    """Hands out one state handle per state name, over the backend's ``table(name)``."""

    _descriptors: dict[str, StateDescriptor[Any]]
    _handles: dict[str, Any]

    def table(self, name: str, namespaced: bool = False) -> Any:
        raise NotImplementedError

    def get_state(self, descriptor: StateDescriptor[Any], namespaced: bool = False) -> Any:
        """The handle for ``descriptor`` (the same handle for the same name)."""
        name = ("ns:" if namespaced else "") + descriptor.name
        known = self._descriptors.get(name)
        if known is not None:
            if known.kind != descriptor.kind:
                raise StateError(
                    f"state {descriptor.name!r} was first declared as {known.kind} state "
                    f"and now as {descriptor.kind} state"
                )
            return self._handles[name]
        cls = _HANDLES[descriptor.kind]
        handle = cls(self, self.table(name, namespaced), descriptor, namespaced)
        self._descriptors[name] = descriptor
        self._handles[name] = handle
        return handle


class HeapKeyedStateBackend(StateRegistry):
    """All keyed state of one operator subtask."""

    def __init__(self, key_groups: range, max_parallelism: int, clock: Callable[[], int]) -> None:
        self.key_groups = key_groups
        self.max_parallelism = max_parallelism
        self.clock = clock
        self.current_key: Any = None
        self.tables: dict[str, dict[Any, Any]] = {}
        #: Tables whose entries are keyed by ``(key, namespace)``.
        self.namespaced: set[str] = set()
        self._descriptors: dict[str, StateDescriptor[Any]] = {}
        self._handles: dict[str, Any] = {}
        #: While > 0, containers stored in state are copied before being mutated.
        self.snapshots_in_flight = 0
        #: Whether new tables record their changed keys (:mod:`flowactors.state.changes`).
        self.track_changes = False

    def table(self, name: str, namespaced: bool = False) -> dict[Any, Any]:
        """The raw dict behind a state (for built-in operators' fast paths)."""
        t = self.tables.get(name)
        if t is None:
            t = self.tables[name] = TrackedTable() if self.track_changes else {}
            if namespaced:
                self.namespaced.add(name)
        return t

    # -- snapshots -----------------------------------------------------------

    def snapshot_tables(self) -> dict[str, dict[Any, Any]]:
        """Shallow copies of every table; starts copy-on-write until
        :meth:`snapshot_released` (values mutated in place by state handles are
        copied first, so the snapshot keeps the values it saw)."""
        self.snapshots_in_flight += 1
        return {name: dict(table) for name, table in self.tables.items() if table}

    async def snapshot_tables_sliced(
        self, pause: Callable[[], Awaitable[None]]
    ) -> dict[str, dict[Any, Any]]:
        """:meth:`snapshot_tables` in chunks, awaiting ``pause()`` between them.

        The caller guarantees that nothing writes to the tables until this returns
        (the owning task is suspended inside its snapshot meanwhile)."""
        self.snapshots_in_flight += 1
        copies: dict[str, dict[Any, Any]] = {}
        for name, table in list(self.tables.items()):
            if not table:
                continue
            if len(table) <= _COPY_CHUNK:
                copies[name] = dict(table)
            else:
                copied: dict[Any, Any] = {}
                entries = iter(table.items())
                while len(copied) < len(table):
                    copied.update(islice(entries, _COPY_CHUNK))
                    await pause()
                copies[name] = copied
            await pause()
        return copies

    def snapshot_released(self) -> None:
        self.snapshots_in_flight = max(0, self.snapshots_in_flight - 1)

    def restore_table(self, name: str, entries: dict[Any, Any], namespaced: bool) -> None:
        self.table(name, namespaced).update(entries)

    def num_entries(self) -> int:
        """Entries over all states (a key with three states counts three times)."""
        return sum(len(t) for t in self.tables.values())

    def keys(self, state_name: str) -> list[Any]:
        t = self.tables.get(state_name, {})
        if state_name in self.namespaced:
            return list(dict.fromkeys(k[0] for k in t))
        return list(t)


class _State(Generic[T]):
    """What every handle shares: finding the current entry, TTL bookkeeping."""

    def __init__(
        self,
        backend: Any,
        table: Any,
        descriptor: StateDescriptor[Any],
        namespaced: bool,
    ) -> None:
        self._backend = backend
        self._table = table
        self._descriptor = descriptor
        self._namespaced = namespaced
        self._namespace: Any = VOID
        ttl: StateTtlConfig | None = descriptor.ttl_config
        self._ttl = ttl.ttl_ms if ttl is not None else None
        self._refresh_on_read = ttl is not None and ttl.update_type is UpdateType.ON_READ_AND_WRITE
        self._accesses = 0

    def set_namespace(self, namespace: Any) -> None:
        self._namespace = namespace

    def _key(self) -> Any:
        key = self._backend.current_key
        return (key, self._namespace) if self._namespaced else key

    def _read(self, k: Any) -> Any:
        if self._ttl is None:
            return self._table.get(k, _MISSING)
        entry = self._table.get(k)
        self._tick()
        if entry is None:
            return _MISSING
        value, stamp = entry
        now = self._backend.clock()
        if now - stamp >= self._ttl:
            del self._table[k]
            return _MISSING
        if self._refresh_on_read:
            self._table[k] = (value, now)
        return value

    def _write(self, k: Any, value: Any) -> None:
        if self._ttl is None:
            self._table[k] = value
        else:
            self._table[k] = (value, self._backend.clock())
            self._tick()

    def _tick(self) -> None:
        self._accesses += 1
        table = self._table
        size = len(table) if type(table) is dict else 1 << 16  # an on-disk table: no cheap len
        if self._accesses >= max(1024, size):
            self._accesses = 0
            self.sweep()

    def sweep(self) -> int:
        """Delete every expired entry; returns how many."""
        if self._ttl is None:
            return 0
        horizon = self._backend.clock() - self._ttl
        expired = [k for k, (_, stamp) in self._table.items() if stamp <= horizon]
        for k in expired:
            del self._table[k]
        return len(expired)

    def clear(self) -> None:
        self._table.pop(self._key(), None)


class ValueState(_State[T]):
    """``value()`` / ``update(v)`` / ``clear()`` for the current key."""

    def value(self) -> T | None:
        v = self._read(self._key())
        return self._descriptor.default if v is _MISSING else v  # type: ignore[attr-defined,no-any-return]

    def update(self, value: T | None) -> None:
        if value is None:
            self.clear()
        else:
            self._write(self._key(), value)


class ListState(_State[T]):
    """A list per key: ``get()`` (empty list when none), ``add``, ``add_all``, ``update``."""

    def get(self) -> list[T]:
        v = self._read(self._key())
        return [] if v is _MISSING else v

    def add(self, value: T) -> None:
        k = self._key()
        current = self._read(k)
        if current is _MISSING:
            current = []
        elif self._backend.snapshots_in_flight:
            current = list(current)
        current.append(value)
        self._write(k, current)

    def add_all(self, values: list[T]) -> None:
        k = self._key()
        current = self._read(k)
        if current is _MISSING:
            current = []
        elif self._backend.snapshots_in_flight:
            current = list(current)
        current.extend(values)
        if current:
            self._write(k, current)

    def update(self, values: list[T]) -> None:
        if values:
            self._write(self._key(), list(values))
        else:
            self.clear()


class MapState(_State[dict[K, V]], Generic[K, V]):
    """A dict per key."""

    def _map(self) -> dict[K, V]:
        v = self._read(self._key())
        return {} if v is _MISSING else v

    def get(self, key: K) -> V | None:
        return self._map().get(key)

    def put(self, key: K, value: V) -> None:
        k = self._key()
        current = self._read(k)
        if current is _MISSING:
            current = {}
        elif self._backend.snapshots_in_flight:
            current = dict(current)
        current[key] = value
        self._write(k, current)

    def put_all(self, entries: dict[K, V]) -> None:
        for key, value in entries.items():
            self.put(key, value)

    def contains(self, key: K) -> bool:
        return key in self._map()

    def remove(self, key: K) -> None:
        k = self._key()
        current = self._read(k)
        if current is _MISSING:
            return
        if self._backend.snapshots_in_flight:
            current = dict(current)
        current.pop(key, None)
        if current:
            self._write(k, current)
        else:
            self._table.pop(k, None)

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(list(self._map().items()))

    def keys(self) -> Iterator[K]:
        return iter(list(self._map()))

    def values(self) -> Iterator[V]:
        return iter(list(self._map().values()))

    def is_empty(self) -> bool:
        return not self._map()


class ReducingState(_State[T]):
    """``add(v)`` combines with the current value through the descriptor's reduce function."""

    def get(self) -> T | None:
        v = self._read(self._key())
        return None if v is _MISSING else v

    def add(self, value: T) -> None:
        k = self._key()
        current = self._read(k)
        reduce_fn = self._descriptor.reduce_fn  # type: ignore[attr-defined]
        if current is not _MISSING and self._backend.snapshots_in_flight:
            current = copy.copy(current)  # in case the function mutates it in place
        self._write(k, value if current is _MISSING else reduce_fn(current, value))


class AggregatingState(_State[T]):
    """``add(v)`` feeds the accumulator; ``get()`` is the function's result (None when empty)."""

    def get(self) -> Any:
        acc = self._read(self._key())
        if acc is _MISSING:
            return None
        return self._descriptor.aggregate_function.get_result(acc)  # type: ignore[attr-defined]

    def add(self, value: Any) -> None:
        k = self._key()
        fn = self._descriptor.aggregate_function  # type: ignore[attr-defined]
        acc = self._read(k)
        if acc is _MISSING:
            acc = fn.create_accumulator()
        elif self._backend.snapshots_in_flight:
            acc = copy.copy(acc)  # accumulators are often mutated in place
        self._write(k, fn.add(value, acc))


_HANDLES: dict[str, type[_State[Any]]] = {
    ValueStateDescriptor.kind: ValueState,
    ListStateDescriptor.kind: ListState,
    MapStateDescriptor.kind: MapState,
    ReducingStateDescriptor.kind: ReducingState,
    AggregatingStateDescriptor.kind: AggregatingState,
}
