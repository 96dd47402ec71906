"""The core's half of scale-out, against an in-memory backend (no Kafka).

The backend (``tests/support/scaleout_memory.py``) plays Kafka with lists: one list
per partition of every topic. It runs the source stage's tasks to the end, then the
tasks that read the internal topic; the core checks that every task is one chain.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from flowactors import InvalidGraphError
from flowactors import StreamExecutionEnvironment as Env
from flowactors.runtime import scaleout
from flowactors.runtime.changelog import KeyedStateLog
from flowactors.runtime.timers import InternalTimerService
from flowactors.state.backend import HeapKeyedStateBackend
from flowactors.state.keygroups import key_group_for
from flowactors.time.clock import ManualProcessingTimeService
from tests.support.scaleout_memory import (
    Collected,
    MemoryBackend,
    Topic,
    use_memory_backend,
)


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> MemoryBackend:
    use_memory_backend(monkeypatch)
    return MemoryBackend()


async def test_a_keyed_sum_runs_as_two_stages_of_one_chain_per_task(
    backend: MemoryBackend,
) -> None:
    env = Env(parallelism=3)
    env.enable_checkpointing(100)  # no storage: the commit interval
    env.enable_scale_out(bootstrap_servers="unused:9092", application_id="app")
    topic = Topic([[(k % 5, 1) for k in range(p, 100, 4)] for p in range(4)])
    out = Collected()
    (
        env.from_source(topic, name="in")
        .map(lambda r: (r[0], r[1] * 2))
        .key_by(lambda r: r[0])
        .sum(1)
        .uid("sum")
        .sink_to(out)
    )
    client = await env.execute_async("sums")
    await client.wait()
    assert client.metrics().scale_out.assignment == tuple(client.assignment())  # type: ignore[attr-defined]
    (worker,) = MemoryBackend.workers
    assert worker.wrapped == [out] * 3  # once per task of the stage that writes it
    assert sorted(client.assignment()) == [("in-0", p) for p in range(4)] + [
        ("sum", r) for r in range(3)
    ]
    finals: dict[int, int] = {}
    for key, total in out.values:
        finals[key] = max(finals.get(key, 0), total)
    assert finals == {k: 40 for k in range(5)}
    assert len(out.values) == 100
    # every key's records went to the one partition owning its key group
    partitions_of = {
        key: {
            r
            for r, part in enumerate(worker.topics["app-sum-repartition"])
            if any(value[0] == key for _, value, _ in part)
        }
        for key in range(5)
    }
    assert all(len(parts) == 1 for parts in partitions_of.values())


async def test_a_source_the_backend_cannot_read_fails_before_starting(
    backend: MemoryBackend,
) -> None:
    env = Env()
    env.enable_scale_out(bootstrap_servers="unused:9092", application_id="app")
    env.from_collection([1, 2]).name("numbers").print()
    with pytest.raises(InvalidGraphError, match="'numbers' cannot scale out"):
        await env.execute_async()


def test_without_a_backend_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scaleout, "entry_points", lambda group: [])
    with pytest.raises(InvalidGraphError, match="pip install flowactors-kafka"):
        scaleout.load_backend()


def test_the_backend_is_found_by_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint("kafka", f"{__name__}:MemoryBackend", "flowactors.scale_out")
    monkeypatch.setattr(scaleout, "entry_points", lambda group: [ep])
    assert isinstance(scaleout.load_backend(), MemoryBackend)


def test_storage_is_needed_without_scale_out() -> None:
    env = Env()
    env.enable_checkpointing(100)
    env.from_collection([1]).print()
    with pytest.raises(InvalidGraphError, match="needs a storage directory"):
        asyncio.run(env.execute())


async def test_reinterpret_as_keyed_keys_like_key_by_in_one_process() -> None:
    env = Env(parallelism=2)
    result = await (
        env.from_collection([("a", 1), ("b", 2), ("a", 3)])
        .reinterpret_as_keyed(lambda r: r[0])
        .sum(1)
        .execute_and_collect()
    )
    assert sorted(result) == [("a", 1), ("a", 4), ("b", 2)]


def test_keyed_state_log_writes_changes_only_and_restores_them() -> None:
    def backend() -> HeapKeyedStateBackend:
        return HeapKeyedStateBackend(range(16), 16, lambda: 0)

    source = backend()
    log = KeyedStateLog({"sum": source}, 16)
    table = source.table("reduce")
    table.update({"a": 1, "b": 2})
    first = log.changes()
    assert len(first) == 2 and all(v is not None for _, v in first)
    assert log.changes() == []  # nothing changed since
    table["a"] = 5
    del table["b"]
    second = log.changes()
    assert len(second) == 2
    deleted = [k for k, v in second if v is None]
    assert len(deleted) == 1 and deleted[0] in dict(first)  # b's tombstone, under b's key
    # a new owner restores the latest value of every live key
    latest: dict[bytes, bytes | None] = dict(first)
    latest.update(second)
    target = backend()
    restored = KeyedStateLog({"sum": target}, 16)
    restored.restore([v for v in latest.values() if v is not None])
    assert target.table("reduce") == {"a": 5}
    assert restored.changes() == []  # what was restored is not written again
    # compaction keys start with the key group (2 bytes, big-endian)
    key_a = next(k for k, v in second if v is not None)
    assert int.from_bytes(key_a[:2], "big") == key_group_for("a", 16)


async def test_map_async_is_refused_in_a_task(backend: MemoryBackend) -> None:
    env = Env()
    env.enable_scale_out(bootstrap_servers="unused:9092", application_id="app")

    async def slow(x: Any) -> Any:
        return x

    env.from_source(Topic([[1]]), name="in").map_async(slow).name("lookup").sink_to(Collected())
    client = await env.execute_async()
    with pytest.raises(InvalidGraphError, match="'lookup' cannot scale out yet: map_async"):
        await client.wait()


def test_keyed_state_log_carries_event_time_timers() -> None:
    async def no_timer(now: int) -> None:
        return None

    def timers() -> InternalTimerService:
        return InternalTimerService(ManualProcessingTimeService(), no_timer)

    backend = HeapKeyedStateBackend(range(16), 16, lambda: 0)
    source = timers()
    log = KeyedStateLog({"w": backend}, 16, {"w": source})
    source.register_event_time_timer(("a", None), 1000)
    source.register_event_time_timer(("b", None), 2000)
    first = log.changes()
    assert len(first) == 2
    list(source.due_event_timers(1500))  # a's fires
    second = log.changes()
    assert [v for _, v in second] == [None]  # its tombstone
    latest = dict(first)
    latest.update(second)
    target = timers()
    KeyedStateLog(
        {"w": HeapKeyedStateBackend(range(16), 16, lambda: 0)}, 16, {"w": target}
    ).restore([v for v in latest.values() if v is not None])
    assert set(target.event.live) == {(2000, ("b", None))}
