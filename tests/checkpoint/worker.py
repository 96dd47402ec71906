"""A worker process for test_process_kill: runs the running-sum job with checkpoints.

``python worker.py STORAGE OUT COUNT RATE`` runs the job to the end of its input
and exits 0. Started again after being killed, it resumes from the newest
complete checkpoint in STORAGE (``resume="latest"``, the default). Log lines go
to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from flowactors import StreamExecutionEnvironment
from flowactors.checkpoint.config import RestartStrategies
from tests.checkpoint._support import running_sum_job

JOB_NAME = "killed-worker"
PARALLELISM = 2
INTERVAL_MS = 30


def build(out: Path, count: int, rate: float | None, storage: Path) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment(parallelism=PARALLELISM)
    env.enable_checkpointing(INTERVAL_MS, storage=storage)
    env.set_restart_strategy(RestartStrategies.no_restart())
    running_sum_job(env, out, count, rate=rate)
    return env


def main(argv: list[str]) -> int:
    storage, out, count, rate = argv
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    env = build(Path(out), int(count), float(rate), Path(storage))
    asyncio.run(env.execute(JOB_NAME))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
