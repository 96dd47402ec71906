"""Every restore path checks that the snapshot fits the job before anything runs.

A job changed since its last checkpoint (an operator's uid renamed, another max
parallelism, state moved from RocksDB to memory, a uid now on an operator that
keeps no state) and started again with the default ``resume="latest"`` must
refuse with an error saying what to fix — never drop the state and write wrong
results — and the restart strategy must not retry it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flowactors import StreamExecutionEnvironment
from flowactors.checkpoint.storage import CheckpointStorage
from flowactors.errors import IncompatibleSnapshotError, is_retriable
from flowactors.state import RocksDBStateBackend
from tests.checkpoint._support import (
    add,
    as_multiset,
    committed_lines,
    completed_ids,
    expected_running_sums,
    generator_positions,
    key_of,
    lines_of,
    make_record,
    read_snapshot,
    running_sum_job,
    wait_for_checkpoints,
)

COUNT = 12_000
RATE = 12_000
JOB = "ledger"


def checkpointed(tmp_path: Path, **settings: Any) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment(parallelism=1)
    env.enable_checkpointing(20, storage=tmp_path / "checkpoints", **settings)
    return env


async def first_run(tmp_path: Path, env: StreamExecutionEnvironment) -> Path:
    """Run the running-sum job until two checkpoints completed, cancel it; the newest."""
    running_sum_job(env, tmp_path / "first", COUNT, rate=RATE)
    client = await env.execute_async(JOB)
    await wait_for_checkpoints(tmp_path / "checkpoints", JOB, 2)
    await client.cancel()
    newest = completed_ids(tmp_path / "checkpoints", JOB)[-1]
    return CheckpointStorage(tmp_path / "checkpoints", JOB).checkpoint_dir(newest)


def renamed_job(env: StreamExecutionEnvironment, out: Path, sum_uid: str = "sum-v2") -> None:
    env.from_generator(lambda i: make_record(i, COUNT, 1), count=COUNT).uid("source").key_by(
        key_of
    ).reduce(add).uid(sum_uid).write_text(str(out)).uid("sink")


async def test_resume_latest_refuses_a_checkpoint_with_state_of_a_renamed_operator(
    tmp_path: Path,
) -> None:
    checkpoint = await first_run(tmp_path, checkpointed(tmp_path, resume="none"))

    env = checkpointed(tmp_path)
    renamed_job(env, tmp_path / "second")
    with pytest.raises(IncompatibleSnapshotError) as info:
        await env.execute(JOB)
    assert str(info.value) == (
        f"the checkpoint {checkpoint} holds state of operators this job does not have: sum. "
        "Give those operators the same uid(), or pass allow_non_restored_state=True to drop "
        "that state"
    )
    assert not is_retriable(info.value)
    assert not (tmp_path / "second").exists()  # nothing ran

    # Allowed: the source resumes at its position, the renamed operator starts empty.
    [position] = generator_positions((await read_snapshot(checkpoint, "source"))[1]).values()
    env = checkpointed(tmp_path)
    renamed_job(env, tmp_path / "second")
    await env.execute(JOB, allow_non_restored_state=True)
    fresh = expected_running_sums(COUNT, 1, indices=range(position, COUNT))
    assert as_multiset(committed_lines(tmp_path / "second")) == as_multiset(lines_of(fresh))


async def test_resume_latest_refuses_another_max_parallelism(tmp_path: Path) -> None:
    env = checkpointed(tmp_path, resume="none")
    env.set_max_parallelism(64)
    checkpoint = await first_run(tmp_path, env)

    env = checkpointed(tmp_path)
    running_sum_job(env, tmp_path / "second", COUNT)
    with pytest.raises(IncompatibleSnapshotError) as info:
        await asyncio.wait_for(env.execute(JOB), timeout=10)
    assert str(info.value) == (
        f"operator 'sum' in the checkpoint {checkpoint} has max parallelism 64, the job has "
        "128: set_max_parallelism(64) to restore it"
    )


async def test_a_uid_moved_to_an_operator_without_state_is_refused(tmp_path: Path) -> None:
    checkpoint = await first_run(tmp_path, checkpointed(tmp_path, resume="none"))

    env = checkpointed(tmp_path)
    (
        env.from_generator(lambda i: make_record(i, COUNT, 1), count=COUNT)
        .uid("source")
        .map(lambda r: r)
        .uid("sum")
        .write_text(str(tmp_path / "second"))
        .uid("sink")
    )
    with pytest.raises(IncompatibleSnapshotError) as info:
        await env.execute(JOB)
    assert str(info.value).startswith(
        f"operator 'sum' in the checkpoint {checkpoint} has keyed state, but the operator "
        "with that uid now (MapOperator) cannot take it back"
    )


async def test_rocksdb_state_restored_in_memory_fails_at_once_instead_of_restarting(
    tmp_path: Path,
) -> None:
    """Before anything runs, not as a task failure that an unlimited restart strategy
    (the default with checkpointing) would retry forever."""
    env = checkpointed(tmp_path, resume="none")
    env.set_state_backend(RocksDBStateBackend(local_dir=tmp_path / "local"))
    checkpoint = await first_run(tmp_path, env)

    env = checkpointed(tmp_path)  # memory backend, default restart strategy
    running_sum_job(env, tmp_path / "second", COUNT)
    with pytest.raises(IncompatibleSnapshotError) as info:
        await asyncio.wait_for(env.execute(JOB), timeout=10)
    assert str(info.value) == (
        f"operator 'sum' in the checkpoint {checkpoint} keeps its state in RocksDB files: "
        "restore it with env.set_state_backend(RocksDBStateBackend(...))"
    )
