"""Flink's continuous, timeout and end-of-stream triggers in whole jobs, at parallelism 1 and 4."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from flowactors import StreamExecutionEnvironment
from flowactors.api.datastream import DataStream
from flowactors.windows import (
    ContinuousEventTimeTrigger,
    EventTimeSessionWindows,
    GlobalWindows,
)
from tests.support.scripted import Scripted, one_by_one, punctuated


class Event(NamedTuple):
    key: str
    value: int
    time: int


def scripted(env: StreamExecutionEnvironment, events: list[Event]) -> DataStream[Event]:
    """``events`` one by one, each followed by a watermark at its own time."""
    return env.from_source(Scripted(one_by_one([(e, e.time) for e in events])), punctuated())


def add(a: Event, b: Event) -> Event:
    return Event(a.key, a.value + b.value, max(a.time, b.time))


def by_key(results: list[tuple[str, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for key, value in results:
        out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize("parallelism", [1, 4])
async def test_continuous_event_time_trigger_on_session_windows(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    events = [
        Event("a", 1, 1),  # [1, 11), fires at 4
        Event("b", 10, 2),  # [2, 12), fires at 4
        Event("a", 2, 3),  # merges: [1, 13)
        Event("b", 20, 6),  # merges: [2, 16); watermark 6 fires both at 4
        Event("a", 4, 20),  # a new session [20, 30), fires at 24; watermark 20 fires
        # a at 8 and at its end 12, b at 8, 12 and its end 15
    ]
    sums = (
        scripted(env, events)
        .key_by(lambda e: e.key)
        .window(EventTimeSessionWindows.with_gap(10))
        .trigger(ContinuousEventTimeTrigger.of(4))
        .reduce(add)
        .map(lambda e: (e.key, e.value))
    )
    results = by_key(await sums.execute_and_collect())
    # the end of input fires a's last session at 24, 28 and its end 29
    assert results == {"a": [3, 3, 3, 4, 4, 4], "b": [30, 30, 30, 30]}


@pytest.mark.parametrize("parallelism", [1, 4])
async def test_global_windows_with_end_of_stream_trigger_fire_once_per_key(
    parallelism: int,
) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    events = [Event(f"k{i % 5}", i, i) for i in range(100)]
    totals = (
        env.from_collection(events)
        .key_by(lambda e: e.key)
        .window(GlobalWindows.create_with_end_of_stream_trigger())
        .reduce(add)
        .map(lambda e: (e.key, e.value))
    )
    results = await totals.execute_and_collect()
    assert sorted(results) == [(f"k{k}", sum(range(k, 100, 5))) for k in range(5)]
