"""Built-in sources and sinks: exact contents, files on disk, streaming results."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path

import orjson
import pytest

from flowactors import (
    JobFailedError,
    JobStatus,
    MalformedRecord,
    OutputTag,
    StreamExecutionEnvironment,
)
from tests.support.tasks import flowactors_tasks


async def test_from_collection_keeps_order_and_accepts_iterators() -> None:
    env = StreamExecutionEnvironment()
    assert await env.from_collection(iter(range(2500))).execute_and_collect() == list(range(2500))
    env2 = StreamExecutionEnvironment()
    assert await env2.from_collection(("x", "y")).execute_and_collect() == ["x", "y"]


async def test_generator_count_is_split_exactly_over_subtasks(
    env: StreamExecutionEnvironment,
) -> None:
    out = await env.from_generator(lambda i: i * i, count=1001).execute_and_collect()
    assert sorted(out) == [i * i for i in range(1001)]


async def test_async_generator_function(env: StreamExecutionEnvironment) -> None:
    async def make(i: int) -> str:
        await asyncio.sleep(0)
        return f"r{i}"

    out = await env.from_generator(make, count=50).execute_and_collect()
    assert sorted(out) == sorted(f"r{i}" for i in range(50))


async def test_generator_rate_limits_throughput() -> None:
    env = StreamExecutionEnvironment(parallelism=2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    out = await env.from_generator(lambda i: i, count=60, rate=200).execute_and_collect()
    elapsed = loop.time() - start
    assert sorted(out) == list(range(60))
    # 60 records at 200/s need about 0.3 s; the first record of each subtask is free
    assert elapsed >= 0.25


async def test_endless_generator_runs_until_cancelled() -> None:
    env = StreamExecutionEnvironment(parallelism=2)
    seen: list[int] = []
    stream = env.from_generator(lambda i: i)
    async with aclosing(stream.execute_and_stream()) as results:
        async for value in results:
            seen.append(value)
            if len(seen) == 5000:
                break
    assert len(seen) == 5000
    assert len(set(seen)) == 5000
    assert flowactors_tasks() == []  # closing the stream cancelled the job


async def test_abandoned_stream_cancels_its_job_when_finalised() -> None:
    env = StreamExecutionEnvironment()
    async for _ in env.from_generator(lambda i: i).execute_and_stream():
        break
    for _ in range(100):  # the loop's async-generator finaliser runs aclose() soon after
        if not flowactors_tasks():
            break
        await asyncio.sleep(0.01)
    assert flowactors_tasks() == []


async def test_execute_and_stream_yields_everything_of_a_bounded_job(
    env: StreamExecutionEnvironment,
) -> None:
    out = [
        x async for x in env.from_collection(range(3000)).map(lambda x: x + 1).execute_and_stream()
    ]
    assert sorted(out) == list(range(1, 3001))


async def test_execute_and_stream_raises_after_delivering_what_came_before() -> None:
    env = StreamExecutionEnvironment()

    def fail_at_end(x: int) -> int:
        if x == 2999:
            raise RuntimeError("late failure")
        return x

    got: list[int] = []
    with pytest.raises(JobFailedError, match="late failure"):
        async for x in env.from_collection(range(3000)).map(fail_at_end).execute_and_stream():
            got.append(x)
    assert got == list(range(len(got)))  # a prefix, in order, nothing invented


async def test_read_text_file_and_directory(tmp_path: Path, parallelism: int) -> None:
    (tmp_path / "a.txt").write_bytes(b"first\r\nsecond\n\nfourth")
    (tmp_path / "b.txt").write_text("".join(f"line {i}\n" for i in range(5000)))
    (tmp_path / ".hidden").write_text("ignored\n")
    env = StreamExecutionEnvironment(parallelism=parallelism)
    out = await env.read_text_file(tmp_path).execute_and_collect()
    assert sorted(out) == sorted(
        ["first", "second", "", "fourth"] + [f"line {i}" for i in range(5000)]
    )

    env1 = StreamExecutionEnvironment()
    single = await env1.read_text_file(tmp_path / "a.txt").execute_and_collect()
    assert single == ["first", "second", "", "fourth"]


async def test_read_text_file_with_large_file_spanning_chunks(tmp_path: Path) -> None:
    lines = [("x" * (i % 300)) + str(i) for i in range(20000)]  # ~3 MiB, several read chunks
    (tmp_path / "big.txt").write_text("\n".join(lines) + "\n")
    env = StreamExecutionEnvironment()
    assert await env.read_text_file(tmp_path / "big.txt").execute_and_collect() == lines


async def test_invalid_utf8_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok\n\xff\xfe broken\n")
    env = StreamExecutionEnvironment()
    env.read_text_file(path).print()
    with pytest.raises(JobFailedError, match=rf"{path}:2: not valid utf-8"):
        await env.execute()


async def test_json_lines_with_bad_lines_to_a_side_output(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": 2\n[1, 2]\nnot json\n\n{"id": 3}\n')
    bad: OutputTag[MalformedRecord] = OutputTag("bad-lines")
    env = StreamExecutionEnvironment()
    events = env.read_json_lines(path, bad_lines=bad)
    good = await events.union(events.get_side_output(bad)).execute_and_collect()
    records = [r for r in good if not isinstance(r, MalformedRecord)]
    rejects = [r for r in good if isinstance(r, MalformedRecord)]
    assert records == [{"id": 1}, [1, 2], {"id": 3}]
    assert [(r.source, r.position, r.raw) for r in rejects] == [
        (str(path), 2, b'{"id": 2'),
        (str(path), 4, b"not json"),
    ]
    assert all(r.error for r in rejects)


async def test_print_sink(capsys: pytest.CaptureFixture[str]) -> None:
    env = StreamExecutionEnvironment()
    env.from_collection([1, 2]).print()
    env.from_collection(["x"]).print("tag")
    await env.execute()
    assert sorted(capsys.readouterr().out.splitlines()) == ["1", "2", "tag> x"]


async def test_print_sink_parallel_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    env = StreamExecutionEnvironment(parallelism=2)
    env.from_collection(range(4)).rebalance().map(lambda x: x).print()
    await env.execute()
    lines = sorted(capsys.readouterr().out.splitlines())
    assert lines == ["1> 0", "1> 2", "2> 1", "2> 3"]


async def test_write_text_creates_finished_part_files(tmp_path: Path, parallelism: int) -> None:
    env = StreamExecutionEnvironment(parallelism=parallelism)
    out_dir = tmp_path / "out"
    env.from_generator(lambda i: orjson.dumps({"i": i}).decode(), count=2000).write_text(
        str(out_dir)
    )
    await env.execute()
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == [f"part-{s}-0" for s in range(parallelism)]
    lines = [line for f in out_dir.iterdir() for line in f.read_text().splitlines()]
    assert sorted(orjson.loads(line)["i"] for line in lines) == list(range(2000))

    # a second run adds new part files instead of overwriting
    env2 = StreamExecutionEnvironment()
    env2.from_collection(["again"]).write_text(str(out_dir))
    await env2.execute()
    assert (out_dir / "part-0-1").read_text() == "again\n"


async def test_failed_job_leaves_no_finished_part_file(tmp_path: Path) -> None:
    env = StreamExecutionEnvironment()
    out_dir = tmp_path / "out"

    def fail(x: int) -> int:
        if x == 1500:
            raise RuntimeError("stop")
        return x

    env.from_collection(range(2000)).map(fail).write_text(str(out_dir))
    with pytest.raises(JobFailedError):
        await env.execute()
    assert [p.name for p in out_dir.iterdir()] == [".part-0-0.inprogress"]


async def test_execute_and_stream_hands_back_the_job_client_before_the_first_record() -> None:
    env = StreamExecutionEnvironment()
    stream = env.from_collection([("a", 1), ("b", 2), ("a", 3)]).key_by(lambda r: r[0]).sum(1)
    async with stream.uid("sums").execute_and_stream() as results:
        assert results.client.status is JobStatus.RUNNING
        got = [x async for x in results]
    assert got == [("a", 1), ("b", 2), ("a", 4)]
    assert results.client.status is JobStatus.FINISHED
