"""A task's keyed state and timers as changelog records (scale-out).

A scaled-out task keeps its keyed state in memory and, at every commit, writes what
changed since the last one into its changelog partition, in the same Kafka
transaction as its outputs and input offsets; a new owner restores from it.

Record keys start with the key group (2 bytes, big-endian), then the operator uid,
then what the entry is — ``state name | key`` for state, ``\\x01event`` or
``\\x01processing`` | ``(timestamp, owner)`` for timers — with keys as their canonical
bytes (:func:`~flowactors.state.keygroups.key_bytes`), so equal keys compact
together and a key group's entries can be found. Values are pickled entries; a
deleted entry or timer becomes a tombstone (``None``) under the same key.

Changes are found by comparing each entry's pickled bytes with those written at the
last commit: O(state) per commit, and nothing on the per-record path.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

from flowactors.errors import InvalidGraphError
from flowactors.state.keygroups import key_bytes, key_group_for

_STATE = "state"
_TIMER = "timer"
#: The bytes a timer is compared by: it exists or it does not.
_PRESENT = b""


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
        self._last: dict[bytes, bytes] = {}

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
                self._last[self._state_key(uid, name, namespaced, table_key)] = pickle.dumps(value)
            else:
                _, uid, domain, timestamp, owner = record
                timers.append((uid, domain, timestamp, owner))
                self._last[self._timer_key(uid, domain, timestamp, owner)] = _PRESENT
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

    def _backend(self, uid: str) -> Any:
        backend = self.backends.get(uid)
        if backend is None:
            raise InvalidGraphError(
                f"the changelog holds state of operator {uid!r}, which this job lacks"
            )
        return backend

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """What changed since the last call, as (key, value or ``None``) records."""
        out: list[tuple[bytes, bytes | None]] = []
        seen: dict[bytes, bytes] = {}
        last = self._last
        dumps = pickle.dumps
        # The task is quiet while this runs (its reader is being polled), so the
        # tables are read in place: no copy, and the same code for heap and RocksDB.
        for uid, backend in self.backends.items():
            for name, table in list(backend.tables.items()):
                namespaced = name in backend.namespaced
                for table_key, value in table.items():
                    raw = dumps(value)
                    key = self._state_key(uid, name, namespaced, table_key)
                    seen[key] = raw
                    if last.get(key) != raw:
                        record = (_STATE, uid, name, namespaced, table_key, value)
                        out.append((key, dumps(record)))
        for uid, service in self.timers.items():
            for domain, queue in (("event", service.event), ("processing", service.processing)):
                for timestamp, owner in queue.live:
                    key = self._timer_key(uid, domain, timestamp, owner)
                    seen[key] = _PRESENT
                    if key not in last:
                        out.append((key, dumps((_TIMER, uid, domain, timestamp, owner))))
        out.extend((key, None) for key in last.keys() - seen.keys())
        self._last = seen
        return out
