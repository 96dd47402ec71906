"""Housekeeping: what failed writes and killed processes leave behind is reclaimed.

- Checkpoint storage on a full disk (a real 3 MB tmpfs where root may mount one):
  failed writes leave no temporary files, and the next start of the job deletes
  the incomplete checkpoint directories and the shared files no checkpoint
  refers to.
- RocksDB working directories of a process killed with SIGKILL are deleted when
  the next RocksDB backend starts under the same local directory; those of live
  jobs, in this process or another, are kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowactors import KeyedProcessFunction, StreamExecutionEnvironment, ValueStateDescriptor
from flowactors.checkpoint.config import RestartStrategies
from flowactors.checkpoint.storage import METADATA, CheckpointStorage
from flowactors.state import RocksDBStateBackend
from tests.checkpoint import rocksdb_worker
from tests.checkpoint._support import log_messages

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(rocksdb_worker.__file__).resolve()
JOB = "full-disk"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MB file system (tmpfs), mounted for this test only."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the full-disk test cannot run")
    target = tmp_path / "small-disk"
    target.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(target)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): no real full disk")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


class Blobs(KeyedProcessFunction[int, tuple[int, bytes], None]):
    def open(self, ctx: Any) -> None:
        self.blob = ctx.get_state(ValueStateDescriptor[bytes]("blob"))

    def process_element(self, value: tuple[int, bytes], ctx: Any, out: Any) -> None:
        self.blob.update(value[1])


def blob_job(tmp_path: Path, storage: Path, interval_ms: int) -> StreamExecutionEnvironment:
    """4,000 keys of 1 kB random bytes: more state than the small disk holds."""
    env = StreamExecutionEnvironment(parallelism=2)
    env.enable_checkpointing(interval_ms, storage=storage, tolerable_failures=1_000_000)
    env.set_restart_strategy(RestartStrategies.no_restart())
    env.set_state_backend(RocksDBStateBackend(local_dir=tmp_path / "local"))
    env.from_generator(lambda i: (i % 4_000, os.urandom(1_000)), rate=20_000).uid("blobs").key_by(
        lambda t: t[0]
    ).process(Blobs()).uid("store").print()
    return env


def temporary_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.tmp"))


def incomplete_checkpoints(storage: CheckpointStorage) -> list[str]:
    return [p.name for p in storage.job_dir.glob("chk-*") if not (p / METADATA).exists()]


def shared_files(storage: CheckpointStorage) -> set[Path]:
    return {p.resolve() for p in storage.shared_dir.glob("*")}


def referenced_shared_files(storage: CheckpointStorage) -> set[Path]:
    used = set()
    for checkpoint_id in storage.completed_ids():
        directory = storage.checkpoint_dir(checkpoint_id)
        meta = json.loads((directory / METADATA).read_bytes())
        for op in meta["operators"].values():
            for part in op.get("rocksdb", []):
                used |= {(directory / f["path"]).resolve() for f in part["files"]}
    return used


async def test_a_full_disk_leaves_nothing_behind_after_the_next_start(
    tmp_path: Path, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flowactors")
    client = await blob_job(tmp_path, small_disk, 50).execute_async(JOB)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not any("No space left on device" in m for m in log_messages(caplog)):
        assert loop.time() < deadline, "the small disk never filled up"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # a few more checkpoints fail
    await client.cancel()
    await asyncio.sleep(0.2)  # writer threads of the last checkpoint finish

    assert temporary_files(small_disk) == []
    storage = CheckpointStorage(small_disk, JOB)

    # The next start reclaims what the failed checkpoints wrote.
    client = await blob_job(tmp_path, small_disk, 3_600_000).execute_async(JOB)
    try:
        assert incomplete_checkpoints(storage) == []
        assert shared_files(storage) - referenced_shared_files(storage) == set()
        assert temporary_files(small_disk) == []
    finally:
        await client.cancel()


def working_dirs(local_dir: Path) -> set[str]:
    return {p.name for p in local_dir.iterdir()} if local_dir.exists() else set()


def start_worker(local: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(local)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


async def test_working_directories_of_a_killed_process_are_reclaimed(tmp_path: Path) -> None:
    local = tmp_path / "local"
    worker = start_worker(local)
    try:
        assert worker.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(worker.stdout.readline), 30)
        assert line == b"ready\n"
        alive_elsewhere = working_dirs(local)
        assert len(alive_elsewhere) == 2  # one per subtask of the keyed operator

        # A job of this process starts while the worker lives: its directories stay.
        first = await rocksdb_worker.build(local).execute_async("first")
        await asyncio.sleep(0.1)
        mine = working_dirs(local) - alive_elsewhere
        assert len(mine) == 2
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(timeout=10) == -signal.SIGKILL
        assert worker.stdout is not None
        worker.stdout.close()
    try:
        assert working_dirs(local) == alive_elsewhere | mine  # killed: left behind

        # The next backend to start reclaims the killed worker's, not this process's.
        second = await rocksdb_worker.build(local).execute_async("second")
        await asyncio.sleep(0.1)
        left = working_dirs(local)
        assert left & alive_elsewhere == set()
        assert mine <= left and len(left - mine) == 2
        await second.cancel()
    finally:
        await first.cancel()
    assert working_dirs(local) == set()
