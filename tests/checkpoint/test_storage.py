"""Checkpoint storage: corrupt checkpoints, retention, resuming a job from its storage.

A corrupt or partial newest checkpoint must be detected (sizes and checksums in
the metadata) and skipped, with a log line saying so, in favour of the previous
complete one; a corrupt savepoint must be refused with an error naming the file.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

from flowactors import CheckpointError, CorruptCheckpointError, StreamExecutionEnvironment
from flowactors.api.sinks import TextFileSink
from flowactors.checkpoint.config import RestartStrategies
from flowactors.checkpoint.storage import (
    METADATA,
    CheckpointStorage,
    CompletedCheckpoint,
)
from flowactors.spi import SinkWriterContext
from flowactors.state.files import write_file
from tests.checkpoint._support import (
    InjectedFailure,
    as_multiset,
    committed_lines,
    completed_ids,
    expected_running_sums,
    final_state,
    generator_positions,
    lines_of,
    log_messages,
    read_snapshot,
    running_sum_job,
    source_subtask,
    wait_for_checkpoints,
)

# See test_recovery.py: files leaked by cancelled snapshot writes are a known bug,
# pinned down below; collect them here without letting them fail unrelated tests.

COUNT = 12_000
RATE = 12_000  # ~1 s for the whole input: several checkpoints even on a busy machine
PARALLELISM = 2


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flowactors")


def job_env(tmp_path: Path, resume: str = "latest", **settings: Any) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment(parallelism=PARALLELISM)
    env.enable_checkpointing(20, storage=tmp_path / "checkpoints", resume=resume, **settings)
    return env


def expected_from(positions: dict[int, int]) -> list[str]:
    """The job's output for the records at or after each source subtask's position,
    with the keyed state as it was at those positions."""
    return lines_of(
        r
        for r in expected_running_sums(COUNT, PARALLELISM)
        if r[1] >= positions[source_subtask(r[1], COUNT, PARALLELISM)]
    )


async def run_until_checkpoints(tmp_path: Path, name: str, n: int) -> list[int]:
    """Run the job until ``n`` checkpoints are complete, then cancel it."""
    env = job_env(tmp_path, resume="none")
    running_sum_job(env, tmp_path / "first-run", COUNT, rate=RATE)
    client = await env.execute_async(name)
    try:
        await wait_for_checkpoints(tmp_path / "checkpoints", name, n)
    finally:
        await client.cancel()
    ids = completed_ids(tmp_path / "checkpoints", name)
    assert len(ids) >= n
    return ids


# -- damaging a checkpoint -----------------------------------------------------------------


def corrupt(directory: Path, how: str) -> tuple[Path, str]:
    """Damage the checkpoint in ``directory``; return the file and the expected complaint."""
    if how == "metadata":
        path = directory / METADATA
        path.write_bytes(path.read_bytes()[:40])
        return path, "unreadable metadata"
    if how == "future-format":
        path = directory / METADATA
        meta = json.loads(path.read_bytes())
        meta["format"] = 99
        path.write_text(json.dumps(meta))
        return path, "unknown format 99"
    meta = json.loads((directory / METADATA).read_bytes())
    if how.endswith("operator-state"):
        relative = meta["operators"]["source"]["operator_state"][0]["path"]
    else:
        relative = sorted(i["path"] for i in meta["operators"]["sum"]["keyed"].values())[0]
    path = directory / relative
    data = path.read_bytes()
    if how.startswith("truncate"):
        path.write_bytes(data[: len(data) // 2])
        return path, "truncated"
    if how.startswith("flip"):
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
        return path, "checksum does not match"
    assert how == "delete"
    path.unlink()
    return path, "cannot be read"


DAMAGE = [
    "truncate-keyed",
    "flip-keyed",
    "truncate-operator-state",
    "flip-operator-state",
    "delete",
    "metadata",
    "future-format",
]


@pytest.mark.parametrize("how", DAMAGE)
async def test_resume_skips_a_corrupt_newest_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    ids = await run_until_checkpoints(tmp_path, "corrupt", 2)
    storage = CheckpointStorage(tmp_path / "checkpoints", "corrupt")
    newest, previous = ids[-1], ids[-2]
    _, source_state = await read_snapshot(storage.checkpoint_dir(previous), "source")
    positions = generator_positions(source_state)
    path, complaint = corrupt(storage.checkpoint_dir(newest), how)

    caplog.clear()
    env = job_env(tmp_path)  # resume="latest"
    out = tmp_path / "second-run"
    running_sum_job(env, out, COUNT)
    await env.execute("corrupt")

    messages = log_messages(caplog, "flowactors.checkpoint")
    warning = [m for m in messages if f"checkpoint {newest} of job 'corrupt' is corrupt" in m]
    assert len(warning) == 1, messages
    assert str(path) in warning[0] and complaint in warning[0]
    assert f"job 'corrupt' resumes from checkpoint {previous} " in "\n".join(log_messages(caplog))
    assert as_multiset(committed_lines(out)) == as_multiset(expected_from(positions))


async def test_restart_skips_a_checkpoint_corrupted_before_the_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage_root = tmp_path / "checkpoints"
    corrupted: list[int] = []

    def corrupt_then_fail(record: Any) -> Any:
        if record[1] == 10_800 and not corrupted:
            newest = completed_ids(storage_root, "restart-corrupt")[-1]
            corrupted.append(newest)
            corrupt(
                CheckpointStorage(storage_root, "restart-corrupt").checkpoint_dir(newest),
                "truncate-keyed",
            )
            raise InjectedFailure("after corrupting the newest checkpoint")
        return record

    env = StreamExecutionEnvironment(parallelism=PARALLELISM)
    env.enable_checkpointing(100, storage=storage_root, resume="none")
    env.set_restart_strategy(RestartStrategies.fixed_delay(1, 10))
    out = tmp_path / "out"
    running_sum_job(env, out, COUNT, rate=RATE, inject=corrupt_then_fail)
    await env.execute("restart-corrupt")

    [newest] = corrupted
    messages = log_messages(caplog)
    restored = [int(m.rsplit(" ", 1)[1]) for m in messages if "restores checkpoint" in m]
    assert len(restored) == 1 and restored[0] != newest
    if restored[0] < newest:
        # the corrupt one was the newest at the restart: it was skipped, saying so
        assert any(
            f"checkpoint {newest} of job 'restart-corrupt' is corrupt or incomplete" in m
            for m in messages
        ), messages
    # (a checkpoint begun before the failure may complete after the corruption: then
    # the restart takes that newer, intact one and never needs to look at the corrupt one)
    # The newest checkpoint's output was already committed and is written again after
    # the older restore, but nothing is lost and the final state is exact.
    lines = committed_lines(out)
    expected = lines_of(expected_running_sums(COUNT, PARALLELISM))
    assert set(lines) == set(expected)
    assert final_state(lines) == final_state(expected)


async def test_a_corrupt_savepoint_is_refused_naming_the_file(tmp_path: Path) -> None:
    env = StreamExecutionEnvironment(parallelism=PARALLELISM)
    running_sum_job(env, tmp_path / "out", COUNT, rate=RATE)
    client = await env.execute_async("savepoint")
    await asyncio.sleep(0.15)
    savepoint = Path(await client.stop_with_savepoint(tmp_path / "savepoint"))
    CompletedCheckpoint.load(savepoint)  # intact

    for how in DAMAGE:
        damaged = tmp_path / f"damaged-{how}"
        shutil.copytree(savepoint, damaged)
        path, complaint = corrupt(damaged, how)
        env = StreamExecutionEnvironment(parallelism=PARALLELISM)
        running_sum_job(env, tmp_path / "out2", COUNT)
        with pytest.raises(CorruptCheckpointError) as info:
            await env.execute("savepoint", savepoint_path=damaged)
        assert str(path) in str(info.value), how
        assert complaint in str(info.value), how

    incomplete = tmp_path / "incomplete"
    shutil.copytree(savepoint, incomplete)
    (incomplete / METADATA).unlink()
    env = StreamExecutionEnvironment(parallelism=PARALLELISM)
    running_sum_job(env, tmp_path / "out2", COUNT)
    with pytest.raises(CheckpointError, match=re.escape(f"{incomplete} holds no complete")):
        await env.execute("savepoint", savepoint_path=incomplete)


# -- retention ---------------------------------------------------------------------------------


@pytest.mark.parametrize("retained", [None, 1, 2])
async def test_only_the_last_retained_checkpoints_are_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, retained: int | None
) -> None:
    caplog.set_level(logging.DEBUG, logger="flowactors.checkpoint")
    settings = {} if retained is None else {"retained": retained}
    env = job_env(tmp_path, resume="none", **settings)
    running_sum_job(env, tmp_path / "out", COUNT // 2, rate=RATE)
    await env.execute("retention")

    pattern = re.compile(r"^checkpoint (\d+) of job 'retention' complete")
    completed = [int(m.group(1)) for msg in log_messages(caplog) if (m := pattern.match(msg))]
    keep = 3 if retained is None else retained
    assert len(completed) > keep
    assert completed_ids(tmp_path / "checkpoints", "retention") == completed[-keep:]
    job_dir = CheckpointStorage(tmp_path / "checkpoints", "retention").job_dir
    leftovers = [
        p.name for p in job_dir.glob("chk-*") if p.is_dir() and not (p / METADATA).exists()
    ]
    # At most the checkpoint that was in flight when the job ended, never an older one.
    assert all(int(name[4:]) > completed[-1] for name in leftovers), leftovers
    assert not list(job_dir.glob(f"*/{METADATA}.tmp"))


# -- resuming a job from its storage -------------------------------------------------------


async def test_resume_latest_continues_a_cancelled_job_exactly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A job that was stopped abruptly and started again (a restarted service): the
    two runs' committed output together is exactly the failure-free output."""
    out = tmp_path / "out"
    env = job_env(tmp_path, resume="none")
    running_sum_job(env, out, COUNT, rate=RATE)
    client = await env.execute_async("service")
    await wait_for_checkpoints(tmp_path / "checkpoints", "service", 3)
    await asyncio.sleep(0.03)  # cancel somewhere between two checkpoints
    await client.cancel()
    newest = completed_ids(tmp_path / "checkpoints", "service")[-1]

    env = job_env(tmp_path)  # resume="latest" is the default
    running_sum_job(env, out, COUNT, rate=RATE * 2)
    await env.execute("service")

    assert f"job 'service' resumes from checkpoint {newest} " in "\n".join(log_messages(caplog))
    lines = committed_lines(out)
    assert as_multiset(lines) == as_multiset(lines_of(expected_running_sums(COUNT, PARALLELISM)))


async def test_resume_none_starts_fresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    await run_until_checkpoints(tmp_path, "fresh", 2)
    caplog.clear()
    env = job_env(tmp_path, resume="none")
    out = tmp_path / "second-run"
    running_sum_job(env, out, COUNT)
    await env.execute("fresh")
    assert not [m for m in log_messages(caplog) if "resumes" in m]
    expected = lines_of(expected_running_sums(COUNT, PARALLELISM))
    assert as_multiset(committed_lines(out)) == as_multiset(expected)


async def test_another_job_name_does_not_resume_from_these_checkpoints(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await run_until_checkpoints(tmp_path, "first-job", 2)
    caplog.clear()
    env = job_env(tmp_path)  # resume="latest", but nothing of this job is stored
    out = tmp_path / "second-run"
    running_sum_job(env, out, COUNT)
    await env.execute("second-job")
    assert not [m for m in log_messages(caplog) if "resumes" in m]
    expected = lines_of(expected_running_sums(COUNT, PARALLELISM))
    assert as_multiset(committed_lines(out)) == as_multiset(expected)


# -- cancelled writes close their files -------------------------------------------------------


async def cancelled_at_every_step(make: Any, steps: int = 8, tries: int = 5) -> list[str]:
    """Cancel ``make(n)`` after 0..steps-1 event-loop steps; return the ResourceWarnings
    of files that were left for the garbage collector to close."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        n = 0
        for step in range(steps):
            for _ in range(tries):
                task = asyncio.ensure_future(make(n))
                n += 1
                for _ in range(step):
                    await asyncio.sleep(0)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.1)  # let the file threads finish what they started
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


async def test_cancelled_snapshot_write_closes_its_file(tmp_path: Path) -> None:
    """A snapshot writer is cancelled when its task fails or the job is cancelled; the
    file it was writing must be closed, not left open for the garbage collector."""
    data = b"x" * 100_000

    async def write(n: int) -> None:
        await write_file(tmp_path, f"chk/op-{n}.bin", data)

    assert await cancelled_at_every_step(write) == []


async def test_cancelled_file_sink_write_closes_its_file(tmp_path: Path) -> None:
    async def write(n: int) -> None:
        context = SinkWriterContext("job", "sink", n, 1000, run_id="run", checkpointing=True)
        writer = TextFileSink(tmp_path / "out").create_writer(context)
        await writer.open()
        try:
            await writer.write([n], None)
        finally:
            await writer.close()

    assert await cancelled_at_every_step(write) == []
