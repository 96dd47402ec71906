"""Every checkpoint damaged: the job refuses to start instead of starting empty.

Starting with empty state would process the input from its beginning and the
exactly-once sinks would commit again everything the damaged checkpoints'
output covered. The error names each checkpoint and what is wrong with it;
``resume="latest-or-empty"`` is the explicit way to start empty anyway.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from flowactors import JobFailedError, StreamExecutionEnvironment
from flowactors.checkpoint.config import RestartStrategies
from flowactors.checkpoint.storage import METADATA, CheckpointStorage
from flowactors.errors import NoValidCheckpointError, is_retriable
from flowactors.state import RocksDBStateBackend
from tests.checkpoint._support import (
    as_multiset,
    committed_lines,
    completed_ids,
    expected_running_sums,
    lines_of,
    log_messages,
    running_sum_job,
)

COUNT = 12_000
RATE = 12_000
PARALLELISM = 2
JOB = "ledger"


def job(
    tmp_path: Path, out: str, rocksdb: bool = False, **settings: Any
) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment(parallelism=PARALLELISM)
    env.enable_checkpointing(20, storage=tmp_path / "checkpoints", **settings)
    if rocksdb:
        env.set_state_backend(RocksDBStateBackend(local_dir=tmp_path / "local"))
    running_sum_job(env, tmp_path / out, COUNT, rate=RATE)
    return env


async def run_until_three_checkpoints(tmp_path: Path, rocksdb: bool = False) -> list[Path]:
    client = await job(tmp_path, "first", rocksdb, resume="none").execute_async(JOB)
    while len(completed_ids(tmp_path / "checkpoints", JOB)) < 3:
        await asyncio.sleep(0.01)
    await client.cancel()
    storage = CheckpointStorage(tmp_path / "checkpoints", JOB)
    return [storage.checkpoint_dir(i) for i in completed_ids(tmp_path / "checkpoints", JOB)]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


async def test_all_checkpoints_damaged_refuses_to_start_naming_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoints = await run_until_three_checkpoints(tmp_path)
    damaged = []
    for directory in checkpoints:
        meta = json.loads((directory / METADATA).read_bytes())
        relative = sorted(i["path"] for i in meta["operators"]["sum"]["keyed"].values())[0]
        truncate(directory / relative)
        damaged.append(directory / relative)

    with pytest.raises(NoValidCheckpointError) as info:
        await job(tmp_path, "second").execute(JOB)
    assert not (tmp_path / "second").exists()  # nothing ran
    assert not is_retriable(info.value)
    message = str(info.value)
    assert message.startswith(
        f"job 'ledger' has {len(checkpoints)} complete snapshots in "
        f"{checkpoints[0].parent} and none verifies:\n"
    )
    assert "resume='latest-or-empty'" in message
    newest_first = list(zip(reversed(checkpoints), reversed(damaged)))
    assert [directory for directory, _ in info.value.failures] == [
        str(directory) for directory, _ in newest_first
    ]
    for directory, path in newest_first:
        assert f"\n  checkpoint {int(directory.name[4:])}: {path}: truncated (" in message

    # Asked for explicitly: starts empty, saying so, and processes everything.
    caplog.set_level(logging.WARNING, logger="flowactors")
    await job(tmp_path, "second", resume="latest-or-empty").execute(JOB)
    assert any("starts with empty state" in m for m in log_messages(caplog))
    expected = lines_of(expected_running_sums(COUNT, PARALLELISM))
    assert as_multiset(committed_lines(tmp_path / "second")) == as_multiset(expected)


async def test_one_damaged_shared_rocksdb_file_refuses_every_checkpoint(tmp_path: Path) -> None:
    checkpoints = await run_until_three_checkpoints(tmp_path, rocksdb=True)
    referenced = []
    for directory in checkpoints:
        meta = json.loads((directory / METADATA).read_bytes())
        referenced.append(
            {
                (directory / f["path"]).resolve()
                for part in meta["operators"]["sum"]["rocksdb"]
                for f in part["files"]
                if f["path"].startswith("..")
            }
        )
    common = set.intersection(*referenced)
    assert common, "the checkpoints share no uploaded file"
    truncate(sorted(common)[0])

    with pytest.raises(NoValidCheckpointError) as info:
        await job(tmp_path, "second", rocksdb=True).execute(JOB)
    assert len(info.value.failures) == len(checkpoints)
    assert all("truncated" in reason for _, reason in info.value.failures)


async def test_a_restart_with_only_damaged_checkpoints_of_its_run_fails_the_job(
    tmp_path: Path,
) -> None:
    """No snapshot to fall back to (``resume="none"``) and every checkpoint this run
    took damaged when a failure strikes: the restart does not start empty."""
    storage_root = tmp_path / "checkpoints"
    damaged: list[int] = []

    def damage_all_then_fail(record: Any) -> Any:
        if record[1] == 9_000 and not damaged:
            storage = CheckpointStorage(storage_root, JOB)
            for checkpoint_id in storage.completed_ids():
                (storage.checkpoint_dir(checkpoint_id) / METADATA).write_bytes(b"{")
                damaged.append(checkpoint_id)
            raise RuntimeError("after damaging every checkpoint")
        return record

    env = StreamExecutionEnvironment(parallelism=PARALLELISM)
    # One checkpoint, then none for long after (min_pause): none is in flight, or completes
    # after the damage, when the failure strikes.
    env.enable_checkpointing(
        20, storage=storage_root, resume="none", max_concurrent=1, min_pause=60_000
    )
    env.set_restart_strategy(RestartStrategies.fixed_delay(3, 10))
    running_sum_job(env, tmp_path / "out", COUNT, rate=RATE, inject=damage_all_then_fail)
    with pytest.raises(JobFailedError) as info:
        await asyncio.wait_for(env.execute(JOB), timeout=30)
    assert damaged
    cause = info.value.cause
    assert isinstance(cause, NoValidCheckpointError)
    assert info.value.operator == "<restore>"
    assert str(info.value).endswith("(no restart can fix this)")
    assert [reason.split(":")[0] for _, reason in cause.failures] == [
        f"checkpoint {i}" for i in sorted(damaged, reverse=True)
    ]
