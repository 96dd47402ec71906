"""Live keyed state (``client.keyed_state(uid, state_name)``): read while the job runs,
right after a restore, in memory and in RocksDB."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowactors import (
    ExecutionConfig,
    InvalidGraphError,
    KeyedProcessFunction,
    RestartStrategies,
    StateError,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
)
from flowactors.spi import (
    InputStatus,
    ReaderOutput,
    Sink,
    SinkWriter,
    SinkWriterContext,
    Source,
    SourceReader,
    SourceReaderContext,
)
from flowactors.state import RocksDBStateBackend

BATCH = 50
KEYS = 7


def record(i: int) -> tuple[int, int]:
    return (i % KEYS, i)


def sums_of(indices: range) -> dict[int, tuple[int, int]]:
    """The running ``sum(1)`` per key after ``indices``: the key and the sum."""
    sums: dict[int, int] = {}
    for i in indices:
        sums[i % KEYS] = sums.get(i % KEYS, 0) + i
    return {k: (k, s) for k, s in sums.items()}


class HeldOpen(Source[tuple[int, int]]):
    """``record(i)`` for ``i`` in ``indices``, then nothing until ``release`` is set: the
    job stays running (taking checkpoints) with exactly those records processed."""

    max_parallelism = 1

    def __init__(self, indices: range, release: asyncio.Event) -> None:
        self.indices = indices
        self.release = release

    def create_reader(self, context: SourceReaderContext) -> SourceReader[tuple[int, int]]:
        indices, release = self.indices, self.release

        class Reader(SourceReader[tuple[int, int]]):
            sent = False

            async def poll_next(self, output: ReaderOutput[tuple[int, int]]) -> InputStatus:
                if not self.sent:
                    self.sent = True
                    await output.collect_batch([record(i) for i in indices])
                if release.is_set():
                    return InputStatus.END_OF_INPUT
                return InputStatus.NOTHING_AVAILABLE

            async def is_available(self) -> None:
                await release.wait()

        return Reader()


def environment(backend: str, tmp_path: Path) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment(parallelism=2, config=ExecutionConfig(batch_size=BATCH))
    if backend == "rocksdb":
        env.set_state_backend(RocksDBStateBackend(local_dir=tmp_path / "rocks"))
    return env


def summing_job(env: StreamExecutionEnvironment, indices: range, release: asyncio.Event) -> None:
    (
        env.from_source(HeldOpen(indices, release), name="numbers")
        .key_by(lambda r: r[0])
        .sum(1)
        .uid("sums")
        .sink_to(_Discard())
    )


class _Discard(Sink[Any]):
    """A sink that keeps nothing."""

    def create_writer(self, context: SinkWriterContext) -> SinkWriter[Any]:
        class Writer(SinkWriter[Any]):
            async def write(self, values: list[Any], timestamps: Any) -> None:
                pass

        return Writer()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met")


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
async def test_keyed_state_is_readable_while_the_job_runs(backend: str, tmp_path: Path) -> None:
    gate = asyncio.Event()
    env = environment(backend, tmp_path)
    summing_job(env, range(2 * BATCH), gate)
    client = await env.execute_async("live")
    sums = client.keyed_state("sums", "value")
    try:
        expected = sums_of(range(2 * BATCH))
        await until(lambda: sums.get(0) == expected[0] and sums.get(KEYS - 1) == expected[KEYS - 1])
        assert {k: sums.get(k) for k in range(KEYS)} == expected
        assert dict(sums.items()) == expected
        assert sorted(sums.keys()) == list(range(KEYS))
        assert len(sums) == KEYS
        assert 3 in sums and 99 not in sums and sums.get(99) is None
        gate.set()
        await client.wait()
    finally:
        await client.cancel()
    with pytest.raises(StateError, match="not available"):
        sums.get(0)


@pytest.mark.parametrize("backend", ["memory", "rocksdb"])
async def test_keyed_state_is_populated_right_after_a_restore(backend: str, tmp_path: Path) -> None:
    gate = asyncio.Event()
    env = environment(backend, tmp_path)
    env.enable_checkpointing(60_000, storage=tmp_path / "checkpoints")
    summing_job(env, range(2 * BATCH), gate)
    first = await env.execute_async("live")
    try:
        view = first.keyed_state("sums", "value")
        await until(lambda: view.get(KEYS - 1) == sums_of(range(2 * BATCH))[KEYS - 1])
        savepoint = await first.trigger_savepoint(tmp_path / "savepoint")
    finally:
        await first.cancel()

    never = asyncio.Event()
    env = environment(backend, tmp_path)
    summing_job(env, range(0), never)
    second = await env.execute_async("live", savepoint_path=savepoint)
    try:
        # No record has reached the restored job: the view shows the restored state.
        sums = second.keyed_state("sums", "value")
        assert dict(sums.items()) == sums_of(range(2 * BATCH))
        assert sums.get(3) == sums_of(range(2 * BATCH))[3]
    finally:
        await second.cancel()


class Totals(KeyedProcessFunction[int, tuple[int, int], int]):
    def open(self, ctx: Any) -> None:
        self.total = ctx.get_state(ValueStateDescriptor("total"))

    def process_element(self, value: tuple[int, int], ctx: Any, out: Any) -> None:
        self.total.update((self.total.value() or 0) + value[1])


async def test_unknown_operator_or_state_names_what_exists(tmp_path: Path) -> None:
    gate = asyncio.Event()
    env = environment("memory", tmp_path)
    numbers = env.from_source(HeldOpen(range(BATCH), gate)).uid("numbers")
    numbers.key_by(lambda r: r[0]).process(Totals()).uid("totals").sink_to(_Discard())
    client = await env.execute_async("live")
    try:
        with pytest.raises(InvalidGraphError, match=r"no operator with uid 'nope'.*totals"):
            client.keyed_state("nope", "total")
        with pytest.raises(InvalidGraphError, match=r"'numbers' .* no keyed state.*totals"):
            client.keyed_state("numbers", "total")
        totals = client.keyed_state("totals", "total")
        await until(lambda: len(totals) == KEYS)
        assert dict(totals.items()) == {k: v for k, (_, v) in sums_of(range(BATCH)).items()}
        with pytest.raises(StateError, match="no keyed state 'count'; it has: total"):
            client.keyed_state("totals", "count").get(1)
    finally:
        await client.cancel()


async def test_the_view_follows_a_restart(tmp_path: Path) -> None:
    failed: list[int] = []

    def fail_once(r: tuple[int, int]) -> tuple[int, int]:
        if r[1] == BATCH and not failed:
            failed.append(r[1])
            raise RuntimeError("boom")
        return r

    gate = asyncio.Event()
    env = environment("memory", tmp_path)
    env.set_restart_strategy(RestartStrategies.fixed_delay(1, 0))
    (
        env.from_source(HeldOpen(range(2 * BATCH), gate), name="numbers")
        .map(fail_once)
        .key_by(lambda r: r[0])
        .sum(1)
        .uid("sums")
        .sink_to(_Discard())
    )
    client = await env.execute_async("live")
    sums = client.keyed_state("sums", "value")  # taken before the restart
    try:
        await until(lambda: client.attempts == 1 and _readable(sums) == sums_of(range(2 * BATCH)))
        assert dict(sums.items()) == sums_of(range(2 * BATCH))
    finally:
        await client.cancel()


def _readable(view: Any) -> Any:
    try:
        return dict(view.items())
    except StateError:  # between the failed run and the restarted one
        return None
