"""Live keyed state: a running job's keyed state, read by the service that embeds it.

``client.keyed_state(uid, state_name)`` returns a :class:`KeyedStateView`: a
read-only view over one state of one keyed operator, across all its
subtasks. A key is looked up in the one subtask that owns its key group;
``keys()``, ``items()`` and ``len()`` visit every subtask.

Why no lock is needed, and what "consistent" means: the view's methods are
plain synchronous functions that must be called on the job's own event loop
(they refuse any other thread). While one of them runs, no task of the job
runs: every task is suspended at an ``await`` — waiting for its mailbox
between messages, at a yield point of its loop, or on downstream room after
it processed a batch. Built-in operators apply a whole batch to their state
without awaiting, so a read sees a batch entirely or not at all. (A user
function that is ``async def`` can be suspended within a batch; then a read
sees the records before it.)

The view resolves the job's *current* run on every call, so it follows
restarts: while a restarted run restores its state, and after the job ended
(its backends are closed), reading raises :class:`~flowactors.errors.StateError`.
Right after ``execute_async`` returns the state is restored already (it
waits for that), so a service restarted from a checkpoint answers with the
restored values before any new record arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flowactors.errors import InvalidGraphError, StateError
from flowactors.state.keygroups import key_group_for, operator_index_for_key_group

if TYPE_CHECKING:
    from flowactors.runtime.executor import JobExecution
    from flowactors.runtime.graph import Transformation
    from flowactors.runtime.jobmaster import JobMaster
    from flowactors.runtime.task import StreamTask

_MISSING: Any = object()


async def wait_state_restored(master: JobMaster) -> None:
    """Return once every task of the current run has restored its state (or ended).

    A run that restores nothing starts with empty state: nothing to wait for."""
    execution = master.execution
    if execution is None or execution.restore is None:
        return
    waits = [asyncio.ensure_future(t.state_restored.wait()) for t in execution.tasks]
    if not waits:
        return
    try:
        await asyncio.gather(*waits)
    finally:
        for w in waits:
            w.cancel()


class KeyedStateView:
    """Read-only access to state ``state_name`` of the keyed operator with ``uid``.

    ``get(key)`` is the current value (``None`` when the key has none), and
    ``keys()``, ``items()``, ``values()``, ``len(view)``, ``key in view`` work
    over all subtasks. Values are what a state handle's read would return: the
    value of value and reducing state, the list of list state, the dict of map
    state, the result of aggregating state. Window-scoped state is not readable
    here (it is keyed by key and window).

    ``get`` and ``in`` cost one lookup (a dict lookup in memory, a point read in
    RocksDB). ``keys``, ``items``, ``values`` and, on RocksDB, ``len`` visit the
    whole state in one go, on the loop: for serving requests use ``get``, and
    keep whole-state reads for small state or occasional use.
    """

    def __init__(
        self, master: JobMaster, loop: asyncio.AbstractEventLoop, uid: str, state_name: str
    ):
        self._master = master
        self._loop = loop
        self.uid = uid
        self.state_name = state_name
        self._transformation = _keyed_transformation(master, uid)
        self._execution: JobExecution | None = None
        self._owners: list[tuple[Any, StreamTask]] = []

    def __repr__(self) -> str:
        return f"KeyedStateView(uid={self.uid!r}, state={self.state_name!r})"

    # -- reading -----------------------------------------------------------

    def get(self, key: Any) -> Any:
        """The value of ``key`` (``None`` when it has none)."""
        owners = self._current()
        backend = owners[0][0].backend
        index = operator_index_for_key_group(
            backend.max_parallelism,
            len(owners),
            key_group_for(key, backend.max_parallelism),
        )
        op, task = owners[index]
        table = self._table(op, task)
        if table is None:
            return None
        value = _present(op.backend, self._descriptor(op), table.get(key, _MISSING))
        return None if value is _MISSING else value

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None

    def items(self) -> list[tuple[Any, Any]]:
        """Every key with its value (a list, taken at once)."""
        result: list[tuple[Any, Any]] = []
        for op, task in self._current():
            table = self._table(op, task)
            if table is None:
                continue
            descriptor = self._descriptor(op)
            for key, raw in list(table.items()):
                value = _present(op.backend, descriptor, raw)
                if value is not _MISSING:
                    result.append((key, value))
        return result

    def keys(self) -> list[Any]:
        """Every key that has a value."""
        return [key for key, _ in self.items()]

    def values(self) -> list[Any]:
        return [value for _, value in self.items()]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def __len__(self) -> int:
        total = 0
        for op, task in self._current():
            table = self._table(op, task)
            if table is None:
                continue
            descriptor = self._descriptor(op)
            if descriptor is None or descriptor.ttl_config is None:
                total += len(table)
            else:
                present = (_present(op.backend, descriptor, raw) for raw in list(table.values()))
                total += sum(1 for value in present if value is not _MISSING)
        return total

    # -- resolving the current run -----------------------------------------

    def _current(self) -> list[tuple[Any, StreamTask]]:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self._loop:
            raise RuntimeError(
                "live keyed state is read on the job's own event loop (from a coroutine or "
                "callback of the loop that runs the job)"
            )
        execution = self._master.execution
        if execution is None:
            raise StateError(f"job {self._master.job_name!r} has not started")
        if execution is not self._execution:
            task_of = {id(op): task for task in execution.tasks for op in task.operators}
            ops = execution.operators[self._transformation]
            self._owners = [(op, task_of[id(op)]) for op in ops]
            self._execution = execution
        for _, task in self._owners:
            # A task that has not started holds empty state, unless it is yet to restore.
            pending = not task.state_restored.is_set() and execution.restore is None
            if not (task.state_readable or pending):
                raise StateError(
                    f"the state of operator {self.uid!r} of job {self._master.job_name!r} is "
                    f"not available now (the job is {self._master.status.value.lower()}; "
                    "a restarted job's state is readable again once it is restored)"
                )
        return self._owners

    def _table(self, op: Any, task: StreamTask) -> Any:
        backend = op.backend
        table = backend.tables.get(self.state_name)
        if table is not None and self.state_name not in backend.namespaced:
            return table
        if table is None and op not in task.opened:
            return None  # not opened yet: its state handles do not exist yet, nor any value
        readable = sorted(n for n in backend.tables if n not in backend.namespaced)
        scoped = (
            f"; {self.state_name!r} is window-scoped state, not readable by key"
            if table is not None
            else ""
        )
        raise StateError(
            f"operator {self.uid!r} has no keyed state {self.state_name!r}{scoped}; it has: "
            f"{', '.join(readable) or 'none'}"
        )

    def _descriptor(self, op: Any) -> Any:
        descriptor = op.backend._descriptors.get(self.state_name)
        if descriptor is None:
            return None
        if descriptor.ttl_config is None and descriptor.kind != "aggregating":
            return None
        return descriptor


def _present(backend: Any, descriptor: Any, raw: Any) -> Any:
    """What a state handle would read from a stored entry (``_MISSING``: nothing)."""
    if raw is _MISSING or descriptor is None:
        return raw
    if descriptor.ttl_config is not None:
        value, stamp = raw
        if backend.clock() - stamp >= descriptor.ttl_config.ttl_ms:
            return _MISSING
        raw = value
    if descriptor.kind == "aggregating":
        return descriptor.aggregate_function.get_result(raw)
    return raw


def _keyed_transformation(master: JobMaster, uid: str) -> Transformation:
    plan = master.plan
    by_uid = {u: t for t, u in plan.uids.items()}
    execution = master.execution
    assert execution is not None
    keyed = sorted(u for u, t in by_uid.items() if execution.operators[t][0].keyed)
    t = by_uid.get(uid)
    if t is None:
        raise InvalidGraphError(
            f"job {master.job_name!r} has no operator with uid {uid!r}; operators with keyed "
            f"state: {', '.join(keyed) or 'none'}"
        )
    if not execution.operators[t][0].keyed:
        raise InvalidGraphError(
            f"operator {uid!r} of job {master.job_name!r} has no keyed state; operators with "
            f"keyed state: {', '.join(keyed) or 'none'}"
        )
    return t
