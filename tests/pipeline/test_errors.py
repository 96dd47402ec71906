"""What a user sees when something goes wrong: the exact error, and no hang, no leftover task."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flowactors import (
    FlowactorsError,
    InvalidGraphError,
    InvalidKeyError,
    JobFailedError,
    MalformedRecordError,
    MapFunction,
    ProcessFunction,
    RuntimeContext,
    StreamExecutionEnvironment,
)
from tests.support.tasks import flowactors_tasks


def boom(x: int) -> int:
    if x == 700:
        raise ZeroDivisionError("no dividing by 700")
    return x


async def test_user_function_error_names_operator_subtask_and_cause(
    env: StreamExecutionEnvironment,
) -> None:
    stream = env.from_collection(range(1000)).rebalance().map(boom).name("divide")
    stream.key_by(lambda x: x % 3).sum(0).print()
    with pytest.raises(JobFailedError) as info:
        await asyncio.wait_for(env.execute("failing"), 10)
    err = info.value
    assert err.operator == "divide"
    assert err.job_name == "failing"
    assert 0 <= err.subtask < env.get_parallelism()
    assert isinstance(err.cause, ZeroDivisionError)
    assert err.__cause__ is err.cause
    assert str(err) == (
        f"job 'failing' failed in operator 'divide' (subtask {err.subtask}): "
        "ZeroDivisionError: no dividing by 700"
    )
    assert isinstance(err, FlowactorsError)
    assert flowactors_tasks() == []


async def test_failure_while_others_are_blocked_on_full_mailboxes() -> None:
    # The failing sink sits behind a full mailbox of an endless source: the job must
    # still end promptly, with every task cancelled.
    env = StreamExecutionEnvironment(parallelism=2)
    env.get_config().set_batch_size(8).set_mailbox_capacity(1)

    async def slow_then_fail(x: int) -> int:
        await asyncio.sleep(0.001)
        if x > 50:
            raise RuntimeError("sink broke")
        return x

    env.from_generator(lambda i: i).rebalance().map(slow_then_fail).name("fragile").print()
    with pytest.raises(JobFailedError, match=r"operator .fragile.*RuntimeError: sink broke"):
        await asyncio.wait_for(env.execute(), 10)
    assert flowactors_tasks() == []


async def test_unhashable_key(parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    stream = (
        env.from_collection([{"id": [1, 2]}, {"id": [3]}])
        .key_by(lambda r: r["id"])
        .reduce(lambda a, b: a)
    )
    stream.name("merge").print()
    with pytest.raises(JobFailedError) as info:
        await asyncio.wait_for(env.execute(), 10)
    assert info.value.operator == "key_by -> merge"
    assert isinstance(info.value.cause, InvalidKeyError)
    assert "returned an unhashable value of type list: [1, 2]" in str(info.value.cause)
    assert "use a tuple instead of a list" in str(info.value.cause)


@pytest.mark.parametrize("downstream", ["keyed", "plain"])
async def test_key_selector_that_raises_fails_alike_at_every_parallelism(
    parallelism: int, downstream: str
) -> None:
    # At parallelism 1 the key_by is chained; above it the sender computes the key.
    env = StreamExecutionEnvironment(parallelism=parallelism)
    keyed = env.from_collection([{"id": 1}, {}]).key_by(lambda r: r["id"])
    result = keyed.sum("id") if downstream == "keyed" else keyed.map(lambda r: r)
    result.name("by id").print()
    with pytest.raises(JobFailedError) as info:
        await asyncio.wait_for(env.execute(), 10)
    assert info.value.operator == "key_by -> by id"
    assert isinstance(info.value.cause, KeyError)


async def test_unhashable_key_into_a_plain_operator_fails_at_parallelism_1() -> None:
    env = StreamExecutionEnvironment(parallelism=1)
    env.from_collection([{"id": [1]}]).key_by(lambda r: r["id"]).map(str).name("show").print()
    with pytest.raises(JobFailedError) as info:
        await asyncio.wait_for(env.execute(), 10)
    assert info.value.operator == "key_by -> show"
    assert isinstance(info.value.cause, InvalidKeyError)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_invalid_parallelism_is_rejected_before_running(bad: Any) -> None:
    env = StreamExecutionEnvironment()
    with pytest.raises(InvalidGraphError, match=r"parallelism must be an int >= 1, got"):
        env.set_parallelism(bad)
    with pytest.raises(InvalidGraphError, match=r"parallelism must be an int >= 1, got"):
        env.from_collection([1]).map(str).set_parallelism(bad)
    with pytest.raises(InvalidGraphError):
        StreamExecutionEnvironment(parallelism=bad)


def test_non_parallel_source_rejects_parallelism() -> None:
    env = StreamExecutionEnvironment()
    with pytest.raises(InvalidGraphError, match="supports parallelism of at most 1, got 3"):
        env.from_collection([1]).set_parallelism(3)


async def test_job_without_sinks() -> None:
    env = StreamExecutionEnvironment()
    env.from_collection([1]).map(str)
    with pytest.raises(InvalidGraphError, match="the job has no sinks"):
        await env.execute()


def test_duplicate_uid() -> None:
    env = StreamExecutionEnvironment()
    a = env.from_collection([1]).map(str).uid("same")
    a.map(str).uid("same").print()
    with pytest.raises(InvalidGraphError, match="uid 'same' is used by both"):
        env.execute_blocking()


def test_forward_needs_equal_parallelism() -> None:
    env = StreamExecutionEnvironment(parallelism=2)
    env.from_collection([1]).forward().map(str).print()
    with pytest.raises(InvalidGraphError, match="forward edge 'Collection Source' -> 'Map'"):
        env.execute_blocking()


async def test_generator_source_that_raises(env: StreamExecutionEnvironment) -> None:
    def gen(i: int) -> int:
        if i == 123:
            raise ValueError(f"cannot make record {i}")
        return i

    env.from_generator(gen, count=1000).name("numbers").map(lambda x: x).print()
    with pytest.raises(JobFailedError) as info:
        await asyncio.wait_for(env.execute(), 10)
    assert info.value.operator == "numbers"
    assert str(info.value.cause) == "cannot make record 123"
    assert flowactors_tasks() == []


async def test_open_that_raises_and_close_is_still_called() -> None:
    closed: list[int] = []

    class NeedsService(MapFunction[int, int]):
        def open(self, ctx: RuntimeContext) -> None:
            raise ConnectionError("service unreachable")

        def map(self, value: int) -> int:
            return value

    class Tracked(MapFunction[int, int]):
        def map(self, value: int) -> int:
            return value

        def close(self) -> None:
            closed.append(1)

    env = StreamExecutionEnvironment()
    env.from_collection([1, 2]).map(NeedsService()).name("needs service").map(Tracked()).print()
    with pytest.raises(JobFailedError) as info:
        await asyncio.wait_for(env.execute(), 10)
    assert info.value.operator == "needs service"
    assert isinstance(info.value.cause, ConnectionError)
    assert closed == [1]  # the operator opened before the failing one was closed


async def test_malformed_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n\n{"a": 3,,}\n{"a": 4}\n')
    env = StreamExecutionEnvironment()
    env.read_json_lines(path).print()
    with pytest.raises(JobFailedError) as info:
        await asyncio.wait_for(env.execute(), 10)
    cause = info.value.cause
    assert isinstance(cause, MalformedRecordError)
    assert str(cause).startswith(f"{path}:4: malformed JSON: ")
    assert cause.source == str(path)
    assert cause.position == 4
    assert cause.raw == b'{"a": 3,,}'


def test_missing_file_is_reported_when_the_source_is_defined(tmp_path: Path) -> None:
    env = StreamExecutionEnvironment()
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        env.read_text_file(tmp_path / "nope.txt")


def test_uncopyable_function_object() -> None:
    class HoldsLock:
        def __init__(self) -> None:
            import threading

            self.lock = threading.Lock()

        def __call__(self, x: int) -> int:
            return x

    env = StreamExecutionEnvironment()
    with pytest.raises(InvalidGraphError, match=r"cannot be copied for each parallel subtask"):
        env.from_collection([1]).map(HoldsLock())


async def test_side_output_without_a_tag_is_refused() -> None:
    class NoTag(ProcessFunction[int, int]):
        def process_element(self, value: int, ctx: Any, out: Any) -> None:
            ctx.output(None, value)

    env = StreamExecutionEnvironment()
    env.from_collection([1]).process(NoTag()).name("no tag").print()
    with pytest.raises(JobFailedError) as info:
        await env.execute()
    assert info.value.operator == "no tag"
    assert isinstance(info.value.cause, TypeError)
    assert "needs an OutputTag, got None" in str(info.value.cause)
