"""Keyed state as changelog records, for both state backends (no Kafka)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowactors.runtime.changelog import ChangeTrackingStateBackend, KeyedStateLog
from flowactors.runtime.timers import InternalTimerService
from flowactors.state.backend import HeapKeyedStateBackend
from flowactors.state.changes import TrackedTable
from flowactors.state.descriptors import (
    ListStateDescriptor,
    MapStateDescriptor,
    StateTtlConfig,
    ValueStateDescriptor,
)
from flowactors.state.rocksdb import RocksDBStateBackend
from flowactors.time.clock import ManualProcessingTimeService

MAX_P = 16
Backend = Callable[[], Any]


@pytest.fixture
def rocksdb(tmp_path: Path) -> Iterator[RocksDBStateBackend]:
    yield RocksDBStateBackend(local_dir=tmp_path, memory_budget_mb=8)


@pytest.fixture
def opened() -> Iterator[list[Any]]:
    backends: list[Any] = []
    yield backends
    for backend in backends:
        close = getattr(backend, "close", None)
        if close is not None:
            close()


def maker(factory: Any, opened: list[Any]) -> Backend:
    """Backends of ``factory`` (``None``: heap, untracked) over every key group."""

    def make() -> Any:
        if factory is None:
            backend: Any = HeapKeyedStateBackend(range(MAX_P), MAX_P, lambda: 0)
        else:
            backend = factory.create(range(MAX_P), MAX_P, lambda: 0, f"op-{len(opened)}")
        opened.append(backend)
        return backend

    return make


@pytest.fixture
def make_heap(opened: list[Any]) -> Backend:
    return maker(ChangeTrackingStateBackend(), opened)


@pytest.fixture
def make_rocksdb(rocksdb: RocksDBStateBackend, opened: list[Any]) -> Backend:
    return maker(ChangeTrackingStateBackend(rocksdb), opened)


#: Tracked backends (as scaled-out tasks create them), and untracked ones (compared).
KINDS = ["heap", "rocksdb", "heap untracked", "rocksdb untracked"]


@pytest.fixture(params=KINDS)
def make_backend(
    request: pytest.FixtureRequest, rocksdb: RocksDBStateBackend, opened: list[Any]
) -> Backend:
    inner = rocksdb if request.param.startswith("rocksdb") else None
    if request.param.endswith("untracked"):
        return maker(inner, opened)
    return maker(ChangeTrackingStateBackend(inner), opened)


def entries(backend: Any, name: str) -> dict[Any, Any]:
    return dict(backend.table(name).items())


def replay(*batches: list[tuple[bytes, bytes | None]]) -> list[bytes]:
    """What a new owner reads: the latest value per key, tombstones dropped."""
    latest: dict[bytes, bytes | None] = {}
    for batch in batches:
        latest.update(batch)
    return [v for v in latest.values() if v is not None]


def test_changes_are_written_once_and_deletions_become_tombstones(make_backend: Backend) -> None:
    source = make_backend()
    log = KeyedStateLog({"sum": source}, MAX_P)
    table = source.table("value")
    table["a"] = 1
    table["b"] = 2
    first = log.changes()
    assert len(first) == 2 and all(v is not None for _, v in first)
    assert log.changes() == []  # nothing changed since
    table["a"] = 5
    del table["b"]
    second = log.changes()
    assert sorted(v is None for _, v in second) == [False, True]
    target = make_backend()
    restored = KeyedStateLog({"sum": target}, MAX_P)
    restored.restore(replay(first, second))
    assert entries(target, "value") == {"a": 5}
    assert restored.changes() == []  # what was restored is not written again


def test_namespaced_state_round_trips(make_backend: Backend) -> None:
    source = make_backend()
    log = KeyedStateLog({"w": source}, MAX_P)
    contents = source.table("window-contents", namespaced=True)
    contents[("a", (0, 1000))] = [1, 2]
    contents[("b", (0, 1000))] = [3]
    target = make_backend()
    KeyedStateLog({"w": target}, MAX_P).restore(replay(log.changes()))
    assert entries(target, "window-contents") == {("a", (0, 1000)): [1, 2], ("b", (0, 1000)): [3]}
    assert "window-contents" in target.namespaced


@pytest.mark.parametrize("direction", ["heap to rocksdb", "rocksdb to heap"])
def test_a_job_can_switch_backends_over_its_changelog(
    direction: str, make_heap: Backend, make_rocksdb: Backend
) -> None:
    """Both backends write the same records, so either restores what the other wrote."""
    make_from, make_to = (
        (make_heap, make_rocksdb) if direction == "heap to rocksdb" else (make_rocksdb, make_heap)
    )
    source, twin = make_from(), make_to()
    for backend in (source, twin):
        table = backend.table("value")
        for key in range(100):
            table[key] = key * 10
    written = KeyedStateLog({"sum": source}, MAX_P).changes()
    assert sorted(written) == sorted(KeyedStateLog({"sum": twin}, MAX_P).changes())
    target = make_to()
    KeyedStateLog({"sum": target}, MAX_P).restore(replay(written))
    assert entries(target, "value") == {key: key * 10 for key in range(100)}


def test_a_tracked_table_records_every_kind_of_write() -> None:
    table = TrackedTable()
    table["a"] = 1
    table.update({"b": 2}, c=3)
    table.update([("f", 6)])
    table |= {"d": 4}
    table.setdefault("e", 5)
    table.setdefault("a", 9)  # present: not a write
    assert table.changed == {"a", "b", "c", "d", "e", "f"}
    table.changed = set()
    del table["a"]
    assert table.pop("b") == 2 and table.pop("missing", None) is None
    table.popitem()  # "e", the last one
    assert table.changed == {"a", "b", "e"}
    table.changed = set()
    table.clear()
    assert table.changed == {"c", "d", "f"} and table == {}
    with pytest.raises(KeyError):
        table.pop("missing")


def test_state_handles_write_through_the_tracked_table(make_heap: Backend) -> None:
    """Values mutated in place (lists, maps) are written back, so they are tracked."""
    backend = make_heap()
    log = KeyedStateLog({"op": backend}, MAX_P)
    items = backend.get_state(ListStateDescriptor("items"))
    prices = backend.get_state(MapStateDescriptor("prices"))
    for key in range(50):
        backend.current_key = key
        items.add(key)
        prices.put("p", key)
    assert len(log.changes()) == 100
    backend.current_key = 7
    items.add(70)
    prices.remove("p")  # the map is empty now: the entry goes
    changed = log.changes()
    assert sorted(v is None for _, v in changed) == [False, True]
    target = make_heap()
    KeyedStateLog({"op": target}, MAX_P).restore([v for _, v in log_all(backend) if v is not None])
    assert target.table("items")[7] == [7, 70] and 7 not in target.table("prices")


def log_all(backend: Any) -> list[tuple[bytes, bytes | None]]:
    """Every entry of ``backend`` as changelog records (an untracked first commit)."""
    return KeyedStateLog({"op": HeapView(backend)}, MAX_P).changes()


class HeapView:
    """A backend's tables, seen as an untracked backend (compared entry by entry)."""

    def __init__(self, backend: Any) -> None:
        self.tables = {name: dict(table.items()) for name, table in backend.tables.items()}
        self.namespaced = backend.namespaced


def test_expired_entries_become_tombstones() -> None:
    now = [0]
    backend = ChangeTrackingStateBackend().create(range(MAX_P), MAX_P, lambda: now[0], "op")
    log = KeyedStateLog({"op": backend}, MAX_P)
    ttl = StateTtlConfig.new_builder(1000).build()
    descriptor: ValueStateDescriptor[int] = ValueStateDescriptor("count")
    descriptor.enable_time_to_live(ttl)
    counts = backend.get_state(descriptor)
    backend.current_key = "a"
    counts.update(1)
    assert len(log.changes()) == 1
    now[0] = 5000
    assert counts.value() is None  # expired on access: deleted
    assert [v for _, v in log.changes()] == [None]


def test_a_moved_entry_keeps_its_time_to_live(opened: list[Any], tmp_path: Path) -> None:
    """State with a TTL that moves to another worker expires when it would have where it
    was: the entry's last write time moves with it (heap to RocksDB here, and back)."""
    now = [0]
    ttl = StateTtlConfig.new_builder(1000).build()
    descriptor: ValueStateDescriptor[int] = ValueStateDescriptor("count")
    descriptor.enable_time_to_live(ttl)
    rocksdb = RocksDBStateBackend(local_dir=tmp_path, memory_budget_mb=8)
    kinds = [ChangeTrackingStateBackend(), ChangeTrackingStateBackend(rocksdb)] * 2
    changes: list[tuple[bytes, bytes | None]] = []
    for moved, kind in enumerate(kinds):
        backend = kind.create(range(MAX_P), MAX_P, lambda: now[0], f"op-{moved}")
        opened.append(backend)
        log = KeyedStateLog({"op": backend}, MAX_P)
        log.restore(replay(changes))
        counts = backend.get_state(descriptor)
        backend.current_key = "a"
        if moved == 0:
            counts.update(7)  # written at 0: expires at 1000
            backend.current_key = "b"
            counts.update(8)
        elif moved == 1:
            now[0] = 999
            assert counts.value() == 7  # still alive after the move
        elif moved == 2:
            backend.current_key = "b"
            counts.update(9)  # rewritten at 999: lives on until 1999
        else:
            now[0] = 1000
            assert counts.value() is None  # expired on time, after three moves
            backend.current_key = "b"
            assert counts.value() == 9
        changes.extend(log.changes())


def test_a_commit_reads_only_the_changed_entries(
    make_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = make_backend()
    tracked = getattr(backend, "track_changes", False)
    log = KeyedStateLog({"sum": backend}, MAX_P)
    table = backend.table("value")
    for key in range(1000):
        table[key] = key
    assert len(log.changes()) == 1000
    for key in range(0, 1000, 100):
        table[key] = key + 1
    if tracked:

        def unread(self: Any) -> Any:
            raise AssertionError("a tracked table is not read as a whole at a commit")

        # not one look at the 990 unchanged entries
        monkeypatch.setattr(type(table), "items", unread)
        monkeypatch.setattr(type(table), "__iter__", unread)
    assert len(log.changes()) == 10


def test_timers_added_deleted_and_fired_are_logged_and_restored() -> None:
    async def no_timer(now: int) -> None:
        return None

    def timers() -> InternalTimerService:
        return InternalTimerService(ManualProcessingTimeService(), no_timer)

    source = timers()
    log = KeyedStateLog(
        {"w": HeapKeyedStateBackend(range(MAX_P), MAX_P, lambda: 0)}, MAX_P, {"w": source}
    )
    for n in range(5):
        source.register_event_time_timer((n, None), 1000)  # one bucket
    source.event.add_new((9, None), 3000)  # as windows register theirs
    source.register_processing_time_timer(("p", None), 500)
    first = log.changes()
    assert len(first) == 7 and all(v is not None for _, v in first)
    source.delete_event_time_timer((0, None), 1000)
    fired = list(source.event.pop_due_buckets(1000))  # as windows fire theirs
    assert fired == [(1000, [(1, None), (2, None), (3, None), (4, None)])]
    second = log.changes()
    assert len(second) == 5 and all(v is None for _, v in second)
    assert log.changes() == []
    target = timers()
    restored = KeyedStateLog(
        {"w": HeapKeyedStateBackend(range(MAX_P), MAX_P, lambda: 0)}, MAX_P, {"w": target}
    )
    restored.restore(replay(first, second))
    assert target.event.live == [(3000, (9, None))]
    assert target.processing.live == [(500, ("p", None))]
    assert restored.changes() == []  # what was restored is not written again
    target.shutdown()
    source.shutdown()
