"""Two jobs, one checkpoint storage: names that read alike never share checkpoints.

"ledger v1" and "ledger-v1" made the same directory name; the second job's
retention deleted the first one's checkpoints and the first started from
scratch, committing its output a second time.
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
)

COUNT = 12_000
RATE = 12_000
PARALLELISM = 2


def job(tmp_path: Path, out: str, rate: float | None = RATE) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment(parallelism=PARALLELISM)
    env.enable_checkpointing(20, storage=tmp_path / "checkpoints", retained=1)
    running_sum_job(env, tmp_path / out, COUNT, rate=rate)
    return env


async def run_a_while(tmp_path: Path, name: str, out: str) -> int:
    """Run until the job completed three checkpoints of its own; cancel; the newest."""
    storage = tmp_path / "checkpoints"
    before = max(completed_ids(storage, name), default=0)
    client = await job(tmp_path, out).execute_async(name)
    while max(completed_ids(storage, name), default=0) < before + 3:
        await asyncio.sleep(0.01)
    await client.cancel()
    return completed_ids(storage, name)[-1]


async def test_jobs_whose_names_read_alike_keep_their_own_checkpoints(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flowactors")
    first = await run_a_while(tmp_path, "ledger v1", "out-a")
    await run_a_while(tmp_path, "ledger-v1", "out-b")

    caplog.clear()
    await job(tmp_path, "out-a", rate=None).execute("ledger v1")

    lines = committed_lines(tmp_path / "out-a")
    assert as_multiset(lines) == as_multiset(lines_of(expected_running_sums(COUNT, PARALLELISM)))
    assert f"job 'ledger v1' resumes from checkpoint {first} in " in "\n".join(log_messages(caplog))
    dirs = {
        CheckpointStorage(tmp_path / "checkpoints", name).job_dir.name
        for name in ["ledger v1", "ledger-v1"]
    }
    assert len(dirs) == 2
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == sorted(dirs)
