"""Keyed state: every kind of state handle, isolation between keys, misuse, and TTL."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from flowactors import (
    AggregateFunction,
    AggregatingStateDescriptor,
    FilterFunction,
    FlatMapFunction,
    FlowactorsError,
    JobFailedError,
    KeyedProcessFunction,
    ListStateDescriptor,
    MapFunction,
    MapStateDescriptor,
    ProcessFunction,
    ReducingStateDescriptor,
    RuntimeContext,
    StateTtlConfig,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
)
from flowactors.state.backend import HeapKeyedStateBackend
from tests.support.tasks import flowactors_tasks

KEYS = [f"k{i}" for i in range(23)]
N = 2300


def records() -> list[tuple[str, int]]:
    """``N`` records over 23 keys; the value is the record's position."""
    return [(KEYS[(i * 7) % len(KEYS)], i) for i in range(N)]


def per_key(out: list[tuple[Any, ...]]) -> dict[Any, list[tuple[Any, ...]]]:
    d: dict[Any, list[tuple[Any, ...]]] = {}
    for r in out:
        d.setdefault(r[0], []).append(r)
    return d


# -- in a KeyedProcessFunction -----------------------------------------------------


class Average(AggregateFunction[int, tuple[int, int], float]):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: int, accumulator: tuple[int, int]) -> tuple[int, int]:
        return (accumulator[0] + value, accumulator[1] + 1)

    def get_result(self, accumulator: tuple[int, int]) -> float:
        return accumulator[0] / accumulator[1]

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


class EveryKind(KeyedProcessFunction[str, tuple[str, int], tuple[Any, ...]]):
    """Feeds every kind of state with each record and reports what the states hold."""

    def open(self, ctx: RuntimeContext) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))
        self.last3 = ctx.get_list_state(ListStateDescriptor("last3"))
        self.parity = ctx.get_map_state(MapStateDescriptor("parity"))
        self.total = ctx.get_reducing_state(ReducingStateDescriptor("total", lambda a, b: a + b))
        self.avg = ctx.get_aggregating_state(AggregatingStateDescriptor("avg", Average()))

    def process_element(self, value: tuple[str, int], ctx: Any, out: Any) -> None:
        key, v = value
        assert ctx.get_current_key() == key
        n = self.count.value() + 1
        self.count.update(n)
        self.last3.add(v)
        if len(self.last3.get()) > 3:
            self.last3.update(self.last3.get()[-3:])
        parity = "even" if v % 2 == 0 else "odd"
        self.parity.put(parity, (self.parity.get(parity) or 0) + 1)
        self.total.add(v)
        self.avg.add(v)
        out.collect(
            (
                key,
                n,
                tuple(self.last3.get()),
                tuple(sorted(self.parity.items())),
                self.total.get(),
                self.avg.get(),
            )
        )


async def test_every_kind_of_state_in_a_keyed_process_function(
    env: StreamExecutionEnvironment,
) -> None:
    data = records()
    out = await (
        env.from_collection(data).key_by(lambda r: r[0]).process(EveryKind()).execute_and_collect()
    )
    expected: list[tuple[Any, ...]] = []
    seen: dict[str, list[int]] = {}
    for key, v in data:
        vs = seen.setdefault(key, [])
        vs.append(v)
        evens = sum(1 for x in vs if x % 2 == 0)
        odds = len(vs) - evens
        parity = tuple(
            sorted(([("even", evens)] if evens else []) + ([("odd", odds)] if odds else []))
        )
        expected.append((key, len(vs), tuple(vs[-3:]), parity, sum(vs), sum(vs) / len(vs)))
    # each key's results come in that key's record order, whatever the parallelism
    assert per_key(out) == per_key(expected)
    assert len(out) == N


async def test_map_state_operations(env: StreamExecutionEnvironment) -> None:
    class Inventory(KeyedProcessFunction[str, tuple[str, str, str], tuple[Any, ...]]):
        def open(self, ctx: RuntimeContext) -> None:
            self.items = ctx.get_map_state(MapStateDescriptor("items"))

        def process_element(self, value: tuple[str, str, str], ctx: Any, out: Any) -> None:
            shop, op, item = value
            if op == "add":
                self.items.put(item, (self.items.get(item) or 0) + 1)
            elif op == "remove":
                self.items.remove(item)
            out.collect(
                (
                    shop,
                    op,
                    item,
                    self.items.contains(item),
                    self.items.is_empty(),
                    sorted(self.items.keys()),
                    sorted(self.items.values()),
                )
            )

    ops = [
        ("s1", "add", "x"),
        ("s2", "add", "y"),
        ("s1", "add", "x"),
        ("s1", "add", "z"),
        ("s2", "remove", "y"),
        ("s1", "remove", "x"),
        ("s1", "remove", "nope"),
        ("s2", "look", "y"),
    ]
    out = await (
        env.from_collection(ops).key_by(lambda o: o[0]).process(Inventory()).execute_and_collect()
    )
    assert per_key(out) == {
        "s1": [
            ("s1", "add", "x", True, False, ["x"], [1]),
            ("s1", "add", "x", True, False, ["x"], [2]),
            ("s1", "add", "z", True, False, ["x", "z"], [1, 2]),
            ("s1", "remove", "x", False, False, ["z"], [1]),
            ("s1", "remove", "nope", False, False, ["z"], [1]),
        ],
        "s2": [
            ("s2", "add", "y", True, False, ["y"], [1]),
            ("s2", "remove", "y", False, True, [], []),
            ("s2", "look", "y", False, True, [], []),
        ],
    }


async def test_value_state_clear_and_default(env: StreamExecutionEnvironment) -> None:
    class Session(KeyedProcessFunction[str, tuple[str, str], tuple[str, Any]]):
        def open(self, ctx: RuntimeContext) -> None:
            self.user = ctx.get_state(ValueStateDescriptor("user"))
            self.logins = ctx.get_state(ValueStateDescriptor("logins", default=0))
            self.history = ctx.get_list_state(ListStateDescriptor("history"))

        def process_element(self, value: tuple[str, str], ctx: Any, out: Any) -> None:
            key, op = value
            if op == "clear":
                self.user.clear()
                self.logins.clear()
                self.history.clear()
            else:
                self.user.update(op)
                self.logins.update(self.logins.value() + 1)
                self.history.add_all([op, op.upper()])
            state = (self.user.value(), self.logins.value(), list(self.history.get()))
            out.collect((key, state))

    data = [("a", "x"), ("b", "y"), ("a", "z"), ("a", "clear"), ("b", "w"), ("a", "q")]
    out = await (
        env.from_collection(data).key_by(lambda r: r[0]).process(Session()).execute_and_collect()
    )
    assert per_key(out) == {
        "a": [
            ("a", ("x", 1, ["x", "X"])),
            ("a", ("z", 2, ["x", "X", "z", "Z"])),
            ("a", (None, 0, [])),
            ("a", ("q", 1, ["q", "Q"])),
        ],
        "b": [("b", ("y", 1, ["y", "Y"])), ("b", ("w", 2, ["y", "Y", "w", "W"]))],
    }


# -- in map / flat_map / filter function classes on a KeyedStream -------------------


class PerKeyCounter(MapFunction[tuple[str, int], tuple[str, int, int]]):
    def open(self, ctx: RuntimeContext) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

    def map(self, value: tuple[str, int]) -> tuple[str, int, int]:
        n = self.count.value() + 1
        self.count.update(n)
        return (value[0], value[1], n)


async def test_keyed_map_function_counts_per_key(env: StreamExecutionEnvironment) -> None:
    data = records()
    out = await (
        env.from_generator(lambda i: data[i], count=N)  # a parallel source at p > 1
        .key_by(lambda r: r[0])
        .map(PerKeyCounter())
        .execute_and_collect()
    )
    assert len(out) == N
    # state is isolated per key: every key counts 1, 2, ... up to its own number of records
    counts = Counter(k for k, _ in data)
    got = per_key(out)
    assert sorted(got) == sorted(counts)
    for key, rs in got.items():
        assert sorted(n for _, _, n in rs) == list(range(1, counts[key] + 1))
    assert sorted((k, v) for k, v, _ in out) == sorted(data)


async def test_keyed_map_function_in_order(env: StreamExecutionEnvironment) -> None:
    data = records()
    out = await (
        env.from_collection(data).key_by(lambda r: r[0]).map(PerKeyCounter()).execute_and_collect()
    )
    expected = []
    counts: Counter[str] = Counter()
    for k, v in data:
        counts[k] += 1
        expected.append((k, v, counts[k]))
    assert per_key(out) == per_key(expected)


async def test_keyed_filter_function_deduplicates(env: StreamExecutionEnvironment) -> None:
    class FirstOnly(FilterFunction[tuple[str, int]]):
        def open(self, ctx: RuntimeContext) -> None:
            self.seen = ctx.get_state(ValueStateDescriptor("seen", default=False))

        def filter(self, value: tuple[str, int]) -> bool:
            if self.seen.value():
                return False
            self.seen.update(True)
            return True

    data = records()
    out = await (
        env.from_collection(data).key_by(lambda r: r[0]).filter(FirstOnly()).execute_and_collect()
    )
    first: dict[str, tuple[str, int]] = {}
    for r in data:
        first.setdefault(r[0], r)
    assert sorted(out) == sorted(first.values())


async def test_keyed_flat_map_function_with_list_state(env: StreamExecutionEnvironment) -> None:
    class Pairs(FlatMapFunction[tuple[str, int], tuple[str, int, int]]):
        """Flink's CountWindowAverage pattern: emit once two records of a key arrived."""

        def open(self, ctx: RuntimeContext) -> None:
            self.pending = ctx.get_list_state(ListStateDescriptor("pending"))

        def flat_map(self, value: tuple[str, int]) -> Iterator[tuple[str, int, int]]:
            self.pending.add(value[1])
            buffered = self.pending.get()
            if len(buffered) == 2:
                self.pending.clear()
                yield (value[0], buffered[0], buffered[1])

    data = records()
    out = await (
        env.from_collection(data).key_by(lambda r: r[0]).flat_map(Pairs()).execute_and_collect()
    )
    expected = []
    pending: dict[str, list[int]] = {}
    for k, v in data:
        p = pending.setdefault(k, [])
        p.append(v)
        if len(p) == 2:
            expected.append((k, p[0], p[1]))
            pending[k] = []
    assert per_key(out) == per_key(expected)
    assert len(out) == N // 2  # 23 keys with 100 records each


async def test_async_functions_keep_the_current_key_across_awaits(
    env: StreamExecutionEnvironment,
) -> None:
    class SlowCounter(MapFunction[tuple[str, int], tuple[str, int]]):
        def open(self, ctx: RuntimeContext) -> None:
            self.count = ctx.get_state(ValueStateDescriptor("count", default=0))

        async def map(self, value: tuple[str, int]) -> tuple[str, int]:
            n = self.count.value()
            await asyncio.sleep(0)
            self.count.update(n + 1)
            return (value[0], n + 1)

    class SlowProcess(KeyedProcessFunction[str, tuple[str, int], tuple[str, int]]):
        def open(self, ctx: RuntimeContext) -> None:
            self.items = ctx.get_list_state(ListStateDescriptor("items"))

        async def process_element(self, value: tuple[str, int], ctx: Any, out: Any) -> None:
            await asyncio.sleep(0)
            self.items.add(value[1])
            await asyncio.sleep(0)
            out.collect((ctx.get_current_key(), len(self.items.get())))

    data = records()[:460]  # 20 records per key
    counted = env.from_collection(data).key_by(lambda r: r[0]).map(SlowCounter())
    out = await counted.key_by(lambda r: r[0]).process(SlowProcess()).execute_and_collect()
    got = per_key(out)
    assert sorted(got) == sorted(KEYS)
    for key, rs in got.items():
        assert rs == [(key, n) for n in range(1, 21)]


async def test_plain_callables_on_a_keyed_stream_still_work(
    env: StreamExecutionEnvironment,
) -> None:
    out = await (
        env.from_collection(range(100))
        .key_by(lambda x: x % 5)
        .map(lambda x: x * 2)
        .key_by(lambda x: x % 3)
        .filter(lambda x: x % 4 == 0)
        .key_by(lambda x: x)
        .flat_map(lambda x: [x, x + 1])
        .execute_and_collect()
    )
    assert sorted(out) == sorted(y for x in range(0, 200, 4) for y in (x, x + 1))


# -- misuse ---------------------------------------------------------------------


class UsesState(MapFunction[int, int]):
    def open(self, ctx: RuntimeContext) -> None:
        self.state = ctx.get_state(ValueStateDescriptor("s"))

    def map(self, value: int) -> int:
        return value


async def test_keyed_state_on_a_non_keyed_stream_fails_the_job(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    env.from_collection(range(10)).map(UsesState()).name("stateful").print()
    with pytest.raises(JobFailedError) as info:
        await asyncio.wait_for(env.execute(), 10)
    assert info.value.operator == "stateful"
    assert isinstance(info.value.cause, FlowactorsError)
    assert "key_by" in str(info.value.cause)
    assert flowactors_tasks() == []


async def test_keyed_state_in_a_non_keyed_process_function_fails_the_job() -> None:
    class Process(ProcessFunction[int, int]):
        def open(self, ctx: RuntimeContext) -> None:
            self.list = ctx.get_list_state(ListStateDescriptor("l"))

        def process_element(self, value: int, ctx: Any, out: Any) -> None:
            out.collect(value)

    env = StreamExecutionEnvironment(parallelism=2)
    env.from_collection(range(10)).process(Process()).name("unkeyed").print()
    with pytest.raises(JobFailedError) as info:
        await asyncio.wait_for(env.execute(), 10)
    assert info.value.operator == "unkeyed"
    assert isinstance(info.value.cause, FlowactorsError)
    assert "key_by" in str(info.value.cause)


async def test_one_state_name_with_two_kinds_fails_the_job(parallelism: int) -> None:
    class Confused(KeyedProcessFunction[int, int, int]):
        def open(self, ctx: RuntimeContext) -> None:
            self.a = ctx.get_state(ValueStateDescriptor("same"))
            self.b = ctx.get_list_state(ListStateDescriptor("same"))

        def process_element(self, value: int, ctx: Any, out: Any) -> None:
            out.collect(value)

    env = StreamExecutionEnvironment(parallelism=parallelism)
    env.from_collection(range(10)).key_by(lambda x: x).process(Confused()).name("two kinds").print()
    with pytest.raises(JobFailedError) as info:
        await asyncio.wait_for(env.execute(), 10)
    assert info.value.operator == "two kinds"
    assert isinstance(info.value.cause, FlowactorsError)
    assert "'same'" in str(info.value.cause)
    assert "value" in str(info.value.cause) and "list" in str(info.value.cause)


async def test_same_name_same_kind_is_the_same_state() -> None:
    class Twice(KeyedProcessFunction[int, int, tuple[int, int]]):
        def open(self, ctx: RuntimeContext) -> None:
            self.a = ctx.get_state(ValueStateDescriptor("n", default=0))
            self.b = ctx.get_state(ValueStateDescriptor("n", default=0))

        def process_element(self, value: int, ctx: Any, out: Any) -> None:
            self.a.update(self.a.value() + 1)
            self.b.update(self.b.value() + 10)
            out.collect((value, self.a.value()))

    env = StreamExecutionEnvironment()
    out = await (
        env.from_collection([1, 1, 2]).key_by(lambda x: x).process(Twice()).execute_and_collect()
    )
    assert out == [(1, 11), (1, 22), (2, 11)]


# -- time to live (on the backend, with a clock the test controls) -----------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def backend_with(clock: FakeClock) -> HeapKeyedStateBackend:
    return HeapKeyedStateBackend(range(128), 128, clock)


def ttl(ms: int, on_read: bool = False) -> StateTtlConfig:
    builder = StateTtlConfig.new_builder(ms)
    if on_read:
        builder = builder.update_ttl_on_read_and_write()
    return builder.build()


def test_ttl_value_expires_after_ttl_since_last_write() -> None:
    clock = FakeClock()
    backend = backend_with(clock)
    descriptor: ValueStateDescriptor[str] = ValueStateDescriptor("v")
    descriptor.enable_time_to_live(ttl(100))
    state = backend.get_state(descriptor)

    backend.current_key = "a"
    state.update("first")
    clock.now = 50
    backend.current_key = "b"
    state.update("other")
    clock.now = 99
    backend.current_key = "a"
    assert state.value() == "first"  # a read does not refresh by default
    clock.now = 100  # written at 0 with TTL 100: expired from 100 on (as in Flink)
    assert state.value() is None
    backend.current_key = "b"
    assert state.value() == "other"
    state.update("again")  # a write at 100 refreshes
    clock.now = 199
    assert state.value() == "again"
    clock.now = 200
    assert state.value() is None


def test_ttl_value_default_is_returned_after_expiry() -> None:
    clock = FakeClock()
    backend = backend_with(clock)
    descriptor = ValueStateDescriptor("v", default=-1)
    descriptor.enable_time_to_live(ttl(10))
    state = backend.get_state(descriptor)
    backend.current_key = 1
    assert state.value() == -1
    state.update(5)
    assert state.value() == 5
    clock.now = 10
    assert state.value() == -1


def test_ttl_on_read_and_write_refreshes_on_read() -> None:
    clock = FakeClock()
    backend = backend_with(clock)
    descriptor: ValueStateDescriptor[int] = ValueStateDescriptor("v")
    descriptor.enable_time_to_live(ttl(100, on_read=True))
    state = backend.get_state(descriptor)
    backend.current_key = "k"
    state.update(7)
    for t in (90, 180, 270, 360):  # each read restarts the 100 ms
        clock.now = t
        assert state.value() == 7
    clock.now = 460
    assert state.value() is None


def test_ttl_of_every_kind_of_state() -> None:
    clock = FakeClock()
    backend = backend_with(clock)
    config = ttl(100)
    lst: ListStateDescriptor[int] = ListStateDescriptor("l")
    mp: MapStateDescriptor[Any] = MapStateDescriptor("m")
    red: ReducingStateDescriptor[int] = ReducingStateDescriptor("r", lambda a, b: a + b)
    agg: AggregatingStateDescriptor[Any] = AggregatingStateDescriptor("g", Average())
    for d in (lst, mp, red, agg):
        d.enable_time_to_live(config)
    ls, ms, rs, gs = (backend.get_state(d) for d in (lst, mp, red, agg))

    backend.current_key = "a"
    ls.add_all([1, 2])
    ms.put("x", 1)
    rs.add(10)
    gs.add(4)
    clock.now = 60
    ls.add(3)
    ms.put("y", 2)
    rs.add(5)
    gs.add(8)
    clock.now = 159
    assert ls.get() == [1, 2, 3]
    assert dict(ms.items()) == {"x": 1, "y": 2}
    assert rs.get() == 15
    assert gs.get() == 6.0
    clock.now = 160
    assert ls.get() == []
    assert ms.get("x") is None
    assert not ms.contains("y")
    assert ms.is_empty()
    assert rs.get() is None
    assert gs.get() is None
    # adding after expiry starts afresh: nothing expired is folded in
    rs.add(1)
    gs.add(2)
    ls.add(9)
    ms.put("z", 3)
    assert rs.get() == 1
    assert gs.get() == 2.0
    assert ls.get() == [9]
    assert dict(ms.items()) == {"z": 3}


@pytest.mark.parametrize("n_keys", [10, 3000])
def test_ttl_sweep_reclaims_keys_never_touched_again(n_keys: int) -> None:
    clock = FakeClock()
    backend = backend_with(clock)
    value: ValueStateDescriptor[int] = ValueStateDescriptor("v")
    value.enable_time_to_live(ttl(100))
    listed: ListStateDescriptor[int] = ListStateDescriptor("l")
    listed.enable_time_to_live(ttl(100))
    vs, ls = backend.get_state(value), backend.get_state(listed)
    for i in range(n_keys):
        backend.current_key = i
        vs.update(i)
        ls.add(i)
    assert backend.num_entries() == 2 * n_keys
    clock.now = 1000
    # Only one other key is used from now on: the expired keys are never read again,
    # yet a sweep after (amortised) as many accesses as there are entries frees them.
    backend.current_key = "live"
    budget = 2 * max(1024, n_keys) + 2
    for _ in range(budget):
        vs.update(1)
        assert vs.value() == 1
        ls.update([1])
    assert backend.num_entries() == 2  # only "live" is left in each state
    backend.current_key = 5
    assert vs.value() is None
    assert ls.get() == []


def test_ttl_sweep_keeps_live_entries() -> None:
    clock = FakeClock()
    backend = backend_with(clock)
    value: ValueStateDescriptor[int] = ValueStateDescriptor("v")
    value.enable_time_to_live(ttl(100))
    vs = backend.get_state(value)
    for i in range(1500):
        clock.now = i  # key i written at time i
        backend.current_key = i
        vs.update(i)
    clock.now = 1550  # keys 0..1450 expired, 1451..1499 alive
    backend.current_key = "probe"
    for _ in range(4000):
        vs.value()
    assert backend.num_entries() == 49
    for i in (1451, 1499):
        backend.current_key = i
        assert vs.value() == i
    backend.current_key = 1450
    assert vs.value() is None


async def test_ttl_state_in_a_job(env: StreamExecutionEnvironment) -> None:
    # With a TTL far longer than the job, TTL state behaves like plain state.
    class Counting(KeyedProcessFunction[str, tuple[str, int], tuple[str, int]]):
        def open(self, ctx: RuntimeContext) -> None:
            descriptor = ValueStateDescriptor("n", default=0)
            descriptor.enable_time_to_live(StateTtlConfig.new_builder(60_000).build())
            self.n = ctx.get_state(descriptor)

        def process_element(self, value: tuple[str, int], ctx: Any, out: Any) -> None:
            self.n.update(self.n.value() + 1)
            out.collect((value[0], self.n.value()))

    data = records()
    out = await (
        env.from_collection(data).key_by(lambda r: r[0]).process(Counting()).execute_and_collect()
    )
    counts = Counter(k for k, _ in data)
    assert Counter(out) == Counter((k, n) for k, c in counts.items() for n in range(1, c + 1))
