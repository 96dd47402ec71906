"""Evictors in whole jobs: exact results at parallelism 1 and 4."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from flowactors import StreamExecutionEnvironment
from flowactors.windows import (
    CountEvictor,
    CountTrigger,
    GlobalWindows,
    TimeEvictor,
    TumblingEventTimeWindows,
)
from tests.support.scripted import Scripted, one_by_one, punctuated


class Event(NamedTuple):
    key: str
    value: int
    time: int


def add(a: Event, b: Event) -> Event:
    return Event(a.key, a.value + b.value, max(a.time, b.time))


def by_key(results: list[Event]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for e in results:
        out.setdefault(e.key, []).append(e.value)
    return out


EVENTS = [Event("a" if i % 3 else "b", i, i * 10) for i in range(1, 11)]


@pytest.mark.parametrize("parallelism", [1, 4])
async def test_sum_of_the_last_three_per_key(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    source = Scripted(one_by_one([(e, e.time) for e in EVENTS]))
    sums = (
        env.from_source(source, punctuated())
        .key_by(lambda e: e.key)
        .window(GlobalWindows.create())
        .trigger(CountTrigger.of(1))
        .evictor(CountEvictor.of(3))
        .reduce(add)
    )
    # a: 1 2 4 5 7 8 10, b: 3 6 9
    assert by_key(await sums.execute_and_collect()) == {
        "a": [1, 3, 7, 11, 16, 20, 25],
        "b": [3, 9, 18],
    }


@pytest.mark.parametrize("parallelism", [1, 4])
async def test_time_evictor_on_tumbling_windows(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    source = Scripted(one_by_one([(e, e.time) for e in EVENTS]))
    sums = (
        env.from_source(source, punctuated())
        .key_by(lambda e: e.key)
        .window(TumblingEventTimeWindows.of(60))
        .evictor(TimeEvictor.of(20))
        .reduce(add)
    )
    # [0, 60): a at 10 20 40 50 -> 40 50; b at 30 -> 30
    # [60, 120): a at 70 80 100 -> 100; b at 60 90 -> 90
    assert by_key(await sums.execute_and_collect()) == {"a": [4 + 5, 10], "b": [3, 9]}
