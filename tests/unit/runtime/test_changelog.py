"""Keyed state as changelog records, for both state backends (no Kafka)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowactors.runtime.changelog import KeyedStateLog
from flowactors.state.backend import HeapKeyedStateBackend
from flowactors.state.rocksdb import RocksDBStateBackend

MAX_P = 16
Backend = Callable[[], Any]


@pytest.fixture
def make_rocksdb(tmp_path: Path) -> Iterator[Backend]:
    opened: list[Any] = []
    factory = RocksDBStateBackend(local_dir=tmp_path, memory_budget_mb=8)

    def make() -> Any:
        backend = factory.create(range(MAX_P), MAX_P, lambda: 0, f"op-{len(opened)}")
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        backend.close()


def make_heap() -> Any:
    return HeapKeyedStateBackend(range(MAX_P), MAX_P, lambda: 0)


@pytest.fixture(params=["heap", "rocksdb"])
def make_backend(request: pytest.FixtureRequest, make_rocksdb: Backend) -> Backend:
    return make_heap if request.param == "heap" else make_rocksdb


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
    direction: str, make_rocksdb: Backend
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
