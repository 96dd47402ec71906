"""A task's keyed state and timers as changelog records (scale-out).

A scaled-out task keeps its keyed state in its operators' backends (in memory or in
RocksDB) and, at every commit, writes what changed since the last one into its
changelog partition, in the same Kafka transaction as its outputs and input offsets;
a new owner restores from it.

Record keys start with the key group (2 bytes, big-endian), then the operator uid,
then what the entry is — ``state name | key`` for state, ``\\x01event`` or
``\\x01processing`` | ``(timestamp, owner)`` for timers — with keys as their canonical
bytes (:func:`~flowactors.state.keygroups.key_bytes`), so equal keys compact
together and a key group's entries can be found. Values are pickled entries; a
deleted entry or timer becomes a tombstone (``None``) under the same key. Both state
backends write the same records, so a job can switch backends over its changelog.

Finding the changes costs O(changes) per commit: a task's backends are created by
:class:`ChangeTrackingStateBackend`, whose tables record the keys written or deleted
(:mod:`flowactors.state.changes`), and its timer queues are replaced by
:class:`TrackedTimerQueue`, which records timers added, deleted and fired. A backend
that does not track (one built elsewhere) is compared entry by entry with what was
written last: O(state) per commit.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from flowactors.errors import InvalidGraphError
from flowactors.runtime.timers import _TimerQueue
from flowactors.state.backend import HeapKeyedStateBackend
from flowactors.state.keygroups import key_bytes, key_group_for

_STATE = "state"
_TIMER = "timer"
_MISSING: Any = object()


class ChangeTrackingStateBackend:
    """A state backend factory whose keyed backends record their changed entries.

    It wraps the job's factory (``None``: keyed state in memory), so a scaled-out
    task keeps the backend the job chose.
    """

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner

    def create(
        self, key_groups: range, max_parallelism: int, clock: Callable[[], int], owner: str
    ) -> Any:
        if self.inner is None:
            backend: Any = HeapKeyedStateBackend(key_groups, max_parallelism, clock)
        else:
            backend = self.inner.create(key_groups, max_parallelism, clock, owner)
        backend.track_changes = True  # before any table exists: every table is tracked
        return backend


class TrackedTimerQueue(_TimerQueue):
    """A timer queue that records, per ``(timestamp, owner)``, whether the timer lives
    after the last change since the changelog last took them (``changed``)."""

    __slots__ = ("changed",)

    def __init__(self, queue: _TimerQueue | None = None) -> None:
        super().__init__()
        self.changed: dict[tuple[int, Any], bool] = {}
        if queue is not None:  # take over the timers registered so far
            self.buckets, self.heap, self.size = queue.buckets, queue.heap, queue.size

    def add(self, key: Any, timestamp: int) -> bool:
        self.changed[(timestamp, key)] = True
        return super().add(key, timestamp)

    def add_new(self, key: Any, timestamp: int) -> None:
        self.changed[(timestamp, key)] = True
        super().add_new(key, timestamp)

    def remove(self, key: Any, timestamp: int) -> None:
        self.changed[(timestamp, key)] = False
        super().remove(key, timestamp)

    def pop_due(self, until: int) -> Iterator[tuple[int, Any]]:
        changed = self.changed
        for timestamp, key in super().pop_due(until):
            changed[(timestamp, key)] = False
            yield timestamp, key

    def pop_due_buckets(self, until: int) -> Iterator[tuple[int, list[Any]]]:
        changed = self.changed
        for timestamp, owners in super().pop_due_buckets(until):
            changed.update(dict.fromkeys([(timestamp, key) for key in owners], False))
            yield timestamp, owners


class KeyedStateLog:
    """Changelog records of the keyed operators of one task."""

    def __init__(
        self,
        backends: dict[str, Any],
        max_parallelism: int,
        timers: dict[str, Any] | None = None,
    ) -> None:
        self.backends = backends
        self.timers = timers or {}
        self.max_parallelism = max_parallelism
        #: Pickled entries last written, for backends that do not track their changes.
        self._last: dict[bytes, bytes] = {}
        self._seen: dict[bytes, bytes] = {}
        for service in self.timers.values():
            service.event = TrackedTimerQueue(service.event)
            service.processing = TrackedTimerQueue(service.processing)

    def _key(self, key: Any, uid: str, name: str, entry: Any) -> bytes:
        group = key_group_for(key, self.max_parallelism)
        return b"".join(
            (
                group.to_bytes(2, "big"),
                uid.encode(),
                b"\x00",
                name.encode(),
                b"\x00",
                key_bytes(entry),
            )
        )

    def _state_key(self, uid: str, name: str, namespaced: bool, table_key: Any) -> bytes:
        return self._key(table_key[0] if namespaced else table_key, uid, name, table_key)

    def _timer_key(self, uid: str, domain: str, timestamp: int, owner: Any) -> bytes:
        return self._key(owner[0], uid, "\x01" + domain, (timestamp, owner))

    def restore(self, values: Sequence[bytes]) -> None:
        """Load the latest value of every live changelog key (tombstones already dropped)."""
        tables: dict[tuple[str, str, bool], dict[Any, Any]] = {}
        timers: list[tuple[str, str, int, Any]] = []
        for raw in values:
            record = pickle.loads(raw)
            if record[0] == _STATE:
                _, uid, name, namespaced, table_key, value = record
                tables.setdefault((uid, name, namespaced), {})[table_key] = value
                if not self._tracks(uid):
                    key = self._state_key(uid, name, namespaced, table_key)
                    self._last[key] = pickle.dumps(value)
            else:
                timers.append(record[1:])
        for (uid, name, namespaced), entries in tables.items():
            self._backend(uid).restore_table(name, entries, namespaced)
        for uid, domain, timestamp, owner in timers:
            service = self.timers.get(uid)
            if service is None:
                raise InvalidGraphError(
                    f"the changelog holds timers of operator {uid!r}, which this job lacks"
                )
            if domain == "event":
                service.register_event_time_timer(owner, timestamp)
            else:
                service.register_processing_time_timer(owner, timestamp)
        self._forget_changes()  # what was restored is in the changelog already

    def _tracks(self, uid: str) -> bool:
        return bool(getattr(self.backends.get(uid), "track_changes", False))

    def _backend(self, uid: str) -> Any:
        backend = self.backends.get(uid)
        if backend is None:
            raise InvalidGraphError(
                f"the changelog holds state of operator {uid!r}, which this job lacks"
            )
        return backend

    def _forget_changes(self) -> None:
        for uid, backend in self.backends.items():
            if self._tracks(uid):
                for table in backend.tables.values():
                    table.changed = set()
        for service in self.timers.values():
            service.event.changed = {}
            service.processing.changed = {}

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """What changed since the last call, as (key, value or ``None``) records.

        Called while the task is quiet (its reader is being polled), so the tables
        are read in place."""
        out: list[tuple[bytes, bytes | None]] = []
        for uid, backend in self.backends.items():
            for name, table in list(backend.tables.items()):
                namespaced = name in backend.namespaced
                if self._tracks(uid):
                    self._tracked_changes(out, uid, name, namespaced, table)
                else:
                    self._compared_changes(out, uid, name, namespaced, table)
        if any(not self._tracks(uid) for uid in self.backends):
            self._compared_deletions(out)
        dumps = pickle.dumps
        for uid, service in self.timers.items():
            for domain, queue in (("event", service.event), ("processing", service.processing)):
                changed, queue.changed = queue.changed, {}
                for (timestamp, owner), live in changed.items():
                    key = self._timer_key(uid, domain, timestamp, owner)
                    record = (_TIMER, uid, domain, timestamp, owner)
                    out.append((key, dumps(record) if live else None))
        return out

    def _tracked_changes(
        self,
        out: list[tuple[bytes, bytes | None]],
        uid: str,
        name: str,
        namespaced: bool,
        table: Any,
    ) -> None:
        changed, table.changed = table.changed, set()
        dumps = pickle.dumps
        for table_key in changed:
            key = self._state_key(uid, name, namespaced, table_key)
            value = table.get(table_key, _MISSING)
            if value is _MISSING:
                out.append((key, None))
            else:
                out.append((key, dumps((_STATE, uid, name, namespaced, table_key, value))))

    def _compared_changes(
        self,
        out: list[tuple[bytes, bytes | None]],
        uid: str,
        name: str,
        namespaced: bool,
        table: Any,
    ) -> None:
        last, seen = self._last, self._seen
        dumps = pickle.dumps
        for table_key, value in table.items():
            raw = dumps(value)
            key = self._state_key(uid, name, namespaced, table_key)
            seen[key] = raw
            if last.get(key) != raw:
                out.append((key, dumps((_STATE, uid, name, namespaced, table_key, value))))

    def _compared_deletions(self, out: list[tuple[bytes, bytes | None]]) -> None:
        out.extend((key, None) for key in self._last.keys() - self._seen.keys())
        self._last, self._seen = self._seen, {}
