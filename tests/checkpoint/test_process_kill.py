"""A worker process killed with SIGKILL at random moments, restarted from its checkpoints.

The worker (``worker.py``) runs the running-sum job with the exactly-once file
sink. It is killed several times after seeded random delays and started again
each time with the same checkpoint directory until it exits 0; what the sink
committed over all runs, and the final keyed state, must equal a failure-free run.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from tests.checkpoint import worker
from tests.checkpoint._support import (
    as_multiset,
    committed_lines,
    expected_running_sums,
    final_state,
    lines_of,
)

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(worker.__file__).resolve()
COUNT = 25_600
RATE = 8_000  # 3.2 s of input: more than the runs that get killed can finish
KILLS = 4
SEED = 20_240_611


def start(tmp_path: Path, run: int) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"run-{run}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                str(tmp_path / "checkpoints"),
                str(tmp_path / "out"),
                str(COUNT),
                str(RATE),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    return proc, log


def test_killed_worker_resumes_exactly(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    env = worker.build(reference, COUNT, None, tmp_path / "reference-checkpoints")
    asyncio.run(env.execute(worker.JOB_NAME))
    expected = committed_lines(reference)
    assert as_multiset(expected) == as_multiset(
        lines_of(expected_running_sums(COUNT, worker.PARALLELISM))
    )

    rng = random.Random(SEED)
    logs: list[Path] = []
    kills = 0
    while True:
        proc, log = start(tmp_path, len(logs))
        logs.append(log)
        if kills < KILLS:
            try:
                code = proc.wait(timeout=rng.uniform(0.6, 1.0))
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                assert proc.wait(timeout=10) == -signal.SIGKILL
                kills += 1
                continue
            raise AssertionError(
                f"the worker ended (exit {code}) before it was killed {KILLS} times:\n"
                + log.read_text()
            )
        code = proc.wait(timeout=30)
        assert code == 0, log.read_text()
        break

    assert kills == KILLS
    resumed = ["resumes from checkpoint" in log.read_text() for log in logs]
    assert resumed[-1], logs[-1].read_text()
    lines = committed_lines(tmp_path / "out")
    assert as_multiset(lines) == as_multiset(expected)
    assert final_state(lines) == final_state(expected)
