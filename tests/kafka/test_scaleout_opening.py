"""Opening a task when things go wrong on the way (no broker: the worker's clients are
stand-ins, its decisions are real)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
from flowactors_kafka._client import TopicPartition
from flowactors_kafka._scaleout import _worker
from flowactors_kafka._scaleout._worker import KafkaScaleOutWorker, Suspended

from flowactors import ConnectorError
from flowactors.spi import ScaleOutJob, ScaleOutSettings

TP = TopicPartition("app-sum-repartition", 2)


class Consumer:
    """What the worker asks of its group consumer here."""

    def __init__(self) -> None:
        self.paused: list[TopicPartition] = []
        self.rejoins = 0

    def owns(self, tp: TopicPartition) -> bool:
        return tp == TP

    def pause(self, tp: TopicPartition) -> None:
        self.paused.append(tp)

    def request_rejoin(self) -> None:
        self.rejoins += 1


def worker() -> KafkaScaleOutWorker:
    async def start_task(*_: Any) -> Any:
        raise AssertionError("no task is started here")

    job = ScaleOutJob("job", (), {}, start_task)
    w = KafkaScaleOutWorker(ScaleOutSettings("unused:9092", "app"), job)
    w.consumer = cast(Any, Consumer())
    return w


async def test_a_suspended_task_is_closed_when_its_opening_is_cancelled_while_fencing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rebalance that cancels the opener of a suspended task given back (the fence
    still connecting) must not leave the task's plan and state behind."""
    w = worker()
    fencing = asyncio.Event()
    closed: list[Any] = []

    async def slow_fence(tp: TopicPartition) -> Any:
        fencing.set()
        await asyncio.sleep(60)

    async def close(task: Any, *, commit: bool) -> None:
        closed.append((task, commit))

    monkeypatch.setattr(w, "_fenced_producer", slow_fence)
    monkeypatch.setattr(w, "_close", close)
    suspended_task = SimpleNamespace(uid=("sum", 2))
    opening = asyncio.create_task(
        w._resumed_or_opened(TP, Suspended(cast(Any, suspended_task), (7, 3)))
    )
    await fencing.wait()
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert closed == [(suspended_task, False)]


async def test_a_retriable_error_while_opening_is_retried_not_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker going away while a task opens (after a rebalance, say) reopens it with
    backoff, as a task failing while it runs is; the worker does not fail."""
    w = worker()
    monkeypatch.setattr(_worker, "_REOPEN_BACKOFF_S", 0.01)
    attempts: list[int] = []
    reopened = SimpleNamespace(uid=("sum", 2))

    async def fence(tp: TopicPartition) -> Any:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectorError("Kafka: the broker went away", retriable=True)
        return SimpleNamespace(abandon=_nothing)

    async def open_(tp: TopicPartition, producer: Any) -> Any:
        return reopened

    monkeypatch.setattr(w, "_fenced_producer", fence)
    monkeypatch.setattr(w, "_open", open_)
    consumer = cast(Consumer, w.consumer)
    consumer.resume = lambda tp: None  # type: ignore[attr-defined]
    w._done = asyncio.get_running_loop().create_future()
    await w._open_task(TP, None)  # fails once: handed to the reopening loop
    assert TP not in w.tasks and consumer.paused == [TP]
    await asyncio.wait_for(w._reopening[TP], 5)
    assert w.tasks[TP] is reopened and len(attempts) == 3
    assert not w._done.done()  # the worker did not fail


async def test_an_error_no_retry_can_fix_while_opening_fails_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = worker()

    async def fence(tp: TopicPartition) -> Any:
        raise ConnectorError("Kafka: authentication failed (wrong password)", retriable=False)

    monkeypatch.setattr(w, "_fenced_producer", fence)
    w._done = asyncio.get_running_loop().create_future()
    await w._open_task(TP, None)
    with pytest.raises(ConnectorError, match="wrong password"):
        await w._done
    assert not w._reopening


async def _nothing() -> None:
    return None
