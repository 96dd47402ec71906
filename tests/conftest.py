"""Shared fixtures: environments at several parallelisms, and a check that jobs leave no tasks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from flowactors import StreamExecutionEnvironment
from tests.support.tasks import flowactors_tasks


@pytest.fixture(params=[1, 2, 4], ids=lambda p: f"p{p}")
def parallelism(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def env(parallelism: int) -> StreamExecutionEnvironment:
    """An environment at parallelism 1, 2 and 4 (each test runs three times)."""
    return StreamExecutionEnvironment(parallelism=parallelism)


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves a task of flowactors running (a job it did not end, a
    writer or a timer that outlived its job): the loop would cancel it silently."""
    yield
    for _ in range(5):  # tasks that are ending finish within a few turns of the loop
        if not flowactors_tasks():
            return
        await asyncio.sleep(0)
    leaked = flowactors_tasks()
    for task in leaked:
        task.cancel()
    await asyncio.gather(*leaked, return_exceptions=True)
    pytest.fail(
        f"the test left {len(leaked)} flowactors task(s) running: "
        + ", ".join(sorted(t.get_name() for t in leaked)[:10]),
        pytrace=False,
    )
