"""Two-input operators scaled out, against an in-memory backend (no Kafka).

The backend (``tests/support/scaleout_memory.py``) carries each record of an internal
topic with its input index, as Kafka does in a header. Each task of the two-input
stage is one chain (``ScaleOutRunner`` asserts it); its outputs are those of the job
in one process.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from flowactors import (
    Collector,
    KeyedContext,
    KeyedCoProcessFunction,
    ProcessJoinFunction,
    RuntimeContext,
    ValueStateDescriptor,
    WatermarkStrategy,
)
from flowactors import StreamExecutionEnvironment as Env
from flowactors.spi import Sink
from tests.support.scaleout_memory import Collected, MemoryBackend, Topic, use_memory_backend


@pytest.fixture(autouse=True)
def backend(monkeypatch: pytest.MonkeyPatch) -> None:
    use_memory_backend(monkeypatch)


def scaled_out() -> Env:
    env = Env(parallelism=3)
    env.enable_checkpointing(100)
    env.enable_scale_out(bootstrap_servers="unused:9092", application_id="app")
    return env


def split(values: list[Any], partitions: int) -> list[list[Any]]:
    return [values[p::partitions] for p in range(partitions)]


# rides (id, ts) and fares (id, amount, ts): rides 0..29, fares for even ids only, so
# odd rides wait for a fare until their timer (ts + 100) says it never came.
RIDES = [(i, 1000 + 10 * i) for i in range(30)]
FARES = [(i, 5 * i, 1003 + 10 * i) for i in range(0, 30, 2)]


def by_event_time() -> WatermarkStrategy[Any]:
    return WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r, _: r[-1])


class Enrich(KeyedCoProcessFunction[int, Any, Any, Any]):
    """A ride and its fare in either order; a ride without a fare 100 ms later is unpaid."""

    def open(self, ctx: RuntimeContext) -> None:
        self.ride = ctx.get_state(ValueStateDescriptor[Any]("ride"))
        self.fare = ctx.get_state(ValueStateDescriptor[Any]("fare"))

    def process_element1(self, ride: Any, ctx: KeyedContext[int], out: Collector[Any]) -> None:
        fare = self.fare.value()
        if fare is None:
            self.ride.update(ride)
            ctx.timer_service().register_event_time_timer(ride[1] + 100)
        else:
            self.fare.clear()
            out.collect(("paid", ride[0], fare[1]))

    def process_element2(self, fare: Any, ctx: KeyedContext[int], out: Collector[Any]) -> None:
        ride = self.ride.value()
        if ride is None:
            self.fare.update(fare)
        else:
            self.ride.clear()
            out.collect(("paid", ride[0], fare[1]))

    def on_timer(self, timestamp: int, ctx: KeyedContext[int], out: Collector[Any]) -> None:
        ride = self.ride.value()
        if ride is not None:
            self.ride.clear()
            out.collect(("unpaid", ride[0], timestamp))


def enrichment(env: Env, rides: Any, fares: Any, out: Sink[Any]) -> None:
    (
        rides.key_by(lambda r: r[0])
        .connect(fares.key_by(lambda f: f[0]))
        .process(Enrich())
        .uid("enrich")
        .sink_to(out)
    )


ENRICHED = Counter(
    [("paid", i, 5 * i) for i in range(0, 30, 2)]
    + [("unpaid", i, 1000 + 10 * i + 100) for i in range(1, 30, 2)]
)


async def test_a_keyed_co_process_function_runs_in_one_chain_per_task() -> None:
    env = scaled_out()
    out = Collected()
    rides = env.from_source(Topic(split(RIDES, 4)), by_event_time(), "rides")
    fares = env.from_source(Topic(split(FARES, 2)), by_event_time(), "fares")
    enrichment(env, rides, fares, out)
    client = await env.execute_async("enrich")
    await client.wait()
    (job,) = MemoryBackend.jobs
    (joined,) = [s for s in job.stages if s.source is None]
    assert joined.inputs == 2 and joined.upstream_stages == ("fares-1", "rides-0")
    assert all(s.inputs == 1 for s in job.stages if s is not joined)
    assert sorted(client.assignment()) == sorted(
        [("rides-0", p) for p in range(4)]
        + [("fares-1", p) for p in range(2)]
        + [("enrich", r) for r in range(3)]
    )
    assert Counter(out.values) == ENRICHED


async def test_the_same_job_in_one_process_gives_the_same_output() -> None:
    """The reference the scaled-out test compares with (no scale-out involved)."""
    env = Env(parallelism=3)
    rides = env.from_collection(RIDES).assign_timestamps_and_watermarks(by_event_time())
    fares = env.from_collection(FARES).assign_timestamps_and_watermarks(by_event_time())
    out = Collected()
    enrichment(env, rides, fares, out)
    await env.execute("enrich-one-process")
    assert Counter(out.values) == ENRICHED


class Pair(ProcessJoinFunction[Any, Any, Any]):
    def process_element(self, left: Any, right: Any, ctx: Any, out: Collector[Any]) -> None:
        out.collect((left[0], left[1], right[1], ctx.timestamp()))


async def test_an_interval_join_runs_scaled_out() -> None:
    env = scaled_out()
    out = Collected()
    lefts = [(k % 7, t) for k, t in zip(range(200), range(0, 4000, 20))]
    rights = [(k % 7, t) for k, t in zip(range(150), range(5, 4000, 27))]
    left = env.from_source(Topic(split(lefts, 4)), by_event_time(), "left")
    right = env.from_source(Topic(split(rights, 3)), by_event_time(), "right")
    (
        left.key_by(lambda r: r[0])
        .interval_join(right.key_by(lambda r: r[0]))
        .between(-30, 50)
        .process(Pair())
        .uid("join")
        .sink_to(out)
    )
    client = await env.execute_async("join")
    await client.wait()
    want = Counter(
        (lk, lt, rt, max(lt, rt))
        for lk, lt in lefts
        for rk, rt in rights
        if lk == rk and lt - 30 <= rt <= lt + 50
    )
    assert want and Counter(out.values) == want


async def test_a_co_map_of_unkeyed_streams_runs_scaled_out() -> None:
    env = scaled_out()
    out = Collected()
    words = env.from_source(Topic(split(["a", "bb", "ccc"], 2)), name="words")
    numbers = env.from_source(Topic(split([1, 2, 3, 4], 2)), name="numbers")
    words.connect(numbers).map(len, lambda n: n * 10).uid("co-map").sink_to(out)
    client = await env.execute_async("co-map")
    await client.wait()
    assert sorted(out.values) == [1, 2, 3, 10, 20, 30, 40]
