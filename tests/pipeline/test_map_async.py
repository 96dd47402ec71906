"""map_async: concurrency up to capacity, order when asked, timeouts, no leftover calls."""

from __future__ import annotations

import asyncio
import random
from itertools import pairwise

import pytest

from flowactors import InvalidGraphError, JobFailedError, StreamExecutionEnvironment
from tests.support.tasks import flowactors_tasks


class Probe:
    """Counts concurrent calls. ``call`` is a closure, not a bound method: function
    objects are copied per subtask, but closures share their cells."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        probe = self

        async def call(x: int) -> int:
            probe.running += 1
            probe.peak = max(probe.peak, probe.running)
            try:
                await asyncio.sleep(random.Random(x).random() * 0.004)
                return x * 10
            finally:
                probe.running -= 1

        self.call = call


async def test_ordered_keeps_input_order_and_runs_calls_concurrently() -> None:
    probe = Probe()
    env = StreamExecutionEnvironment()
    loop = asyncio.get_running_loop()
    start = loop.time()
    out = (
        await env.from_collection(range(500))
        .map_async(probe.call, capacity=50)
        .execute_and_collect()
    )
    elapsed = loop.time() - start
    assert out == [x * 10 for x in range(500)]
    assert probe.peak == 50  # never more than capacity at once, and it got there
    assert elapsed < 500 * 0.002  # one at a time would take about 1 s


async def test_unordered_emits_everything_once(parallelism: int) -> None:
    probe = Probe()
    env = StreamExecutionEnvironment(parallelism=parallelism)
    out = await (
        env.from_collection(range(400))
        .rebalance()
        .map_async(probe.call, capacity=16, ordered=False)
        .execute_and_collect()
    )
    assert sorted(out) == [x * 10 for x in range(400)]
    assert 16 <= probe.peak <= 16 * parallelism


async def test_results_flow_while_no_input_arrives() -> None:
    # A slow source: results must be emitted as calls complete, not only when the
    # next record comes in.
    env = StreamExecutionEnvironment()

    async def quick(x: int) -> int:
        await asyncio.sleep(0.001)
        return x

    seen_at: list[float] = []
    loop = asyncio.get_running_loop()
    async for _ in (
        env.from_generator(lambda i: i, count=5, rate=20).map_async(quick).execute_and_stream()
    ):
        seen_at.append(loop.time())
    assert len(seen_at) == 5
    gaps = [b - a for a, b in pairwise(seen_at)]
    assert min(gaps) > 0.02  # each result arrived on its own, paced by the source


async def test_timeout_fails_the_job_and_cancels_pending_calls() -> None:
    cancelled = 0

    async def hang(x: int) -> int:
        nonlocal cancelled
        try:
            await asyncio.sleep(0 if x < 3 else 60)
            return x
        except asyncio.CancelledError:
            cancelled += 1
            raise

    env = StreamExecutionEnvironment()
    env.from_collection(range(10)).map_async(hang, capacity=10, timeout=0.05).name("lookup").print()
    with pytest.raises(JobFailedError) as info:
        await asyncio.wait_for(env.execute(), 10)
    assert info.value.operator == "lookup"
    assert isinstance(info.value.cause, TimeoutError)
    assert "timed out after 0.05 s for record 3" in str(info.value.cause)
    assert flowactors_tasks() == []
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []  # no user call left running


async def test_error_in_a_call_fails_the_job() -> None:
    async def lookup(x: int) -> int:
        if x == 7:
            raise KeyError("unknown id 7")
        return x

    env = StreamExecutionEnvironment()
    env.from_collection(range(20)).map_async(lookup).name("lookup").print()
    with pytest.raises(JobFailedError, match=r"operator 'lookup'.*KeyError"):
        await asyncio.wait_for(env.execute(), 10)


def test_map_async_needs_an_async_function() -> None:
    env = StreamExecutionEnvironment()
    with pytest.raises(InvalidGraphError, match="needs an async function"):
        env.from_collection([1]).map_async(lambda x: x)  # type: ignore[arg-type, return-value]
    with pytest.raises(InvalidGraphError, match="capacity must be >= 1"):

        async def f(x: int) -> int:
            return x

        env.from_collection([1]).map_async(f, capacity=0)
