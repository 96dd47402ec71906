"""Which keyed state entries were written or deleted since the last time someone asked.

A scaled-out task writes its state changes to a changelog at every commit. Comparing
every entry with what was committed last costs O(state) per commit; instead, a
backend whose ``track_changes`` is set creates its tables tracked: every table keeps
``changed``, the keys written or deleted since the changelog last took them
(O(changes) per commit). Only scaled-out tasks set it
(:class:`~flowactors.runtime.changelog.ChangeTrackingStateBackend`); jobs in one
process keep plain dicts, so their per-record path is untouched.

Invariant: every write to a tracked table goes through the table (the state handles
and built-in operators write a value back after changing it, as the on-disk backend
needs too), so a key whose entry differs from the last commit is in ``changed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_MISSING: Any = object()


class TrackedTable(dict[Any, Any]):
    """A heap state table that records the keys written or deleted in it."""

    __slots__ = ("changed",)

    def __init__(self) -> None:
        super().__init__()
        #: Keys written or deleted since the changelog last took them.
        self.changed: set[Any] = set()

    def __setitem__(self, key: Any, value: Any) -> None:
        dict.__setitem__(self, key, value)
        self.changed.add(key)

    def __delitem__(self, key: Any) -> None:
        dict.__delitem__(self, key)
        self.changed.add(key)

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        if key in self:
            self.changed.add(key)
            return dict.pop(self, key)
        if default is _MISSING:
            raise KeyError(key)
        return default

    def popitem(self) -> tuple[Any, Any]:
        key, value = dict.popitem(self)
        self.changed.add(key)
        return key, value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return dict.__getitem__(self, key)

    def update(self, *others: Any, **entries: Any) -> None:
        for other in (*others, entries):
            if isinstance(other, Mapping):  # at C speed: restores load whole tables
                dict.update(self, other)
                self.changed.update(other.keys())
            else:
                pairs: Iterable[tuple[Any, Any]] = other
                for key, value in pairs:
                    self[key] = value

    def __ior__(self, other: Any) -> TrackedTable:  # type: ignore[misc]
        self.update(other)
        return self

    def clear(self) -> None:
        self.changed.update(self)
        dict.clear(self)
