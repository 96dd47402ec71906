"""Dynamic-gap session windows in whole jobs: exact results at parallelism 1 and 4."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from flowactors import ProcessWindowFunction, StreamExecutionEnvironment
from flowactors.windows import EventTimeSessionWindows
from tests.support.scripted import Scripted, one_by_one, punctuated


class Visit(NamedTuple):
    user: str
    idle_ms: int  # how long this visit keeps the session open
    time: int


class Session(ProcessWindowFunction[Visit, tuple[str, int, int, int], str]):
    def process(self, key: str, context: Any, elements: Any, out: Any) -> None:
        out.collect((key, context.window.start, context.window.end, len(list(elements))))


@pytest.mark.parametrize("parallelism", [1, 4])
async def test_sessions_with_a_gap_per_element(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    visits = [
        Visit("u1", 100, 0),  # [0, 100)
        Visit("u2", 10, 5),  # [5, 15)
        Visit("u1", 10, 95),  # [95, 105): u1's session grows to [0, 105)
        Visit("u2", 500, 30),  # [30, 530): u2's first session ended at 15
        Visit("u1", 50, 200),  # [200, 250)
        Visit("u3", 1, 210),  # [210, 211)
    ]
    source = Scripted(one_by_one([(v, v.time) for v in visits]))
    sessions = (
        env.from_source(source, punctuated())
        .key_by(lambda v: v.user)
        .window(EventTimeSessionWindows.with_dynamic_gap(lambda v: v.idle_ms))
        .process(Session())
    )
    assert sorted(await sessions.execute_and_collect()) == [
        ("u1", 0, 105, 2),
        ("u1", 200, 250, 1),
        ("u2", 5, 15, 1),
        ("u2", 30, 530, 1),
        ("u3", 210, 211, 1),
    ]
