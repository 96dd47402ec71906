"""Savepoints: barrier alignment, stop-with-savepoint, rescaling, and what a restore checks.

The alignment tests read the savepoint files themselves: a snapshot is consistent
when the keyed state counts exactly the records that the sources' positions in
the same snapshot say were emitted before the barrier.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from flowactors import (
    CheckpointError,
    InvalidGraphError,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    ListStateDescriptor,
    MapStateDescriptor,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
)
from flowactors.checkpoint.storage import CompletedCheckpoint
from tests.checkpoint._support import (
    add,
    as_multiset,
    committed_lines,
    expected_running_sums,
    final_state,
    generator_positions,
    key_of,
    lines_of,
    log_messages,
    make_record,
    read_snapshot,
    running_sum_job,
)

# See test_recovery.py: files leaked by cancelled snapshot writes are a known bug,
# pinned down in test_storage.py; collect them here without letting them fail the test.


# -- alignment ------------------------------------------------------------------------


async def slow(record: Any) -> Any:
    """Holds each record of the slow input 30 ms: its barriers arrive late."""
    await asyncio.sleep(0.03)
    return record


class CountAndRemember(KeyedCoProcessFunction):
    """Per key: how many records arrived, and their indices (a list that grows in place)."""

    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count"))
        self.seen = ctx.get_list_state(ListStateDescriptor("seen"))

    def _add(self, record: Any) -> None:
        self.count.update((self.count.value() or 0) + 1)
        self.seen.add(record[2])

    def process_element1(self, value: Any, ctx: Any, out: Any) -> None:
        self._add(value)

    def process_element2(self, value: Any, ctx: Any, out: Any) -> None:
        self._add(value)


def alignment_job(env: StreamExecutionEnvironment, shape: str) -> None:
    # A fast endless input at parallelism 2, and a slow one: few records, each held
    # 30 ms by an async map in its own task, so its barriers lag far behind.
    fast = env.from_generator(lambda i: ("A", i % 4, i), rate=4_000).uid("fast")
    slow_input = (
        env.from_generator(lambda i: ("B", i % 4, i), rate=40)
        .set_parallelism(1)
        .uid("slow-source")
        .rebalance()
        .map(slow)
        .set_parallelism(1)
        .uid("slow-map")
    )
    if shape == "union":
        counted = (
            fast.union(slow_input)
            .map(lambda r: (r[:2], 1))
            .key_by(lambda t: t[0])
            .reduce(lambda a, b: (a[0], a[1] + b[1]))
            .uid("count")
        )
    else:
        counted = (
            fast.connect(slow_input)
            .key_by(lambda r: r[:2], lambda r: r[:2])
            .process(CountAndRemember())
            .uid("count")
        )
    counted.filter(lambda _: False).print()


async def emitted(savepoint: str) -> dict[tuple[str, int], list[int]]:
    """Per key, the indices the sources had emitted before their barrier (from their
    positions in the savepoint)."""
    _, fast = await read_snapshot(savepoint, "fast")
    _, slow_source = await read_snapshot(savepoint, "slow-source")
    out: dict[tuple[str, int], list[int]] = {}
    for tag, state, parallelism in [("A", fast, 2), ("B", slow_source, 1)]:
        assert sorted(state) == list(range(parallelism))
        for subtask, splits in state.items():
            [(next_index, stop, step)] = splits
            assert stop is None and step == parallelism
            for i in range(subtask, next_index, step):
                out.setdefault((tag, i % 4), []).append(i)
    return out


@pytest.mark.parametrize("shape", ["union", "connect"])
async def test_no_record_after_a_barrier_enters_its_snapshot(tmp_path: Path, shape: str) -> None:
    env = StreamExecutionEnvironment(parallelism=2)
    alignment_job(env, shape)
    client = await env.execute_async(f"alignment-{shape}")
    try:
        for n in range(4):
            await asyncio.sleep(0.12)
            savepoint = await client.trigger_savepoint(tmp_path / f"savepoint-{n}")
            expected = await emitted(savepoint)
            tables, _ = await read_snapshot(savepoint, "count")
            if shape == "union":
                counts = {key: value[1] for key, value in tables["value"].items()}
            else:
                counts = tables["count"]
                seen = tables["seen"]
                assert {k: sorted(v) for k, v in seen.items()} == expected, n
            assert counts == {k: len(v) for k, v in expected.items()}, n
            assert sum(len(v) for k, v in expected.items() if k[0] == "A") > 0
            assert sum(len(v) for k, v in expected.items() if k[0] == "B") > 0
    finally:
        await client.cancel()


# -- stop with savepoint, resume ----------------------------------------------------

COUNT = 12_000
RATE = 10_000  # ~1.2 s for the whole input


async def test_stop_with_savepoint_then_resume_continues_exactly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flowactors")
    out = tmp_path / "out"
    env = StreamExecutionEnvironment(parallelism=2)
    env.enable_checkpointing(50, storage=tmp_path / "checkpoints", resume="none")
    running_sum_job(env, out, COUNT, rate=RATE)
    client = await env.execute_async("stop-resume")
    await asyncio.sleep(0.3)
    savepoint = await client.stop_with_savepoint(tmp_path / "savepoint")
    positions = generator_positions((await read_snapshot(savepoint, "source"))[1])
    assert 0 < positions[0] < COUNT // 2 and COUNT // 2 < positions[1] < COUNT

    # Savepoints are self-contained: one moved elsewhere restores all the same.
    moved = tmp_path / "moved" / "savepoint"
    moved.parent.mkdir()
    shutil.move(savepoint, moved)

    env = StreamExecutionEnvironment(parallelism=2)
    env.enable_checkpointing(50, storage=tmp_path / "checkpoints", resume="none")
    running_sum_job(env, out, COUNT, rate=RATE * 4)
    await env.execute("stop-resume", savepoint_path=moved)

    assert any("starts from savepoint" in m for m in log_messages(caplog))
    lines = committed_lines(out)
    expected = lines_of(expected_running_sums(COUNT, 2))
    assert as_multiset(lines) == as_multiset(expected)


async def test_stop_with_savepoint_commits_what_the_sink_wrote(tmp_path: Path) -> None:
    """After stop-with-savepoint the exactly-once sink has committed every record before
    the savepoint (as Flink's synchronous savepoint lets sinks commit before the tasks
    end): a job that is stopped and never resumed leaves its output complete."""
    out = tmp_path / "out"
    env = StreamExecutionEnvironment(parallelism=2)
    env.enable_checkpointing(50, storage=tmp_path / "checkpoints", resume="none")
    running_sum_job(env, out, COUNT, rate=RATE)
    client = await env.execute_async("stop-commit")
    await asyncio.sleep(0.3)
    savepoint = await client.stop_with_savepoint(tmp_path / "savepoint")
    positions = generator_positions((await read_snapshot(savepoint, "source"))[1])
    before = [*range(0, positions[0]), *range(COUNT // 2, positions[1])]
    expected = lines_of(expected_running_sums(COUNT, 2, indices=before))
    committed = committed_lines(out)
    in_progress = sorted(p.name for p in out.glob(".part-*"))
    assert len(committed) == len(expected), (
        f"{len(expected) - len(committed)} of the {len(expected)} records before the "
        f"savepoint are not committed; still in progress: {in_progress}"
    )
    assert as_multiset(committed) == as_multiset(expected)
    assert not in_progress


# -- rescaling ------------------------------------------------------------------------

KEYS = 40


class Stats(KeyedProcessFunction):
    """Value, list and map state per key, all visible in every output record."""

    def open(self, ctx: Any) -> None:
        self.count = ctx.get_state(ValueStateDescriptor("count"))
        self.last = ctx.get_list_state(ListStateDescriptor("last"))
        self.parity = ctx.get_map_state(MapStateDescriptor("parity"))

    def process_element(self, value: Any, ctx: Any, out: Any) -> None:
        key, i, _ = value
        n = (self.count.value() or 0) + 1
        self.count.update(n)
        self.last.add(i)
        if n > 3:
            self.last.update(self.last.get()[-3:])
        self.parity.put(i % 2, (self.parity.get(i % 2) or 0) + 1)
        out.collect((key, i, n, tuple(self.last.get()), tuple(sorted(self.parity.items()))))


def rescale_job(env: StreamExecutionEnvironment, out: Path, rate: float | None) -> None:
    keyed = (
        env.from_generator(lambda i: make_record(i, COUNT, 1, KEYS), count=COUNT, rate=rate)
        .set_parallelism(1)
        .uid("source")
        .key_by(key_of)
    )
    keyed.reduce(add).uid("sum").write_text(str(out / "sums")).uid("sums-sink")
    keyed.process(Stats()).uid("stats").write_text(str(out / "stats")).uid("stats-sink")


async def test_rescaling_round_trip_2_3_1_keeps_every_key_state(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    env = StreamExecutionEnvironment(parallelism=1)
    rescale_job(env, reference, rate=None)
    await env.execute("rescale-reference")

    out = tmp_path / "out"
    savepoint: str | None = None
    for n, parallelism in enumerate([2, 3]):
        env = StreamExecutionEnvironment(parallelism=parallelism)
        env.enable_checkpointing(50, storage=tmp_path / "checkpoints", resume="none")
        rescale_job(env, out, rate=RATE)
        client = await env.execute_async("rescale", savepoint_path=savepoint)
        await asyncio.sleep(0.3)
        savepoint = await client.stop_with_savepoint(tmp_path / f"savepoint-{n}")
        assert CompletedCheckpoint.load(Path(savepoint)).operators()["sum"]["parallelism"] == (
            parallelism
        )

    # The last savepoint's keyed state is exactly the state after the records its
    # source position says were read.
    assert savepoint is not None
    tables, _ = await read_snapshot(savepoint, "sum")
    [position] = generator_positions((await read_snapshot(savepoint, "source"))[1]).values()
    assert 0 < position < COUNT
    state_then = final_state(lines_of(expected_running_sums(COUNT, 1, KEYS, range(position))))
    assert {key: value[2] for key, value in tables["value"].items()} == state_then

    env = StreamExecutionEnvironment(parallelism=1)
    env.enable_checkpointing(50, storage=tmp_path / "checkpoints", resume="none")
    rescale_job(env, out, rate=RATE * 4)
    await env.execute("rescale", savepoint_path=savepoint)

    for name in ["sums", "stats"]:
        got = committed_lines(out / name)
        assert as_multiset(got) == as_multiset(committed_lines(reference / name)), name
    sums = committed_lines(out / "sums")
    assert as_multiset(sums) == as_multiset(lines_of(expected_running_sums(COUNT, 1, KEYS)))
    assert len(final_state(sums)) == KEYS


# -- what a restore checks ---------------------------------------------------------------


async def take_savepoint(tmp_path: Path, env: StreamExecutionEnvironment) -> tuple[str, int]:
    """Run the running-sum job at parallelism 1 a little, stop it with a savepoint;
    return the savepoint and the source position in it."""
    running_sum_job(env, tmp_path / "out", COUNT, rate=RATE)
    client = await env.execute_async("restore-checks")
    await asyncio.sleep(0.2)
    savepoint = await client.stop_with_savepoint(tmp_path / "savepoint")
    [position] = generator_positions((await read_snapshot(savepoint, "source"))[1]).values()
    return savepoint, position


def renamed_sum_job(env: StreamExecutionEnvironment, out: Path) -> None:
    env.from_generator(lambda i: make_record(i, COUNT, 1), count=COUNT).uid("source").key_by(
        key_of
    ).reduce(add).uid("sum-v2").write_text(str(out)).uid("sink")


async def test_savepoint_state_without_an_operator_needs_allow_non_restored_state(
    tmp_path: Path,
) -> None:
    savepoint, position = await take_savepoint(tmp_path, StreamExecutionEnvironment(1))

    env = StreamExecutionEnvironment(parallelism=1)
    renamed_sum_job(env, tmp_path / "out2")
    with pytest.raises(InvalidGraphError) as info:
        await env.execute("restore-checks", savepoint_path=savepoint)
    message = str(info.value)
    assert "does not have: sum." in message and "allow_non_restored_state" in message
    assert savepoint in message

    # Allowed: the source resumes at its position, the renamed operator starts empty.
    env = StreamExecutionEnvironment(parallelism=1)
    renamed_sum_job(env, tmp_path / "out2")
    await env.execute("restore-checks", savepoint_path=savepoint, allow_non_restored_state=True)
    fresh = expected_running_sums(COUNT, 1, indices=range(position, COUNT))
    assert as_multiset(committed_lines(tmp_path / "out2")) == as_multiset(lines_of(fresh))


async def test_savepoint_with_another_max_parallelism_is_refused(tmp_path: Path) -> None:
    env = StreamExecutionEnvironment(parallelism=1)
    env.set_max_parallelism(64)
    savepoint, position = await take_savepoint(tmp_path, env)

    env = StreamExecutionEnvironment(parallelism=1)
    assert env.get_max_parallelism() != 64
    running_sum_job(env, tmp_path / "out2", COUNT)
    with pytest.raises(InvalidGraphError, match=r"max parallelism 64.*set_max_parallelism\(64\)"):
        await env.execute("restore-checks", savepoint_path=savepoint)

    env = StreamExecutionEnvironment(parallelism=2)
    env.set_max_parallelism(64)
    running_sum_job(env, tmp_path / "out3", COUNT, source_parallelism=1)
    await env.execute("restore-checks", savepoint_path=savepoint)
    rest = expected_running_sums(COUNT, 1)[position:]
    assert as_multiset(committed_lines(tmp_path / "out3")) == as_multiset(lines_of(rest))


async def test_savepoint_directory_must_be_empty(tmp_path: Path) -> None:
    env = StreamExecutionEnvironment(parallelism=1)
    env.from_generator(lambda i: i, rate=1_000).uid("source").filter(lambda _: False).print()
    client = await env.execute_async("non-empty")
    try:
        target = tmp_path / "savepoint"
        target.mkdir()
        (target / "something").write_text("x")
        with pytest.raises(CheckpointError, match="not empty"):
            await client.trigger_savepoint(target)
    finally:
        await client.cancel()
