"""Redeploying a service: stop with a savepoint, start again on the same storage.

Whatever ended the previous run — ``stop_with_savepoint``, a cancel, a crash —
the next start with the default ``resume="latest"`` resumes from the newest
snapshot the job completed, so the exactly-once sink commits every record once
over all runs.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from flowactors import StreamExecutionEnvironment
from flowactors.checkpoint.storage import CheckpointStorage
from tests.checkpoint._support import (
    as_multiset,
    committed_lines,
    completed_ids,
    expected_running_sums,
    lines_of,
    log_messages,
    running_sum_job,
    wait_for_checkpoints,
)

COUNT = 12_000
RATE = 10_000
PARALLELISM = 2


def service(tmp_path: Path, rate: float) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment(parallelism=PARALLELISM)
    env.enable_checkpointing(50, storage=tmp_path / "checkpoints")  # resume="latest"
    running_sum_job(env, tmp_path / "out", COUNT, rate=rate)
    return env


async def test_start_after_stop_with_savepoint_resumes_from_the_savepoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flowactors")
    client = await service(tmp_path, RATE).execute_async("ledger")
    await wait_for_checkpoints(tmp_path / "checkpoints", "ledger", 2)
    await asyncio.sleep(0.03)  # records after the newest checkpoint: only the savepoint has them
    savepoint = await client.stop_with_savepoint(tmp_path / "savepoints" / "redeploy-1")
    newest_checkpoint = completed_ids(tmp_path / "checkpoints", "ledger")[-1]

    caplog.clear()
    await service(tmp_path, RATE * 4).execute("ledger")

    lines = committed_lines(tmp_path / "out")
    assert as_multiset(lines) == as_multiset(lines_of(expected_running_sums(COUNT, PARALLELISM)))
    storage = CheckpointStorage(tmp_path / "checkpoints", "ledger")
    [(savepoint_id, recorded), *_] = storage.savepoints()
    assert str(recorded) == savepoint
    assert savepoint_id > newest_checkpoint  # no checkpoint starts after a stop-savepoint
    assert f"job 'ledger' resumes from savepoint {savepoint_id} in {recorded}" in log_messages(
        caplog
    )


async def test_a_checkpoint_newer_than_the_savepoint_wins(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A savepoint taken while the job goes on (``trigger_savepoint``), then a crash:
    the checkpoints after the savepoint are newer, and the restart takes the newest."""
    caplog.set_level(logging.INFO, logger="flowactors")
    client = await service(tmp_path, RATE).execute_async("ledger")
    await wait_for_checkpoints(tmp_path / "checkpoints", "ledger", 1)
    await client.trigger_savepoint(tmp_path / "savepoints" / "while-running")
    storage = CheckpointStorage(tmp_path / "checkpoints", "ledger")
    [(savepoint_id, _)] = storage.savepoints()
    while completed_ids(tmp_path / "checkpoints", "ledger")[-1] < savepoint_id + 2:
        await asyncio.sleep(0.01)
    await client.cancel()
    newest = completed_ids(tmp_path / "checkpoints", "ledger")[-1]

    caplog.clear()
    await service(tmp_path, RATE * 4).execute("ledger")

    assert f"job 'ledger' resumes from checkpoint {newest} in " in "\n".join(log_messages(caplog))
    lines = committed_lines(tmp_path / "out")
    assert as_multiset(lines) == as_multiset(lines_of(expected_running_sums(COUNT, PARALLELISM)))
