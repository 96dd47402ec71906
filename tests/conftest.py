"""Shared fixtures: environments at several parallelisms, and a check that jobs leave no tasks."""

from __future__ import annotations

import asyncio

import pytest

from flowactors import StreamExecutionEnvironment


def flowactors_tasks() -> list[asyncio.Task[object]]:
    """Tasks the runtime started that are still alive in the running loop."""
    return [
        t for t in asyncio.all_tasks() if t.get_name().startswith("flowactors:") and not t.done()
    ]


@pytest.fixture(params=[1, 2, 4], ids=lambda p: f"p{p}")
def parallelism(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def env(parallelism: int) -> StreamExecutionEnvironment:
    """An environment at parallelism 1, 2 and 4 (each test runs three times)."""
    return StreamExecutionEnvironment(parallelism=parallelism)
