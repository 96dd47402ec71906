"""Jobs as a user drives them: async execution, cancellation, status, backpressure, metrics."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from flowactors import (
    JobCancelledError,
    JobStatus,
    StreamExecutionEnvironment,
)
from flowactors.spi import Sink, SinkWriter, SinkWriterContext
from tests.support.tasks import flowactors_tasks


class SlowSink(Sink[Any]):
    """Takes ``delay`` seconds per batch and counts what it received."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received = 0

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        sink = self

        class Writer(SinkWriter[Any]):
            async def write(self, values: list[Any], timestamps: list[int | None] | None) -> None:
                await asyncio.sleep(sink.delay)
                sink.received += len(values)

        return Writer()


async def test_execute_async_status_wait_and_result() -> None:
    env = StreamExecutionEnvironment(parallelism=2)
    out: list[int] = []

    class Collect(Sink[int]):
        def create_writer(self, context: SinkWriterContext) -> SinkWriter[int]:
            class W(SinkWriter[int]):
                async def write(self, values: list[int], timestamps: Any) -> None:
                    out.extend(values)

            return W()

    env.from_generator(lambda i: i, count=10_000).map(lambda x: x + 1).sink_to(Collect())
    client = await env.execute_async("counting")
    assert client.status is JobStatus.RUNNING
    assert client.job_name == "counting"
    result = await client.wait()
    assert client.status is JobStatus.FINISHED
    assert result.job_name == "counting"
    assert sorted(out) == list(range(1, 10_001))
    sink_in = sum(
        t.records_in for t in result.metrics.tasks if "Collect" in t.name or "Sink" in t.name
    )
    assert sink_in == 10_000


async def test_cancel_ends_every_task_it_started() -> None:
    env = StreamExecutionEnvironment(parallelism=4)
    sink = SlowSink(0.001)
    env.from_generator(lambda i: (i % 10, i)).key_by(lambda t: t[0]).sum(1).rebalance().map(
        lambda t: t
    ).sink_to(sink)
    before = set(asyncio.all_tasks())
    client = await env.execute_async("endless")
    await asyncio.sleep(0.2)
    started = [t for t in asyncio.all_tasks() - before if t.get_name().startswith("flowactors:")]
    assert len(started) > 4
    assert sink.received > 0
    await client.cancel()
    assert client.status is JobStatus.CANCELED
    assert all(t.done() for t in started)
    assert flowactors_tasks() == []
    with pytest.raises(JobCancelledError):
        await client.wait()


async def test_cancelling_the_awaiting_task_cancels_the_job() -> None:
    env = StreamExecutionEnvironment(parallelism=2)
    env.from_generator(lambda i: i).map(lambda x: x).sink_to(SlowSink(0.001))
    runner = asyncio.create_task(env.execute("endless"))
    await asyncio.sleep(0.1)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert flowactors_tasks() == []


async def test_wait_can_be_cancelled_without_cancelling_the_job() -> None:
    env = StreamExecutionEnvironment()
    env.from_generator(lambda i: i, count=300, rate=1000).sink_to(SlowSink(0))
    client = await env.execute_async()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.wait(), 0.05)
    assert client.status is JobStatus.RUNNING
    await client.wait()
    assert client.status is JobStatus.FINISHED


async def test_two_jobs_in_one_event_loop() -> None:
    async def job(offset: int) -> list[int]:
        env = StreamExecutionEnvironment(parallelism=2)
        return await (
            env.from_generator(lambda i: i + offset, count=20_000)
            .key_by(lambda x: x % 7)
            .map(lambda x: x)
            .execute_and_collect(f"job-{offset}")
        )

    a, b = await asyncio.gather(job(0), job(1_000_000))
    assert sorted(a) == list(range(20_000))
    assert sorted(b) == list(range(1_000_000, 1_020_000))


def test_execute_blocking_runs_on_its_own_loop() -> None:
    env = StreamExecutionEnvironment()
    seen: list[str] = []

    class Remember(Sink[str]):
        def create_writer(self, context: SinkWriterContext) -> SinkWriter[str]:
            class W(SinkWriter[str]):
                async def write(self, values: list[str], timestamps: Any) -> None:
                    seen.append(type(asyncio.get_running_loop()).__module__)
                    seen.extend(values)

            return W()

    env.from_collection(["a", "b"]).sink_to(Remember())
    # from a thread without a running loop, as a script would call it
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(env.execute_blocking("blocking")))
    thread.start()
    thread.join(30)
    assert result and result[0].job_name == "blocking"
    assert seen[1:] == ["a", "b"]
    assert seen[0].startswith("uvloop")


async def test_backpressure_bounds_records_in_flight() -> None:
    env = StreamExecutionEnvironment(parallelism=2)
    env.get_config().set_batch_size(64).set_mailbox_capacity(2)
    sink = SlowSink(0.002)
    generated = 0

    def gen(i: int) -> int:
        nonlocal generated
        generated += 1
        return i

    env.from_generator(gen).name("fast source").set_parallelism(1).rebalance().map(
        lambda x: x
    ).key_by(lambda x: x % 5).map(lambda x: x).sink_to(sink)
    client = await env.execute_async("backpressure")
    samples = []
    for _ in range(40):
        await asyncio.sleep(0.02)
        m = client.metrics()
        samples.append((m.in_flight_records, m.in_flight_capacity, generated, sink.received))
    metrics = client.metrics()
    await client.cancel()

    capacity = samples[0][1]
    # every mailbox (2 messages of 64 records per channel) and buffer is counted
    assert capacity > 0
    for in_flight, cap, _, _ in samples:
        assert in_flight <= cap
    # what the source produced beyond what the sink consumed stays within that bound:
    # memory is flat although the source could produce millions of records a second
    for _, _, produced, consumed in samples:
        assert produced - consumed <= capacity + env.get_config().batch_size
    assert samples[-1][3] > samples[0][3]  # and the job kept moving
    source = next(t for t in metrics.tasks if t.name.startswith("fast source"))
    assert source.backpressure_ratio > 0.5  # the source spent most of its time waiting
